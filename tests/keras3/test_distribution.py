"""Keras 3 data parallelism (keras.distribution.DataParallel on 2 emulated CPU devices, JAX) and seed hygiene."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp import config as tfimp_config
from tfimp import main

import k3_helpers as h

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import idx_files  # noqa: E402

jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution runs on JAX")


def _imp_run(distribution):
    keras.distribution.set_distribution(distribution)
    try:
        keras.utils.set_random_seed(0)
        x, y = h.classification_data(256)
        imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=32,
                        learning_rate=0.05)
        rows = imp.run(h.small_cnn(), (x, y), test=(x[:64], y[:64]), verbose=0)
        return rows, imp.model
    finally:
        keras.distribution.set_distribution(None)


@jax_only
def test_data_parallel_on_two_devices_keeps_every_mask_identical_and_matches_one_device():
    devices = keras.distribution.list_devices()
    assert len(devices) == 2  # XLA_FLAGS from tests/keras3/conftest.py
    single_rows, single = _imp_run(None)
    parallel_rows, parallel = _imp_run(keras.distribution.DataParallel(devices=devices))
    single_kernels = {k.name: k for k in tfimp.keras3.masks.prunable_kernels(single)}
    for kernel in tfimp.keras3.masks.prunable_kernels(parallel):
        mask = kernel.mask.value
        shards = [np.asarray(shard.data) for shard in mask.addressable_shards]
        assert len(shards) == 2 and all(np.array_equal(shard, shards[0]) for shard in shards)  # on every device
        np.testing.assert_array_equal(shards[0], h.numpy_of(single_kernels[kernel.name].mask))  # as on one device
        weight = h.numpy_of(kernel.weight)
        assert not np.any(weight[shards[0] == 0])
        np.testing.assert_allclose(weight, h.numpy_of(single_kernels[kernel.name].weight), atol=1e-5)
    assert [r["sparsity"] for r in parallel_rows] == [r["sparsity"] for r in single_rows]
    assert [r["test_accuracy"] for r in parallel_rows] == pytest.approx([r["test_accuracy"] for r in single_rows],
                                                                          abs=1 / 64)


@jax_only
def test_the_cli_strategy_data_parallel_trains_on_both_devices_and_restores_the_distribution(tmp_path, capsys):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    rows = {}
    for strategy in ("default", "data_parallel"):
        config = tfimp_config.base()
        config.update(keras=3, strategy=strategy, data_dir=str(tmp_path / "idx"), train_subset=256, test_subset=64,
                      batch_size=64, dense_epochs=1, cycles=1, retrain_epochs=1, chance_guard=False, verbose=1,
                      export_formats="", learning_rate=0.02)
        rows[strategy] = main.run(config, str(tmp_path / strategy))
        assert keras.distribution.distribution() is None
    assert "strategy data_parallel: 2 device(s)" in capsys.readouterr().out
    assert rows["data_parallel"][-1]["sparsity"] == rows["default"][-1]["sparsity"]
    assert rows["data_parallel"][-1]["test_loss"] == pytest.approx(rows["default"][-1]["test_loss"], rel=1e-4)


def test_importing_tfimp_keras3_draws_nothing_from_the_global_seed():
    """set_random_seed, then tfimp's modules, then a model: the same weights as without tfimp."""
    script = ("import keras, numpy as np, importlib, sys\n"
              "def weights():\n"
              "    layer = keras.layers.Dense(4); layer.build((None, 4))\n"
              "    return keras.ops.convert_to_numpy(layer.kernel)\n"
              "keras.utils.set_random_seed(0); before = weights()\n"
              "keras.utils.set_random_seed(0)\n"
              "import tfimp\n"
              "for name in ('masks', 'coverage', 'imp', 'callbacks', 'experiment', 'models'):\n"
              "    importlib.import_module('tfimp.keras3.' + name)\n"
              "tfimp.IMP, tfimp.models, tfimp.optimizers\n"
              "print(bool(np.array_equal(before, weights())))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
