"""tf.data input pipelines, following the paper's setup: TensorFlow only, no Keras.

Both front ends read through this module: the tf_keras one as
``tfimp.data``, the Keras 3 one for the tfds datasets and for augmentation
(``tfimp.keras3.data.load``; Keras 3 trains on ``tf.data`` on every backend,
so these datasets need TensorFlow installed, the idx ones do not). It
imports ``tensorflow`` and never ``tf.keras``, so it leaves the choice of
Keras to the process.

* ``fashion_mnist`` and ``mnist`` come from local idx files (``data_dir``, or
  for Fashion-MNIST the files Debian's ``dataset-fashion-mnist`` package
  installs), with tensorflow-datasets as the fallback;
* ``cifar10``, ``cifar100`` and ``imagenet2012`` come through
  tensorflow-datasets (``data_dir``; ImageNet needs the manual download tfds
  documents).

When the data is not on disk and the network is unreachable, loading fails
within seconds with a message that says how to get the data (``tfds.load``
alone retries for minutes). Nothing ever falls back to synthetic data.

Pipelines: a seeded 90/10 train/validation split of the official training
set (optional), the official test set for reporting; augmentation per the
paper (random crop with 4-pixel padding and horizontal flip; CIFAR-100 also
rotation by up to 15 degrees; ImageNet random resized crop 224 and flip,
test resize 256 and centre crop 224), per-channel normalisation, shuffling,
batching, prefetching. Augmentation uses TensorFlow's *stateless* random
image ops keyed by a per-example seed from ``tf.data.Dataset.random``, so a
pipeline is deterministic given its seed even with a parallel ``map``
(Keras' random preprocessing layers draw from stateful generators, whose
order a parallel map does not fix).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
import urllib.parse
import urllib.request
import weakref
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tfimp.core import extras
from tfimp.core import datasets as _datasets

DEBIAN_FASHION_MNIST = _datasets.DEBIAN_FASHION_MNIST  # tests point it elsewhere
_PROBE_HOST = ("storage.googleapis.com", 443)  # where tfds fetches prepared datasets from
_PROBE_TIMEOUT_S = 5.0


DataUnavailableError = _datasets.DataUnavailableError
DatasetSpec = _datasets.DatasetSpec
SPECS = _datasets.SPECS
AUGMENTATIONS = _datasets.AUGMENTATIONS
spec = _datasets.spec


class EpochOrdered:
    """Training batches whose order (and augmentation) in epoch ``e`` depend only on the seed and ``e``.

    A plain ``shuffle(reshuffle_each_iteration=True)`` gives the k-th pass
    over the data the k-th order *of this process*: a resumed run replays
    its first epochs' orders instead of continuing. The runners feed ``fit``
    ``epochs(initial_epoch, total_epochs)``, so a run resumed at epoch 5 sees
    exactly the batches epoch 5 of an uninterrupted run sees.

    Args:
      make_epoch: ``epoch (int) -> batched tf.data.Dataset`` of that epoch.
      steps_per_epoch: batches per epoch.
    """

    def __init__(self, make_epoch: Callable[[int], tf.data.Dataset], steps_per_epoch: int):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.make_epoch = make_epoch
        self.steps_per_epoch = int(steps_per_epoch)

    def epochs(self, first: int, end: int) -> tf.data.Dataset:
        """Epochs ``first .. end - 1`` back to back."""
        if not 0 <= first < end:
            raise ValueError(f"need 0 <= first < end, got {first}, {end}")
        dataset = self.make_epoch(int(first))
        for epoch in range(int(first) + 1, int(end)):  # Python seeds: tf.data's shuffle wants constant ones
            dataset = dataset.concatenate(self.make_epoch(epoch))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def epoch(self, epoch: int) -> tf.data.Dataset:
        """The batches of one epoch."""
        return self.make_epoch(int(epoch))

    @classmethod
    def from_arrays(cls, x, y, batch_size: int, seed: int = 0) -> "EpochOrdered":
        """``(x, y)`` arrays, reshuffled per epoch from ``seed`` and the epoch index."""
        examples = tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y)))
        count = len(x)
        # reshuffle_each_iteration=False: an epoch's dataset gives its order however often it is iterated.
        return cls(lambda epoch: examples.shuffle(count, seed=_epoch_seed(seed, epoch),
                                                  reshuffle_each_iteration=False).batch(batch_size),
                   math.ceil(count / batch_size))


_epoch_seed = _datasets.epoch_seed


@dataclasses.dataclass
class Data:
    """Ready-to-use pipelines of one dataset.

    ``train`` reshuffles on every pass (for your own ``fit``);
    ``train_epochs`` is the same data ordered by epoch index, which the
    runners use so that a resumed run continues with the right epoch.
    """

    spec: DatasetSpec
    train: tf.data.Dataset
    validation: Optional[tf.data.Dataset]
    test: tf.data.Dataset
    train_examples: int
    batch_size: int
    source: str
    train_epochs: Optional[EpochOrdered] = None

    def __post_init__(self):
        if self.train_epochs is not None:  # a runner given ``train`` replays ``train_epochs`` instead
            _EPOCH_ORDERED[self.train] = self.train_epochs

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_examples / self.batch_size)


#: ``Data.train`` pipeline -> its epoch-ordered twin (weak: the entry goes with the pipeline).
_EPOCH_ORDERED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def epoch_ordered(train) -> Optional[EpochOrdered]:
    """The :class:`EpochOrdered` twin of a :func:`load` ``train`` pipeline (``None`` for any other data).

    The runners train on it when given ``Data.train``, so a killed run
    resumes with exactly the batches, order and augmentation it would have
    seen; a ``tf.data.Dataset`` built elsewhere has no twin and is used as is.
    """
    try:
        return _EPOCH_ORDERED.get(train)
    except TypeError:  # not weak-referenceable: not ours
        return None


# --------------------------------------------------------------------------
# Loading raw splits
# --------------------------------------------------------------------------


read_idx = _datasets.read_idx


def _load_idx(name: str, data_dir: Optional[str]):
    """(x_train, y_train, x_test, y_test, source) from idx files, or None if absent."""
    return _datasets.load_idx(_datasets.idx_dirs(name, data_dir, DEBIAN_FASHION_MNIST))


def https_proxy(host: str = _PROBE_HOST[0]) -> Optional[tuple[str, int]]:
    """(host, port) of the HTTPS proxy the environment sets for ``host``, or ``None`` (direct).

    Reads ``HTTPS_PROXY`` / ``https_proxy`` (or ``ALL_PROXY``) and honours
    ``NO_PROXY``, as ``urllib``, ``requests`` and tensorflow-datasets do.
    """
    proxies = urllib.request.getproxies()
    url = proxies.get("https") or proxies.get("all")
    if not url or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def _tunnel_opens(proxy: tuple[str, int], target: tuple[str, int], timeout: float) -> bool:
    """Whether ``proxy`` answers ``CONNECT target`` with a 2xx status."""
    with socket.create_connection(proxy, timeout=timeout) as connection:
        connection.settimeout(timeout)
        connection.sendall(f"CONNECT {target[0]}:{target[1]} HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n\r\n"
                           .encode("ascii"))
        status_line = connection.recv(1024).split(b"\r\n", 1)[0].split()
    return len(status_line) >= 2 and status_line[1].startswith(b"2")


def network_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether the host tfds downloads from answers within ``timeout`` seconds (DNS included).

    Behind an HTTPS proxy (``HTTPS_PROXY``, ``NO_PROXY``; see :func:`https_proxy`)
    the question goes to the proxy: can it open a tunnel to that host?
    ``TFIMP_OFFLINE=1`` in the environment answers ``False`` without probing.
    """
    if os.environ.get("TFIMP_OFFLINE", "") not in ("", "0"):
        return False
    proxy = https_proxy(_PROBE_HOST[0])
    result = []

    def probe():
        try:
            if proxy is None:
                with socket.create_connection(_PROBE_HOST, timeout=timeout):
                    result.append(True)
            else:
                result.append(_tunnel_opens(proxy, _PROBE_HOST, timeout))
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _how_to_get(name: str, data_dir: Optional[str]) -> str:
    where = data_dir or "~/tensorflow_datasets"
    if name == "fashion_mnist":
        return ("install Debian's package (as root: `apt-get install dataset-fashion-mnist`, files in "
                f"{DEBIAN_FASHION_MNIST}), or put the four idx files (train-images-idx3-ubyte.gz, ...) in "
                "--config.data_dir, or connect to the internet so tensorflow-datasets can download it")
    if name == "mnist":
        return ("put the four idx files (train-images-idx3-ubyte.gz, ...) in --config.data_dir, or connect "
                "to the internet so tensorflow-datasets can download it")
    if name == "imagenet2012":
        return ("download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org (free "
                f"registration), put them in {where}/downloads/manual/, and run tfds.builder('imagenet2012', "
                f"data_dir={where!r}).download_and_prepare() once")
    return (f"on a machine with internet run `python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{name}', data_dir='{where}').download_and_prepare()\"` and copy {where} "
            "here (pass it as --config.data_dir)")


