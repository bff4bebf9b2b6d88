"""The Keras 3 benchmark scripts on tiny data: what they write, read back."""

import json
import math
import os
import subprocess
import sys

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfimp.core import datasets  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests"))
import dpf_trace  # noqa: E402

BACKEND = keras.backend.backend()
#: Real Fashion-MNIST (the runners' chance guard stops on random labels): Debian's package, installed by .ci/run.
needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(datasets.DEBIAN_FASHION_MNIST),
                                         reason="needs Debian's dataset-fashion-mnist")


def _bench(script, *args):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), *args], capture_output=True,
                          text=True, env=env, timeout=900, cwd=REPO)


def _model_h_prunable():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import fidelity_fashion_mnist

    import tfimp

    model = tfimp.wrap(fidelity_fashion_mnist.model_h(), verbose=0)
    return sum(int(math.prod(k.weight.shape)) for k in tfimp.keras3.masks.prunable_kernels(model))


@needs_fashion_mnist
@pytest.mark.skipif(BACKEND != "jax", reason="the script is backend-free (its runs go through the CLI) and is "
                    "checked once, on JAX, to keep CI short; DPF itself is tested on every backend")
def test_the_dpf_diagnosis_traces_each_run_epoch_by_epoch():
    dpf_trace.check_two_epochs_of_512(
        _bench("diagnose_dpf.py", "--keras", "3", "--seeds", "0", "--epochs", "2", "--train_subset", "512"))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="checked once, on the backend that writes every format (CI "
                    "time); tests/keras3/test_export.py checks each backend's formats")
