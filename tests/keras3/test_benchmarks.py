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
    assert figures["repeat"] == 0 and row.split("|")[3].strip() == "1"  # one repeat
    phases = figures["phases"]  # --phases: the wall split into its parts, each measured
    assert set(phases) == {"steps_s", "first_batches_s", "bn_reestimation_s", "test_evaluation_s", "other_s"}
    assert all(phases[name] > 0 for name in ("steps_s", "first_batches_s", "bn_reestimation_s", "test_evaluation_s"))
    assert sum(phases.values()) == pytest.approx(figures["imp_wall_s"]) and phases["other_s"] >= 0
    split = next(line for line in result.stdout.splitlines() if line.startswith(f"| {BACKEND} ({BACKEND}) | 0 |"))
    assert f"| {phases['bn_reestimation_s']:.1f} |" in split