def _tfds_builder(name: str, data_dir: Optional[str]):
    tfds = extras.require("tensorflow_datasets", "loading datasets through tensorflow-datasets")

    builder = tfds.builder(spec(name).tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        if not network_reachable():
            proxy = https_proxy()
            through = f" (through the proxy {proxy[0]}:{proxy[1]})" if proxy else ""
            raise DataUnavailableError(
                f"dataset {name!r} is not on disk (looked in {data_dir or 'the tfds default data_dir'}"
                f"{' and for idx files' if spec(name).idx_prefix is not None else ''}) and the network is "
                f"unreachable{through}. To get it: {_how_to_get(name, data_dir)}."
            )
        builder.download_and_prepare()
    return builder


def _load_tfds_arrays(name: str, data_dir: Optional[str]):
    tfds = extras.require("tensorflow_datasets", "loading datasets through tensorflow-datasets")

    builder = _tfds_builder(name, data_dir)
    arrays = []
    for split in ("train", "test"):
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(8192)))
        arrays += [np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])]
    return (*arrays, f"tensorflow-datasets ({builder.data_dir})")


def load_arrays(name: str, data_dir: Optional[str] = None):
    """(x_train, y_train, x_test, y_test, source) of an in-memory dataset (all but ImageNet)."""
    if spec(name).idx_prefix is not None:
        found = _load_idx(name, data_dir)
        if found is not None:
            return found
    return _load_tfds_arrays(name, data_dir)


