"""Small models and data shared by the tests."""

import numpy as np

from tfimp import keras


def small_cnn(input_shape=(8, 8, 3), classes=5, name="small_cnn") -> keras.Model:
    """Conv -> BN -> Conv -> Flatten -> Dense -> Dense: four prunable kernels."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def random_data(n=64, input_shape=(8, 8, 3), classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


# numpy only: shared with tests/keras3
from idx_files import _write_idx, copy_idx_subset, count_test_examples, make_idx_dataset  # noqa: E402,F401


def prunable_total(model) -> int:
    """How many weights tfimp's default coverage prunes in ``model`` (wrapped or not)."""
    from tfimp import wrapping

    if wrapping.wrappers(model):
        return sum(k.size for k in wrapping.prunable_kernels(model))
    return sum(int(w.variable.shape.num_elements()) for w in wrapping.covered_weights(model))


def exact_fraction(target: float, total: int):
    """Exactly round(target * total) of ``total`` weights, as a fraction: one weight more or less fails."""
    import math

    import pytest

    return pytest.approx(math.floor(target * total + 0.5) / total, abs=0.5 / total)


def exact_sparsity(model, target: float):
    """What tfimp promises: exactly round(target * total) of the model's prunable kernel weights pruned.

    Compares as a count: within half a weight of that fraction (float rounding aside, one weight more or
    less fails).
    """
    return exact_fraction(target, prunable_total(model))
