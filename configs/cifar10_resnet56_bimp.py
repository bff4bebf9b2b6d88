"""BIMP on CIFAR-10 with ResNet-56: IMP within the budget of one training run.

    tfimp --config=configs/cifar10_resnet56_bimp.py --workdir=runs/cifar10_resnet56_bimp \
          --config.data_dir=~/tensorflow_datasets

Where the numbers come from:
* BIMP itself (docs/algorithms.md): a shortened dense phase with
  the linear-to-zero schedule, then J cycles sharing the remaining budget,
  retrained with ALLR whose floor uses the shortened T_d;
* a total budget of 200 epochs, equal to the dense run of
  cifar10_resnet56_imp.py, so BIMP costs what one training run costs (the
  paper's budget-matched comparison); T_d = 140 and 3 cycles (20 epochs
  each): tfimp's choice, check the paper's appendix for its values;
* optimiser and data settings as in cifar10_resnet56_imp.py.
"""

from tfimp.cli import config as tfimp_config


def get_config():
    config = tfimp_config.base()
    config.dataset = "cifar10"
    config.model = "resnet56"
    config.method = "bimp"
    config.target_sparsity = 0.9
    config.cycles = 3
    config.epochs = 200            # the whole budget
    config.dense_epochs = 140      # T_d
    config.criterion = "global"
    config.batch_size = 128
    config.learning_rate = 0.1
    config.dense_schedule = "linear"
    config.momentum = 0.9
    config.weight_decay = 1e-4
    return config