def test_the_export_size_benchmark_writes_every_format_this_backend_can(tmp_path):
    from tfimp.keras3 import export

    result = _bench("export_sizes.py", "--keras", "3", "--sparsity", "0.8", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.load(open(os.path.join(tmp_path, "export_sizes.json")))
    assert [f["format"] for f in written["files"]] == [f for f in export.FORMATS if export.unavailable(f) is None]
    assert sorted(written["skipped"]) == [f for f in export.FORMATS if export.unavailable(f) is not None]
    for entry in written["files"]:
        assert entry["max_abs_error"] <= entry["tolerance"] and entry["gzip_bytes"] < entry["dense_gzip_bytes"]
        line = next(row for row in result.stdout.splitlines() if row.split() and row.split()[0] == entry["format"])
        assert f"{entry['bytes']:,d}" in line
    assert written["sparsity"] == pytest.approx(0.8, abs=1e-5)
    assert written["revision"] and "export_sizes.py" in written["command"]

    # --combine lays runs side by side as the docs table (docs/tables/export_sizes.json); here one run twice.
    table_path = os.path.join(tmp_path, "table.json")
    result = _bench("export_sizes.py", "--combine", f"{tmp_path},{tmp_path}", "--table", table_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.load(open(table_path))
    assert table["columns"][1].startswith(written["front_end"]) and len(table["columns"]) == 5
    assert "pruned to 80%" in table["title"] and "--combine" in table["command"]
    rows = {row[0]: row for row in table["rows"]}
    int8 = next(entry for entry in written["files"] if entry["format"] == "tflite_int8")
    assert rows["TFLite full integer (int8)"][1] == rows["TFLite full integer (int8)"][3] == (
        f"{int8['bytes']:,} / {int8['gzip_bytes']:,} ({int8['dense_gzip_bytes']:,})")
    assert all(len(row) == len(table["columns"]) for row in table["rows"])


@needs_fashion_mnist
@pytest.mark.skipif(BACKEND != "jax", reason="the claim (a) table is measured on JAX; the script is backend-free "
                    "(every run goes through the CLI) and runs once, to keep CI short")
def test_the_equal_budget_benchmark_runs_on_keras3(tmp_path):
    out = str(tmp_path / "methods")
    # Groups a and b (the script's STR and (c) groups are front-end free and run in tests/test_benchmarks.py;
    # STR itself on Keras 3 is tested in test_baselines.py).
    result = _bench("bench_methods.py", "--keras", "3", "--groups", "a,b", "--methods", "dense,gmp,dpf,imp_slr",
                    "--criteria", "erk", "--sparsities", "0.9", "--seeds", "0", "--epochs", "3", "--imp_cycles", "2",
                    "--train_subset", "256", "--test_subset", "300", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.load(open(os.path.join(out, "methods.json")))
    assert written["front_end"] == f"Keras {keras.__version__} ({BACKEND})"
    by_method = {r["method"]: r for r in written["results"]}
    assert set(by_method) == {"dense", "gmp", "dpf", "imp_slr", "imp_slr_erk"}
    import tfimp
    from tfimp.keras3 import masks

    total = sum(k.size for k in masks.prunable_kernels(
        tfimp.wrap(tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1)), verbose=0)))
    for method in ("gmp", "dpf", "imp_slr", "imp_slr_erk"):  # every method at its exact target, equal budget
        assert by_method[method]["sparsity"] == math.floor(0.9 * total + 0.5) / total, method
        assert by_method[method]["epochs"] == 3
    # (b): read back from each run's last cycle_N/: ERK spread the same count differently over the same layers.
    erk, global_ = by_method["imp_slr_erk"]["layer_sparsity"], by_method["imp_slr"]["layer_sparsity"]
    assert set(erk) == set(global_) and len(erk) >= 3 and erk != global_
    table = result.stdout[result.stdout.index("(a, b) test accuracy"):]
    dense_line = next(line for line in table.splitlines() if line.startswith("dense"))
    assert f"{100 * by_method['dense']['test_accuracy']:.2f} ± 0.00" in dense_line


@needs_fashion_mnist
@pytest.mark.skipif(BACKEND != "jax", reason="the fidelity claim is made for Keras 3 on JAX")
def test_fidelity_benchmark_runs_on_keras3(tmp_path):
    out = str(tmp_path / "fidelity")
    result = _bench("fidelity_fashion_mnist.py", "--keras", "3", "--train_subset", "512", "--seeds", "0",
                    "--sparsities", "0.9", "--schedules", "slr", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.load(open(os.path.join(out, "fidelity.json")))
    assert written["front_end"] == f"Keras {keras.__version__} (jax)"
    runs = {(r["method"], r["target_sparsity"]): r for r in written["runs"]}
    assert set(runs) == {("dense", 0.0), ("imp_slr", 0.9), ("gmp", 0.9)}
    total = _model_h_prunable()
    assert runs[("imp_slr", 0.9)]["sparsity"] == math.floor(0.9 * total + 0.5) / total
    assert runs[("gmp", 0.9)]["sparsity"] == math.floor(0.9 * total + 0.5) / total
    assert [row["cycle"] for row in runs[("gmp", 0.9)]["rows"]] == list(range(1, 13))  # 12 epochs, one row each
    assert [row["cycle"] for row in runs[("imp_slr", 0.9)]["rows"]] == [1, 2, 3]
    summary = {(s["method"], s["target_sparsity"]): s for s in written["summary"]}
    ours = 100 * runs[("imp_slr", 0.9)]["rows"][-1]["test_accuracy"]
    assert summary[("imp_slr", 0.9)]["difference"] == pytest.approx(ours - 90.93)


@needs_fashion_mnist
@pytest.mark.skipif(BACKEND != "jax", reason="the worker's code is backend-free; run once (CI time), on JAX")
def test_speed_benchmark_worker_of_this_backend(tmp_path):
    out = str(tmp_path / "speed")
    result = _bench("speed_front_ends.py", "--front_ends", BACKEND, "--train_subset", "256",
                    "--rounds", "2", "--steps", "2", "--phases", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.load(open(os.path.join(out, "speed.json")))
    assert written["authors_wall_s"] == [80.0, 86.0]
    (figures,) = written["results"]
    assert (figures["front_end"], figures["backend"], figures["train_examples"]) == (BACKEND, BACKEND, 256)
    total = _model_h_prunable()
    assert figures["imp_sparsity"] == math.floor(0.98 * total + 0.5) / total
    assert len(figures["mask_cost_rounds"]) == 2 and figures["mask_cost"] > 0
    assert figures["step_ms_plain"] > 0 and figures["imp_wall_s"] > 0
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {BACKEND} ({BACKEND})"))
    assert f"{figures['imp_wall_s']:.1f} s" in row and f"{figures['mask_cost']:.3f}x" in row
    assert figures["repeat"] == 0 and row.split("|")[3].strip() == "current" and row.split("|")[4].strip() == "1"
    phases = figures["phases"]  # --phases: the wall split into its parts, each measured
    assert set(phases) == {"steps_s", "first_batches_s", "bn_reestimation_s", "test_evaluation_s", "other_s"}
    assert all(phases[name] > 0 for name in ("steps_s", "first_batches_s", "bn_reestimation_s", "test_evaluation_s"))
    assert sum(phases.values()) == pytest.approx(figures["imp_wall_s"]) and phases["other_s"] >= 0
    split = next(line for line in result.stdout.splitlines() if line.startswith(f"| {BACKEND} ({BACKEND}) | 0 |"))
    assert f"| {phases['bn_reestimation_s']:.1f} |" in split


@needs_fashion_mnist
@pytest.mark.skipif(BACKEND != "jax", reason="gpu_check runs on the JAX backend")
def test_gpu_check_small_reports_exact_imp_and_the_step_ratio(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import gpu_check

    gpu_check.main(["--small", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["small"] is True and report["device"].startswith("cpu")
    imp = report["imp_slr_98"]
    assert imp["training_images"] == gpu_check.SMALL["train_subset"]
    assert imp["zeros"] == round(0.98 * imp["prunable"]) and imp["sparsity"] == imp["zeros"] / imp["prunable"]
    assert [row["cycle"] for row in imp["rows"]] == [1, 2] and imp["rows"][-1]["retrain_schedule"] == "slr"
    assert imp["wall_s"] == pytest.approx(imp["dense_wall_s"] + imp["imp_wall_s"])
    cost = report["step_cost"]
    assert cost["model"] == "resnet20" and cost["sparsity"] == pytest.approx(0.9, abs=1e-5)
    assert all(len(v) == gpu_check.SMALL["repeats"] and min(v) > 0 for v in cost["timings_ms"].values())
    assert cost["ratio"] == pytest.approx(cost["ms_per_step"]["wrapped"] / cost["ms_per_step"]["unwrapped"])
