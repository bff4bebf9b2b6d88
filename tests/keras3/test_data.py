"""tf.data on Keras 3: the tensorflow-datasets datasets with the paper's augmentation, on every backend.

A tiny mocked tfds CIFAR-10 (tfds' own mock data) is read through
``tfimp.data.load``; training on it replays each epoch's batches exactly
after an interruption, and the CLI runs a CIFAR config with augmentation.
"""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest

import tfimp
from tfimp.cli import config as tfimp_config
from tfimp.cli import main

import k3_helpers as h

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is None,
                                reason="the tf.data datasets need TensorFlow and tensorflow-datasets")


@pytest.fixture
def mocked_tfds(monkeypatch):
    import tensorflow_datasets as tfds

    from tfimp.tfdata import pipelines as tfdata

    monkeypatch.setattr(tfdata, "network_reachable", lambda timeout=5.0: True)
    with tfds.testing.mock_data(num_examples=24):
        yield


def _tiny_cifar_model():
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, strides=4, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(h), name="tiny_cifar")


def test_tfds_cifar_with_augmentation_loads_as_tf_data(mocked_tfds, tmp_path):
    loaded = tfimp.data.load("cifar10", data_dir=str(tmp_path), batch_size=8, validation_fraction=0.25)
    assert loaded.spec.augmentation == "crop_flip" and loaded.train_examples == 18
    assert "tensorflow-datasets" in loaded.source
    first, again = (np.concatenate([x.numpy() for x, _ in loaded.train_epochs.epoch(1)]) for _ in range(2))
    np.testing.assert_array_equal(first, again)  # an epoch's batches and augmentation are fixed by its index
    assert not np.array_equal(first, np.concatenate([x.numpy() for x, _ in loaded.train_epochs.epoch(2)]))
    # Fashion-MNIST with augmentation goes through tf.data too; without, it stays numpy (no TensorFlow needed).
    assert tfimp.data.uses_tf_data("fashion_mnist", "crop_flip") and not tfimp.data.uses_tf_data("fashion_mnist")
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        tfimp.data.uses_tf_data("cifar10", "mixup")


def _imp_run(loaded, workdir, callbacks=()):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    imp = tfimp.IMP(target_sparsity=0.8, cycles=2, dense_epochs=2, retrain_epochs=1, learning_rate=0.05,
                    batch_size=8, chance_guard=False)
    rows = imp.run(_tiny_cifar_model(), loaded.train, test=loaded.test, workdir=workdir, verbose=0,
                   callbacks=list(callbacks))
    return rows, [keras.ops.convert_to_numpy(v.value) for v in imp.model.variables]


def test_an_interrupted_tf_data_run_resumes_with_the_same_batches(mocked_tfds, tmp_path):
    (tmp_path / "tfds").mkdir()
    loaded = tfimp.data.load("cifar10", data_dir=str(tmp_path / "tfds"), batch_size=8, validation_fraction=0.0)
    straight_rows, straight = _imp_run(loaded, str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        _imp_run(loaded, str(tmp_path / "resumed"), [h.StopAtEpoch(3)])  # epochs 0-2 done and checkpointed
    resumed_rows, resumed = _imp_run(loaded, str(tmp_path / "resumed"))
    assert [r["cycle"] for r in resumed_rows] == [0, 1, 2]
    assert [r["test_accuracy"] for r in resumed_rows] == [r["test_accuracy"] for r in straight_rows]
    assert len(straight) == len(resumed) > 5
    for a, b in zip(straight, resumed):  # epoch 3 saw epoch 3's batches, not epoch 0's again
        np.testing.assert_array_equal(a, b)


def test_the_cli_runs_a_cifar_config_with_augmentation_on_keras3(mocked_tfds, tmp_path):
    if "tiny_cifar" not in tfimp.models.known():  # the registry is the process's; no unregistering
        tfimp.models.register("tiny_cifar", lambda num_classes, input_shape: _tiny_cifar_model())
    (tmp_path / "tfds").mkdir()
    config = tfimp_config.base()
    config.update(dict(keras=3, dataset="cifar10", model="tiny_cifar", augmentation="crop_flip",
                       data_dir=str(tmp_path / "tfds"), batch_size=8, dense_epochs=1, cycles=2, retrain_epochs=1,
                       target_sparsity=0.75, validation_fraction=0.25, chance_guard=False, verbose=0,
                       export_formats=""))
    rows = main.run(config, str(tmp_path / "run"))
    assert [row["cycle"] for row in rows] == [0, 1, 2]
    stored = json.load(open(os.path.join(tmp_path, "run", "results.json")))
    assert [row["sparsity"] for row in stored["rows"]] == [row["sparsity"] for row in rows]
    assert stored["rows"][-1]["sparsity"] == tfimp.sparsity(tfimp.load_cycle(str(tmp_path / "run"), 2))
    kernels = tfimp.keras3.masks.prunable_kernels(tfimp.load_cycle(str(tmp_path / "run"), 2))
    total = sum(int(np.prod(k.weight.shape)) for k in kernels)
    zeros = sum(int(np.sum(keras.ops.convert_to_numpy(k.mask.value) == 0)) for k in kernels)
    assert zeros == int(np.floor(0.75 * total + 0.5))
