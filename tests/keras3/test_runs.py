"""Data and runners on Keras 3: per-epoch order from the seed, idx files without TensorFlow, IMP and Dense in one call."""

import os
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.keras3 import masks

import k3_helpers as h

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import idx_files  # noqa: E402


def _batches(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_epoch_order_depends_only_on_the_seed_and_the_epoch():
    x = np.arange(50, dtype="float32")[:, None]
    y = np.arange(50)
    walked = tfimp.data.EpochOrdered(x, y, batch_size=8, seed=3)
    seen = []
    for _ in range(3):
        seen.append(_batches(walked))
        walked.on_epoch_end()
    resumed = tfimp.data.EpochOrdered(x, y, batch_size=8, seed=3, epoch=2)
    for (a, b), (c, d) in zip(seen[2], _batches(resumed)):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert len(seen[0]) == 7 and len(seen[0][-1][1]) == 2  # 50 = 6 * 8 + 2
    for epoch in seen:  # every example once per epoch
        assert sorted(np.concatenate([y for _, y in epoch]).tolist()) == list(range(50))
    assert not np.array_equal(np.concatenate([y for _, y in seen[0]]), np.concatenate([y for _, y in seen[1]]))
    other_seed = tfimp.data.EpochOrdered(x, y, batch_size=8, seed=4)
    assert not np.array_equal(_batches(other_seed)[0][1], seen[0][0][1])


def test_a_runner_trains_each_epoch_on_that_epochs_order():
    class Recorded(tfimp.data.EpochOrdered):
        fetched: list = []

        def __getitem__(self, index):
            Recorded.fetched.append(self.epoch)
            return super().__getitem__(index)

    x, y = h.classification_data(64)
    data = Recorded(x, y, batch_size=16, seed=0)
    tfimp.Dense(2, learning_rate=0.05, chance_guard=False).run(h.small_cnn(), data, verbose=0)
    training = Recorded.fetched[-8:]  # 2 epochs of 4 batches (Keras reads a batch to build the model first)
    # Keras 3's fit ends an epoch of its data once before training; without EpochOrdered.follow this read [1, 2].
    assert training == [0] * 4 + [1] * 4


def test_idx_files_load_without_tensorflow_with_the_seeded_split(tmp_path):
    arrays = idx_files.make_idx_dataset(str(tmp_path), n_train=100, n_test=30)
    data = tfimp.data.load("fashion_mnist", data_dir=str(tmp_path), batch_size=16, validation_fraction=0.2,
                           seed=1, test_subset=20)
    assert data.train_examples == 80 and len(data.validation[1]) == 20 and len(data.test[1]) == 20
    train_index, validation_index = tfimp.core.datasets.split_indices(100, 0.2, 1)
    np.testing.assert_array_equal(data.validation[1], arrays["train-labels-idx1-ubyte"][validation_index])
    expected = (arrays["t10k-images-idx3-ubyte"][:20, :, :, None] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(data.test[0], expected, rtol=1e-5)
    assert data.train.steps_per_epoch == 5 and data.test[0].dtype == np.float32
    (tmp_path / "empty").mkdir()
    with pytest.raises(tfimp.data.DataUnavailableError, match="no idx files"):
        tfimp.data.load("mnist", data_dir=str(tmp_path / "empty"))
    with pytest.raises(tfimp.data.DataUnavailableError, match="data_dir .*nowhere.* does not exist"):
        tfimp.data.load("mnist", data_dir=str(tmp_path / "nowhere"))
    assert "tensorflow" not in type(data.train).__module__  # idx data is numpy: a PyDataset, no tf.data


def test_the_imp_runner_runs_a_whole_plan_in_one_call():
    x, y = h.classification_data(256)
    imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=2, retrain_epochs=1, learning_rate=0.05,
                    batch_size=32)
    rows = imp.run(h.small_cnn(), (x, y), test=(x[:64], y[:64]), verbose=0)
    kernels = masks.prunable_kernels(imp.model)
    total = sum(k.size for k in kernels)
    assert [r["cycle"] for r in rows] == [0, 1, 2]
    assert rows[-1]["sparsity"] == round(0.9 * total) / total == tfimp.sparsity(imp.model)
    assert rows[1]["test_accuracy_bn_reestimated"] is not None  # the default plan re-estimates BatchNorm
    assert h.pruned_but_nonzero(imp.model) == 0
    assert isinstance(imp.model.optimizer, tfimp.optimizers.TorchSGD) and imp.model.optimizer.nesterov


def test_bimp_and_dense_runners():
    x, y = h.classification_data(128)
    bimp = tfimp.IMP.bimp(0.8, 2, total_epochs=4, dense_epochs=2, learning_rate=0.05, batch_size=32,
                          recalibrate_bn=False)
    rows = bimp.run(h.mlp(inputs=192), (x.reshape(128, -1), y), verbose=0)
    assert [r["retrain_schedule"] for r in rows] == ["dense", "allr", "allr"]
    assert bimp.plan.retrain_epochs_total == 2 and bimp.dense_schedule == "linear"
    dense = tfimp.Dense(2, learning_rate=0.05, batch_size=32)
    rows = dense.run(h.mlp(inputs=192), (x.reshape(128, -1), y), test=(x.reshape(128, -1)[:32], y[:32]), verbose=0)
    assert len(rows) == 1 and rows[0]["epochs"] == 2 and rows[0]["steps"] == 8 and rows[0]["sparsity"] == 0.0
    assert rows[0]["initial_lr"] == pytest.approx(0.05) and 0 <= rows[0]["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown dense schedule"):
        tfimp.Dense(2, dense_schedule="nope")


def test_a_run_at_chance_level_stops_with_a_clear_error_unless_the_guard_is_off(tmp_path):
    from tfimp.core import guards

    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    y = (np.arange(64) % 4).astype("int32")  # balanced: a dead network's loss is exactly ln 4

    def dead():  # every ReLU unit dead from the start: only the output bias learns
        inputs = keras.Input((20,))
        hidden = keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-100.0),
                                    name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(4, name="out")(hidden))

    settings = dict(learning_rate=0.05, batch_size=16, weight_decay=0.0)
    imp = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=2, retrain_epochs=1, **settings)
    with pytest.raises(guards.ChanceLevelError, match=r"chance level through epoch \d.*ln\(4\) = 1.3863"):
        imp.run(dead(), (x, y), workdir=str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run" / "cycle_1").exists()  # no pruning step ran on it
    rows = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=2, retrain_epochs=1, chance_guard=False,
                     **settings).run(dead(), (x, y), verbose=0)
    assert len(rows) == 2
    with pytest.raises(guards.ChanceLevelError):
        tfimp.Dense(3, **settings).run(dead(), (x, y), verbose=0)
    assert len(tfimp.Dense(3, chance_guard=False, **settings).run(dead(), (x, y), verbose=0)) == 1


def test_a_model_whose_outputs_do_not_fit_the_dataset_is_named():
    model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    tfimp.architectures.check_outputs_fit(model, 10, "fashion_mnist")
    with pytest.raises(ValueError, match="model 'small_cnn' has 10 outputs, dataset 'cifar100' has 100 classes"):
        tfimp.architectures.check_outputs_fit(model, 100, "cifar100")
