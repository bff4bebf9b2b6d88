"""Small Keras 3 models and data for the Keras 3 suite."""

import keras
import numpy as np


def classification_data(n=256, shape=(8, 8, 3), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + tuple(shape)).astype("float32")
    y = (x.reshape(n, -1)[:, :classes].argmax(1)).astype("int32")
    return x, y


def small_cnn(shape=(8, 8, 3), classes=4):
    """Conv, BatchNorm, Dropout and two Dense layers: functional."""
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.2)(h)
    h = keras.layers.Dense(16, activation="relu", name="fc1")(h)
    return keras.Model(inputs, keras.layers.Dense(classes, name="fc2")(h), name="small_cnn")


def mlp(inputs=20, classes=4, hidden=32):
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu", name="fc1"),
                             keras.layers.Dense(classes, name="fc2")], name="mlp")


def compile_for_classes(model, optimizer):
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def numpy_of(variable):
    return keras.ops.convert_to_numpy(variable.value)


def pruned_but_nonzero(model):
    """How many weights under a zero mask are not exactly zero (must be 0)."""
    from tfimp.keras3 import masks

    return sum(int(np.count_nonzero(numpy_of(k.weight)[numpy_of(k.mask) == 0])) for k in masks.prunable_kernels(model))


class StopAtEpoch(keras.callbacks.Callback):
    """Stops training at the start of ``epoch`` with KeyboardInterrupt, as an interruption would."""

    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise KeyboardInterrupt(f"stopped at epoch {epoch}")
