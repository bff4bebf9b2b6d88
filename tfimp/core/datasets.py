"""What tfimp knows about datasets, without any framework: specs, idx files, seeded splits and epoch seeds.

Both front ends read MNIST and Fashion-MNIST from idx files here (Debian's
``dataset-fashion-mnist`` package, or a ``data_dir``), split the official
training set with the same seeded permutation, and derive each epoch's
shuffling seed the same way.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from typing import Optional, Sequence

import numpy as np

#: Where Debian's ``dataset-fashion-mnist`` package puts the idx files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


class DataUnavailableError(RuntimeError):
    """The dataset is not on disk and cannot be downloaded now."""


class DamagedDataFile(DataUnavailableError, ValueError):
    """A data file is there but damaged (cut short, not the format it should be); the message names it."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str  # "none", "crop_flip", "crop_flip_rotate", "imagenet"
    tfds_name: str
    idx_prefix: Optional[str] = None  # for idx files: "" (train-images-idx3-ubyte, ...)


SPECS = {
    "mnist": DatasetSpec("mnist", 10, (28, 28, 1), (0.1307,), (0.3081,), "none", "mnist", ""),
    "fashion_mnist": DatasetSpec("fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,), "none",
                                 "fashion_mnist", ""),
    "cifar10": DatasetSpec("cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           "crop_flip", "cifar10"),
    "cifar100": DatasetSpec("cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            "crop_flip_rotate", "cifar100"),
    "imagenet2012": DatasetSpec("imagenet2012", 1000, (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                "imagenet", "imagenet2012"),
}
AUGMENTATIONS = ("none", "crop_flip", "crop_flip_rotate", "imagenet")


def spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]


def read_idx(path: str) -> np.ndarray:
    """Reads an idx file (optionally gzipped) as used by MNIST and Fashion-MNIST.

    Raises:
      DamagedDataFile: the file is damaged (truncated, not gzip, not idx); the message names it.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise DamagedDataFile(f"{path} is not an idx file of unsigned bytes (header {raw[:4]!r})")
        shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    except (OSError, EOFError, zlib.error, struct.error) as error:
        raise DamagedDataFile(f"{path} is damaged ({type(error).__name__}: {error}); get the file again (for "
                              "Fashion-MNIST: reinstall Debian's dataset-fashion-mnist)") from None
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DamagedDataFile(f"{path} is damaged: its header says {shape}, it holds {data.size} values; get the "
                              "file again")
    return data.reshape(shape)


def _find_idx(directory: str, stem: str) -> Optional[str]:
    for name in (stem, f"{stem}.gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def check_data_dir(data_dir: Optional[str]) -> None:
    """A ``data_dir`` the user named must exist: it is used or refused, never replaced by a default.

    Raises:
      DataUnavailableError: ``data_dir`` is given and is not a directory.
    """
    if data_dir and not os.path.isdir(data_dir):
        what = "is a file, not a directory" if os.path.exists(data_dir) else "does not exist"
        raise DataUnavailableError(f"data_dir {data_dir!r} {what}; give the directory that holds the dataset, or "
                                   "leave data_dir empty for the default locations")


def idx_dirs(name: str, data_dir: Optional[str], debian_dir: str = DEBIAN_FASHION_MNIST) -> list[str]:
    """Where the idx files of ``name`` may be: ``data_dir`` and its ``name`` subfolders when given (it must
    exist), else Debian's Fashion-MNIST."""
    check_data_dir(data_dir)
    if data_dir:
        return [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, name.replace("_", "-"))]
    return [debian_dir] if name == "fashion_mnist" else []


def load_idx(directories: Sequence[str]):
    """(x_train, y_train, x_test, y_test, source) from the first directory holding the four idx files, or None."""
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for directory in directories:
        paths = [_find_idx(directory, stem) for stem in stems]
        if all(paths):
            x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
            if len(x_train) != len(y_train) or len(x_test) != len(y_test):
                raise ValueError(f"idx files in {directory} disagree on the number of examples")
            return x_train[..., None], y_train, x_test[..., None], y_test, f"idx files in {directory}"
    return None


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into train and validation indices."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_validation = int(round(validation_fraction * n))
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of epoch ``epoch``: a function of the run's seed and the epoch only."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2 ** 62)


def normalize(images: np.ndarray, data_spec: DatasetSpec) -> np.ndarray:
    """uint8 images -> float32, scaled to [0, 1], then standardised by the dataset's channel mean and std."""
    scaled = images.astype(np.float32) / 255.0
    return (scaled - np.asarray(data_spec.mean, np.float32)) / np.asarray(data_spec.std, np.float32)
