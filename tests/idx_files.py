"""Small MNIST-style idx files for both suites (numpy only: the Keras 3 suite imports it too)."""

import gzip
import os
import struct

import numpy as np


def _write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path + ".gz", "wb") as handle:
            handle.write(payload)
    else:
        with open(path, "wb") as handle:
            handle.write(payload)


def make_idx_dataset(directory, n_train=60, n_test=20, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        _write_idx(os.path.join(directory, name), array, compress)
    return arrays


def copy_idx_subset(source, directory, n_train, n_test):
    """The first ``n_train`` training and ``n_test`` test examples of the idx files in ``source`` (real data, e.g.
    Debian's Fashion-MNIST), written as gzipped idx files into ``directory``: a test pays for the examples it
    uses, not for evaluating a 10,000-image test set."""
    from tfimp.core.datasets import read_idx  # framework-free

    os.makedirs(directory, exist_ok=True)
    for stem, count in (("train-images-idx3-ubyte", n_train), ("train-labels-idx1-ubyte", n_train),
                        ("t10k-images-idx3-ubyte", n_test), ("t10k-labels-idx1-ubyte", n_test)):
        _write_idx(os.path.join(directory, stem), read_idx(os.path.join(source, stem + ".gz"))[:count], True)
    return directory


def count_test_examples(directory):
    """How many test examples the idx files in ``directory`` hold (read from the labels file's header)."""
    with gzip.open(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"), "rb") as handle:
        return struct.unpack(">I", handle.read(8)[4:])[0]
