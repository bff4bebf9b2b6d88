"""IMP on ImageNet with ResNet-50, the paper's ImageNet setting.

    tfimp --config=configs/imagenet_resnet50_imp.py --workdir=runs/imagenet_resnet50_imp \
          --config.data_dir=/data/tensorflow_datasets

ImageNet needs tfds' manual download: put ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in DATA_DIR/downloads/manual/ (see tfimp.data).

Where the numbers come from:
* dataset, model, augmentation (random resized crop 224 and flip; test
  resize 256, centre crop 224), SGD momentum 0.9, global selection: the
  paper's experimental grid (docs/algorithms.md);
* 90 epochs, lr 0.1 per 256 examples with x0.1 steps, weight decay 1e-4,
  batch 256: the standard ResNet-50 recipe (Goyal et al. 2017,
  arXiv:1706.02677) with tfimp's step schedule at 50% and 75%;
* 3 cycles of 5 retraining epochs with SLR, target 90%: tfimp's choice
  within the paper's range; check the paper's appendix.
"""

from tfimp.cli import config as tfimp_config


def get_config():
    config = tfimp_config.base()
    config.dataset = "imagenet2012"
    config.model = "resnet50"
    config.method = "imp"
    config.target_sparsity = 0.9
    config.cycles = 3
    config.dense_epochs = 90
    config.retrain_epochs = 5
    config.retrain_schedule = "slr"
    config.criterion = "global"
    config.batch_size = 256
    config.learning_rate = 0.1
    config.dense_schedule = "step"
    config.momentum = 0.9
    config.weight_decay = 1e-4
    config.validation_fraction = 0.01
    return config