split_indices = _datasets.split_indices


# --------------------------------------------------------------------------
# Augmentation (stateless, per-example seeds)
# --------------------------------------------------------------------------


def _crop_flip(image, seed, padding: int = 4):
    height, width, channels = image.shape
    seeds = tf.random.experimental.stateless_split(seed, 2)
    padded = tf.image.pad_to_bounding_box(image, padding, padding, height + 2 * padding, width + 2 * padding)
    cropped = tf.image.stateless_random_crop(padded, [height, width, channels], seeds[0])
    return tf.image.stateless_random_flip_left_right(cropped, seeds[1])


def _rotate(image, seed, max_degrees: float = 15.0):
    """Rotation by a uniform angle in [-max, max] degrees about the centre, zero fill."""
    angle = tf.random.stateless_uniform([], seed, -max_degrees, max_degrees) * math.pi / 180.0
    height, width = float(image.shape[0]), float(image.shape[1])
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])[None]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    return rotated[0]


def _imagenet_train(image, seed, size: int = 224):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    cropped = tf.slice(image, begin, crop_size)
    resized = tf.image.resize(cropped, (size, size))
    return tf.image.stateless_random_flip_left_right(resized, seeds[1])


def _imagenet_eval(image, size: int = 224, resize: int = 256):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(shape)
    resized = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(resized, size, size)


def _preprocess(augmentation: str, data_spec: DatasetSpec, training: bool):
    mean = tf.constant(data_spec.mean, tf.float32)
    std = tf.constant(data_spec.std, tf.float32)

    def apply(image, label, seed=None):
        image = tf.cast(image, tf.float32) / 255.0
        if augmentation == "imagenet":
            image = _imagenet_train(image, seed) if training else _imagenet_eval(image)
        elif training and augmentation in ("crop_flip", "crop_flip_rotate"):
            seeds = tf.random.experimental.stateless_split(seed, 2)
            image = _crop_flip(image, seeds[0])
            if augmentation == "crop_flip_rotate":
                image = _rotate(image, seeds[1])
        return (image - mean) / std, tf.cast(label, tf.int64)

    return apply


def _deterministic(dataset: tf.data.Dataset, data_spec: DatasetSpec, augmentation: Optional[str], training: bool):
    """(``dataset`` with deterministic order, its preprocessing function) for the chosen augmentation."""
    augmentation = data_spec.augmentation if augmentation is None else augmentation
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augmentation!r}; known: {list(AUGMENTATIONS)}")
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options), _preprocess(augmentation, data_spec, training)


