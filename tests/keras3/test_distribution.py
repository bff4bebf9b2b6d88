"""Keras 3 data parallelism and seed hygiene.

keras.distribution.DataParallel on 2 emulated JAX devices; tf.distribute's MirroredStrategy on 2 logical CPUs.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.cli import config as tfimp_config
from tfimp.cli import main

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
                        learning_rate=0.05, chance_guard=False)  # 8 steps a phase: near chance, and that is fine
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
              "for name in ('keras3.masks', 'keras3.coverage', 'keras3.imp', 'keras3.callbacks', 'cli.keras3_experiment',\n"
              "             'keras3.models'):\n"
              "    importlib.import_module('tfimp.' + name)\n"
              "tfimp.IMP, tfimp.models, tfimp.optimizers\n"
              "print(bool(np.array_equal(before, weights())))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


_MIRRORED = r"""
import json, os, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(  # two CPU replicas, before TensorFlow starts its devices
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np, tfimp
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import k3_helpers as h


def run(strategy):
    # No BatchNorm: under MirroredStrategy each replica normalises with its own half batch's statistics
    # (Keras' default, synchronized=False), so a BatchNorm model trains differently from one device.
    keras.utils.set_random_seed(0)
    x, y = h.classification_data(256)
    x = x.reshape(len(x), -1)
    with strategy.scope():
        imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=32,
                        learning_rate=0.05, chance_guard=False)  # 8 steps a phase: near chance, and that is fine
        rows = imp.run(h.mlp(inputs=x.shape[1]), (x, y), test=(x[:64], y[:64]), verbose=0)
    return rows, imp.model


if sys.argv[3] == "cli":  # the CLI's strategy=mirrored, alone in its process as a user's run is
    import idx_files
    from tfimp.cli import config as tfimp_config, main
    idx_files.make_idx_dataset(os.path.join(sys.argv[2], "idx"), n_train=256, n_test=64)
    config = tfimp_config.base()
    config.update(dict(keras=3, strategy="mirrored", data_dir=os.path.join(sys.argv[2], "idx"), train_subset=256,
                       test_subset=64, batch_size=64, dense_epochs=1, cycles=2, retrain_epochs=1,
                       learning_rate=0.02, validation_fraction=0.25, chance_guard=False, verbose=1,
                       export_formats=""))
    cli_rows = main.run(config, os.path.join(sys.argv[2], "run"))
    print(json.dumps({"cli_sparsity": cli_rows[-1]["sparsity"]}))
    sys.exit(0)

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single_rows, single = run(tf.distribute.get_strategy())
mirrored_rows, parallel = run(mirrored)
single_kernels = {k.name: k for k in tfimp.keras3.masks.prunable_kernels(single)}
out = {"replicas": mirrored.num_replicas_in_sync, "kernels": []}
for kernel in tfimp.keras3.masks.prunable_kernels(parallel):
    copies = [np.asarray(v) for v in kernel.mask.value.values]  # the mask on each replica
    weight = keras.ops.convert_to_numpy(kernel.weight.value)
    out["kernels"].append({
        "copies": len(copies), "identical": all(np.array_equal(c, copies[0]) for c in copies),
        "as_one_device": bool(np.array_equal(copies[0], keras.ops.convert_to_numpy(single_kernels[kernel.name].mask.value))),
        "pruned_nonzero": int(np.count_nonzero(weight[copies[0] == 0])),
        "weight_gap": float(np.max(np.abs(weight - keras.ops.convert_to_numpy(single_kernels[kernel.name].weight.value))))})
out["sparsity"] = [[r["sparsity"] for r in single_rows], [r["sparsity"] for r in mirrored_rows]]
out["test_accuracy"] = [[r["test_accuracy"] for r in single_rows], [r["test_accuracy"] for r in mirrored_rows]]
print(json.dumps(out))
"""


def _mirrored(tmp_path, mode):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", _MIRRORED, os.path.dirname(os.path.abspath(__file__)),
                           str(tmp_path), mode], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute runs on the TensorFlow backend")
def test_mirrored_on_two_cpu_replicas_keeps_every_mask_identical_and_matches_one_device(tmp_path):
    _, out = _mirrored(tmp_path, "api")
    assert out["replicas"] == 2 and len(out["kernels"]) == 2
    for kernel in out["kernels"]:
        assert kernel["copies"] == 2 and kernel["identical"] and kernel["as_one_device"]
        assert kernel["pruned_nonzero"] == 0 and kernel["weight_gap"] < 1e-5
    assert out["sparsity"][0] == out["sparsity"][1]
    assert out["test_accuracy"][1] == pytest.approx(out["test_accuracy"][0], abs=1 / 64)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute runs on the TensorFlow backend")
def test_the_cli_strategy_mirrored_trains_on_both_replicas(tmp_path):
    done, out = _mirrored(tmp_path, "cli")
    assert "strategy mirrored: 2 replica(s)" in done.stdout
    with open(tmp_path / "run" / "results.json") as handle:
        rows = json.load(handle)["rows"]
    assert [row["cycle"] for row in rows] == [0, 1, 2] and rows[-1]["sparsity"] == out["cli_sparsity"]
    from tfimp.keras3 import masks

    kernels = masks.prunable_kernels(tfimp.load_cycle(str(tmp_path / "run"), 2))
    total = sum(int(np.prod(k.weight.shape)) for k in kernels)
    zeros = sum(int(np.sum(h.numpy_of(k.mask) == 0)) for k in kernels)
    assert zeros == int(np.floor(0.9 * total + 0.5)) and rows[-1]["sparsity"] == zeros / total
