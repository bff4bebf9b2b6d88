"""benchmarks/deploy.py --quick end to end: the variants it builds and the tables it writes (no timings asserted)."""

import json
import os
import subprocess
import sys

import numpy as np

import helpers
from tfimp import keras

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _deploy(tmp_path, *args):
    """Runs deploy.py --quick on small idx files; returns (latency table, sizes table, the model files' folder)."""
    data = str(tmp_path / "fashion")
    helpers.make_idx_dataset(data, n_train=300, n_test=60)
    out = str(tmp_path / "deploy" / "deploy.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFIMP_OFFLINE": "1"}
    result = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "deploy.py"), "--quick", "--data_dir",
                             data, "--out", out, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(out, encoding="utf-8") as handle:
        latency = json.load(handle)
    with open(str(tmp_path / "deploy" / "deploy_sizes.json"), encoding="utf-8") as handle:
        sizes = json.load(handle)
    for table in (latency, sizes):
        assert table["quick"] is True and "--quick" in table["command"] and table["revision"]
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    return latency, sizes, str(tmp_path / "deploy" / "deploy_files" / "files")


def _check_slimmed(sizes, files, model):
    """The slimmed variant: pruned by tfimp (channels), its parameters read back from its file and its table row."""
    records = {r["variant"]: r for r in sizes["records"] if r["model"] == model}
    dense, slimmed = records["dense"], records["channels_slimmed"]
    assert slimmed["criterion"] == "uniform" and slimmed["emptied_layers"] == []
    assert 0.0 < slimmed["channel_sparsity"] < 1.0
    # Pruning keeps the architecture; slimming removes the pruned channels.
    assert slimmed["parameters_before_slim"] == dense["parameters"] > slimmed["parameters"]
    loaded = keras.models.load_model(os.path.join(files, f"{model}_channels_slimmed.keras"), compile=False)
    assert loaded.count_params() == slimmed["parameters"]
    row = next(r for r in sizes["rows"] if r[:2] == [model, "channels_slimmed"])
    column = sizes["columns"].index("parameters")
    assert row[column] == f"{slimmed['parameters']:,}"
    assert f"{slimmed['parameters_before_slim']:,} parameters before slimming" in row[sizes["columns"].index("pruning")]
    for record in records.values():
        assert 0.0 <= record["test_accuracy"] <= 1.0
    return records


def test_deploy_benchmark_quick(tmp_path):
    latency, sizes, files = _deploy(tmp_path, "--models", "small_cnn")
    records = {r["variant"]: r for r in sizes["records"]}
    assert list(records) == ["dense", "unstructured_90", "2:4", "channels_slimmed"]
    dense = records["dense"]
    kernels = 3 * 3 * 1 * 32 + 3 * 3 * 32 * 64 + 3136 * 32 + 32 * 10  # small_cnn's prunable weights
    # 90% of the kernels pruned; 2:4 zeroes half of every kernel but conv1 (one input channel: left dense).
    assert records["unstructured_90"]["zeros"] - dense["zeros"] >= round(0.9 * kernels) - 5
    assert abs(records["2:4"]["zeros"] - dense["zeros"] - (kernels - 288) // 2) <= 5
    assert records["unstructured_90"]["parameters"] == records["2:4"]["parameters"] == dense["parameters"]
    _check_slimmed(sizes, files, "small_cnn")
    # conv1, conv2 and fc1 lose channels; the logits layer keeps its ten classes.
    loaded = keras.models.load_model(os.path.join(files, "small_cnn_channels_slimmed.keras"), compile=False)
    assert [loaded.get_layer(n).get_weights()[0].shape[-1] < s for n, s in (("conv1", 32), ("conv2", 64),
                                                                              ("fc1", 32))] == [True] * 3
    assert loaded.get_layer("logits").get_weights()[0].shape[-1] == 10
    for record in records.values():
        assert record["tflite_bytes"] > 0 and 0 < record["keras_gzip"] < record["keras_bytes"]
    # The sparse TFLite file (EXPERIMENTAL_SPARSITY) stores the 90% model in less than the dense one.
    assert records["unstructured_90"]["tflite_bytes"] < dense["tflite_bytes"]

    measured = {(r["runtime"], r["variant"], r["batch"]): r["median_s"] for r in latency["results"]}
    runtimes = {runtime for runtime, _, _ in measured}
    assert {"keras_tf_keras", "keras_jax", "tflite_xnnpack", "tflite_builtin"} <= runtimes
    assert ("onnxruntime" in runtimes) != any("onnx" in key for key in latency["skipped"])
    assert len(measured) == len(runtimes) * 4 * 2 and all(s > 0 for s in measured.values())
    # Each cell is the variant's median over dense's in the same runtime and batch.
    column = latency["columns"].index("TFLite (XNNPack default)")
    for row in latency["rows"]:
        model, variant, batch = row[0], row[1], int(row[2])
        assert model == "small_cnn" and batch in (1, 4)
        ratio = measured[("tflite_xnnpack", variant, batch)] / measured[("tflite_xnnpack", "dense", batch)]
        np.testing.assert_allclose(float(row[column].split()[0]), ratio, atol=0.006)
    assert any("channels" in note and "tfimp.prune" in note for note in latency["notes"])