def pipeline(dataset: tf.data.Dataset, data_spec: DatasetSpec, *, batch_size: int, training: bool,
             augmentation: Optional[str] = None, seed: int = 0, shuffle_buffer: int = 10_000) -> tf.data.Dataset:
    """Shuffle (training), augment, normalise, batch and prefetch ``(image, label)`` pairs.

    Deterministic given ``seed``: per-epoch shuffling and augmentation are
    seeded, and a parallel map keeps its order.
    """
    dataset, preprocess = _deterministic(dataset, data_spec, augmentation, training)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        per_example = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, per_example)).map(
            lambda pair, seeds: preprocess(pair[0], pair[1], seeds), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda image, label: preprocess(image, label), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def epoch_pipeline(dataset: tf.data.Dataset, data_spec: DatasetSpec, *, batch_size: int, examples: int,
                   augmentation: Optional[str] = None, seed: int = 0, shuffle_buffer: int = 10_000) -> EpochOrdered:
    """The training pipeline of :func:`pipeline`, with each epoch's order and augmentation seeded by its index."""
    dataset, preprocess = _deterministic(dataset, data_spec, augmentation, True)

    def make_epoch(epoch):
        epoch_seed = _epoch_seed(seed, epoch)
        shuffled = dataset.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        # Per-example augmentation seeds (epoch seed, position): stateless, so the same in a resumed run.
        indexed = tf.data.Dataset.zip((shuffled, tf.data.Dataset.range(examples)))
        return indexed.map(lambda pair, index: preprocess(pair[0], pair[1],
                                                          tf.stack([tf.constant(epoch_seed, tf.int64), index])),
                           num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)

    return EpochOrdered(make_epoch, math.ceil(examples / batch_size))


# --------------------------------------------------------------------------
# The one entry point
# --------------------------------------------------------------------------


def load(name: str, *, data_dir: Optional[str] = None, batch_size: int = 128, validation_fraction: float = 0.1,
         seed: int = 0, train_subset: Optional[int] = None, test_subset: Optional[int] = None,
         augmentation: Optional[str] = None) -> Data:
    """Loads dataset ``name`` as train/validation/test pipelines.

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``imagenet2012``.
      data_dir: where the data lives (idx files, or a tfds data_dir).
      batch_size: examples per batch.
      validation_fraction: seeded fraction of the official training set held
        out for validation (0 = none; ImageNet uses the last percent slice).
      seed: seeds the split, shuffling and augmentation.
      train_subset: use only the first N examples of the official training
        set (before the split), for quick runs.
      test_subset: use only the first N examples of the test set, for quick
        runs (every cycle is evaluated on it, so it can cost more than training).
      augmentation: override the dataset's default (``none`` to disable).

    Raises:
      ValueError: unknown dataset or bad option.
      DataUnavailableError: the data is not on disk and cannot be downloaded.
    """
    data_spec = spec(name)
    _datasets.check_data_dir(data_dir)  # a location the user named is used or refused, never replaced
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for option, value in (("train_subset", train_subset), ("test_subset", test_subset)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1, got {value}")
    if name == "imagenet2012":
        return _load_imagenet(data_spec, data_dir, batch_size, validation_fraction, seed, train_subset, test_subset,
                              augmentation)

    x_train, y_train, x_test, y_test, source = load_arrays(name, data_dir)
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    if test_subset is not None:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    train_index, validation_index = split_indices(len(x_train), validation_fraction, seed)

    def arrays(x, y):
        return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))

    make = lambda x, y, training: pipeline(arrays(x, y), data_spec, batch_size=batch_size, training=training,  # noqa: E731
                                           augmentation=augmentation, seed=seed)
    train_epochs = epoch_pipeline(arrays(x_train[train_index], y_train[train_index]), data_spec,
                                  batch_size=batch_size, examples=len(train_index), augmentation=augmentation, seed=seed)
    return Data(
        spec=data_spec,
        train=make(x_train[train_index], y_train[train_index], True),
        validation=make(x_train[validation_index], y_train[validation_index], False) if len(validation_index) else None,
        test=make(x_test, y_test, False),
        train_examples=len(train_index),
        batch_size=batch_size,
        source=source,
        train_epochs=train_epochs,
    )


def _load_imagenet(data_spec, data_dir, batch_size, validation_fraction, seed, train_subset, test_subset,
                   augmentation) -> Data:
    builder = _tfds_builder("imagenet2012", data_dir)
    # With train_subset, the split's size need not be known (tfds' mock data has none).
    used = train_subset if train_subset else builder.info.splits["train"].num_examples
    n_validation = int(round(validation_fraction * used))
    train_split = f"train[:{used - n_validation}]"
    validation_split = f"train[{used - n_validation}:{used}]" if n_validation else None

    def read(split):
        return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)

    make = lambda split, training: pipeline(read(split), data_spec, batch_size=batch_size, training=training,  # noqa: E731
                                            augmentation=augmentation, seed=seed)
    return Data(
        spec=data_spec,
        train=make(train_split, True),
        validation=make(validation_split, False) if validation_split else None,
        # ImageNet's labelled test set is its validation split.
        test=make(f"validation[:{test_subset}]" if test_subset else "validation", False),
        train_examples=used - n_validation,
        batch_size=batch_size,
        source=f"tensorflow-datasets ({builder.data_dir})",
        train_epochs=epoch_pipeline(read(train_split), data_spec, batch_size=batch_size,
                                    examples=used - n_validation, augmentation=augmentation, seed=seed),
    )
