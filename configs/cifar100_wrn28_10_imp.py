"""IMP on CIFAR-100 with WideResNet-28-10 (dropout 0.3), the paper's CIFAR-100 setting.

    tfimp --config=configs/cifar100_wrn28_10_imp.py --workdir=runs/cifar100_wrn28_10_imp \
          --config.data_dir=~/tensorflow_datasets

Where the numbers come from:
* dataset, model with dropout 0.3, augmentation (crop with padding 4, flip,
  rotation up to 15 degrees), SGD momentum 0.9, global selection: the
  paper's experimental grid (docs/algorithms.md);
* lr 0.1, weight decay 5e-4, batch 128, x0.1 steps: the WideResNet recipe
  of Zagoruyko & Komodakis 2016 (arXiv:1605.07146), with the step schedule
  tfimp uses for CIFAR;
* 200 dense epochs, 3 cycles of 10 epochs with SLR, target 95%: tfimp's
  choice within the paper's range; check the paper's appendix for the
  exact values.
"""

from tfimp.cli import config as tfimp_config


def get_config():
    config = tfimp_config.base()
    config.dataset = "cifar100"
    config.model = "wrn28_10"
    config.method = "imp"
    config.target_sparsity = 0.95
    config.cycles = 3
    config.dense_epochs = 200
    config.retrain_epochs = 10
    config.retrain_schedule = "slr"
    config.criterion = "global"
    config.batch_size = 128
    config.learning_rate = 0.1
    config.dense_schedule = "step"
    config.momentum = 0.9
    config.weight_decay = 5e-4
    return config
