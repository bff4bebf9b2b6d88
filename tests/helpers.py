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
