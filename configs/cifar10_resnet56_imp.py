"""IMP on CIFAR-10 with ResNet-56, the paper's main CIFAR-10 setting.

    tfimp --config=configs/cifar10_resnet56_imp.py --workdir=runs/cifar10_resnet56_imp \
          --config.data_dir=~/tensorflow_datasets

Where the numbers come from:
* dataset, model, SGD with momentum 0.9, batch 128, random crop (padding 4)
  and flip, the 90/10 split and global magnitude selection: the paper's
  experimental grid (docs/algorithms.md);
* lr 0.1 with x0.1 at 50% and 75% of training and weight decay 1e-4: the
  standard CIFAR ResNet recipe of He et al. 2016, which the paper's code
  follows; Nesterov because weight decay is used (the authors' code);
* 200 dense epochs, 3 cycles of 10 retraining epochs with SLR, target 90%:
  tfimp's choice within the paper's range (sparsities 90-98%; few
  retraining epochs per cycle suffice, finding (c)); check the paper's
  appendix for the exact epoch counts before claiming a reproduction.
"""

from tfimp.cli import config as tfimp_config


def get_config():
    config = tfimp_config.base()
    config.dataset = "cifar10"
    config.model = "resnet56"
    config.method = "imp"
    config.target_sparsity = 0.9
    config.cycles = 3
    config.dense_epochs = 200
    config.retrain_epochs = 10
    config.retrain_schedule = "slr"
    config.criterion = "global"
    config.batch_size = 128
    config.learning_rate = 0.1
    config.dense_schedule = "step"
    config.momentum = 0.9
    config.weight_decay = 1e-4
    return config
