"""Data for the Keras 3 front end: numpy arrays in a ``keras.utils.PyDataset``, or tf.data where TensorFlow is.

:class:`EpochOrdered` gives the batches of epoch ``e`` in an order that
depends only on the seed and ``e`` (a seeded permutation per epoch), as the
tf_keras ``tfimp.data.EpochOrdered`` does: a run resumed at epoch ``e``
sees exactly the batches the uninterrupted run saw. :func:`load` reads
MNIST and Fashion-MNIST from idx files (Debian's package or a
``data_dir``), with the tf_keras front end's seeded validation split and
normalisation, without TensorFlow. The tensorflow-datasets datasets and
augmentation come through :mod:`tfimp.tfdata.pipelines`'s ``tf.data`` pipelines,
which Keras 3 trains on with every backend. ``tfimp.data`` is this module
in a Keras 3 process.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Optional

import keras
import numpy as np

from tfimp.core import datasets as _datasets
from tfimp.core.datasets import DataUnavailableError, DatasetSpec, spec  # noqa: F401  (public names)


class EpochOrdered(keras.utils.PyDataset):
    """``(x, y)`` batches reshuffled per epoch from ``seed`` and the epoch index (the last batch may be short).

    Args:
      x, y: arrays with the same first dimension.
      batch_size: examples per batch.
      seed: the run's seed.
      epoch: the epoch the next pass is (set it to resume at that epoch).
      shuffle: False keeps the arrays' order (evaluation data).
    """

    def __init__(self, x, y, batch_size: int, seed: int = 0, *, epoch: int = 0, shuffle: bool = True):
        super().__init__(workers=1, use_multiprocessing=False)
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = int(epoch)
        self._order_epoch: Optional[int] = None
        self._order: Optional[np.ndarray] = None

    @classmethod
    def from_arrays(cls, x, y, batch_size: int, seed: int = 0) -> "EpochOrdered":
        return cls(x, y, batch_size, seed)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """The example order of ``epoch``."""
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng(_datasets.epoch_seed(self.seed, epoch)).permutation(len(self.x))

    def __getitem__(self, index: int):
        if self._order_epoch != self.epoch:
            self._order, self._order_epoch = self.order(self.epoch), self.epoch
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of an epoch of {len(self)} batches")
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x[chosen], self.y[chosen]

    def on_epoch_end(self):
        self.epoch += 1

    def follow(self) -> keras.callbacks.Callback:
        """A callback that sets :attr:`epoch` to ``fit``'s epoch as each epoch begins.

        Keras 3's ``fit`` (every backend, 3.15) ends an epoch of its data once
        before training starts (``epoch_iterator.reset()``), which would shift
        every epoch's order by one; the tfimp runners pass this callback, and a
        ``fit`` of your own should too.
        """
        return _FollowEpochs(self)


class _FollowEpochs(keras.callbacks.Callback):
    def __init__(self, data: EpochOrdered):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = int(epoch)  # before the epoch's first batch is read: its order is this epoch's


@dataclasses.dataclass
class Data:
    """A loaded dataset: training batches, validation and test arrays, and what a model needs to know."""

    spec: DatasetSpec
    train: EpochOrdered
    validation: Optional[tuple[np.ndarray, np.ndarray]]
    test: tuple[np.ndarray, np.ndarray]
    train_examples: int
    batch_size: int
    source: str

    @property
    def steps_per_epoch(self) -> int:
        return self.train.steps_per_epoch


def uses_tf_data(name: str, augmentation: Optional[str] = None) -> bool:
    """Whether :func:`load` reads ``name`` through ``tf.data`` (:mod:`tfimp.tfdata.pipelines`) rather than as numpy arrays.

    The idx datasets without augmentation are numpy (no TensorFlow needed);
    the tensorflow-datasets ones (CIFAR, ImageNet) and any augmentation go
    through the tf_keras front end's ``tf.data`` pipelines, which Keras 3
    trains on with every backend.
    """
    data_spec = spec(name)
    chosen = data_spec.augmentation if augmentation is None else augmentation
    if chosen not in _datasets.AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {chosen!r}; known: {list(_datasets.AUGMENTATIONS)}")
    return data_spec.idx_prefix is None or chosen != "none"


def _tfdata():
    """:mod:`tfimp.tfdata.pipelines`, or an ImportError that says why TensorFlow is needed."""
    try:
        import tensorflow  # noqa: F401, PLC0415  (only the tf.data datasets need it)
    except ImportError as error:
        raise ImportError("the tensorflow-datasets datasets and augmentation read through tf.data, which needs "
                          "TensorFlow: pip install tensorflow tensorflow-datasets (the idx datasets mnist and "
                          "fashion_mnist without augmentation need neither)") from error
    from tfimp.tfdata import pipelines as tfdata  # noqa: PLC0415

    return tfdata


def load(name: str, *, data_dir: Optional[str] = None, batch_size: int = 128, validation_fraction: float = 0.1,
         seed: int = 0, train_subset: Optional[int] = None, test_subset: Optional[int] = None,
         augmentation: Optional[str] = None):
    """Loads dataset ``name`` for Keras 3 (see the tf_keras ``tfimp.data.load``).

    MNIST and Fashion-MNIST without augmentation come from idx files as
    numpy data (:class:`Data`, no TensorFlow). Every other dataset, and
    any augmentation, comes as the tf_keras front end's ``tf.data``
    pipelines (a :class:`tfimp.tfdata.pipelines.Data`: same split, order,
    augmentation and normalisation, epoch-ordered training batches), which
    Keras 3 trains on with any backend where TensorFlow is installed.

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``imagenet2012``.
      data_dir: idx files, or a tensorflow-datasets data_dir (Debian's Fashion-MNIST is found without it).
      batch_size, validation_fraction, seed, train_subset: as for tf_keras.
      test_subset: use only the first N test examples, for quick runs.
      augmentation: override the dataset's default (``none`` to disable).

    Raises:
      ValueError: an unknown dataset or augmentation, or a bad option.
      DataUnavailableError: the data is not on disk (and, for tfds, cannot be downloaded).
      ImportError: a tf.data dataset without TensorFlow installed.
    """
    data_spec = spec(name)
    for option, value in (("batch_size", batch_size), ("train_subset", train_subset), ("test_subset", test_subset)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    if uses_tf_data(name, augmentation):
        return _tfdata().load(name, data_dir=data_dir, batch_size=batch_size, validation_fraction=validation_fraction,
                              seed=seed, train_subset=train_subset, test_subset=test_subset, augmentation=augmentation)
    found = _datasets.load_idx(_datasets.idx_dirs(name, data_dir))
    if found is None:
        raise DataUnavailableError(f"dataset {name!r}: no idx files in {_datasets.idx_dirs(name, data_dir)}; "
                                   "install Debian's dataset-fashion-mnist or pass data_dir")
    x_train, y_train, x_test, y_test, source = found
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    if test_subset is not None:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    train_index, validation_index = _datasets.split_indices(len(x_train), validation_fraction, seed)
    x_train = _datasets.normalize(x_train, data_spec)
    y_train = y_train.astype(np.int32)
    return Data(
        spec=data_spec,
        train=EpochOrdered(x_train[train_index], y_train[train_index], batch_size, seed),
        validation=(x_train[validation_index], y_train[validation_index]) if len(validation_index) else None,
        test=(_datasets.normalize(x_test, data_spec), y_test.astype(np.int32)),
        train_examples=len(train_index),
        batch_size=batch_size,
        source=source,
    )


def tf_data_epochs(train):
    """The epoch-ordered ``tf.data`` twin of ``train`` (a :class:`tfimp.tfdata.pipelines.EpochOrdered`, or a
    :func:`load` training pipeline), or None: without :mod:`tfimp.tfdata.pipelines` loaded, nothing is one."""
    tfdata = sys.modules.get("tfimp.tfdata.pipelines")
    if tfdata is None:
        return None
    if isinstance(train, tfdata.EpochOrdered):
        return train
    return tfdata.epoch_ordered(train)
