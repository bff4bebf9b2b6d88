"""The default job: IMP to 90% sparsity on Fashion-MNIST with a small CNN.

    tfimp --config=configs/fashion_mnist_imp.py --workdir=runs/fashion_mnist_imp

Fashion-MNIST is not in the paper; this config is tfimp's quick, offline
demonstration of its recipe (global magnitude, SLR retraining, geometric
per-cycle rate) sized to finish in a few minutes on 2 CPU cores. The
optimiser follows the paper's CIFAR runs (SGD with Nesterov momentum 0.9,
x0.1 steps at 50% and 75% of training); the learning rate 0.02 (0.1 makes
this BatchNorm-light CNN diverge), weight decay 5e-4 and the epoch counts
are tfimp's choices for this size.
"""

from tfimp.cli import config as tfimp_config


def get_config():
    config = tfimp_config.base()
    config.dataset = "fashion_mnist"
    config.model = "small_cnn"
    config.method = "imp"
    config.target_sparsity = 0.9
    config.cycles = 3
    config.dense_epochs = 6
    config.retrain_epochs = 1
    config.retrain_schedule = "slr"
    config.criterion = "global"
    config.batch_size = 128
    config.learning_rate = 0.02
    config.weight_decay = 5e-4
    return config
