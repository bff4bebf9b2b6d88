"""benchmarks/torch_methods_reference.py keeps working: its tfimp side tiny, its merge, its PyTorch side (if torch is
installed; it is not a tfimp dependency, so CI skips that part)."""

import json
import math
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import torch_methods_reference as reference  # noqa: E402

PRUNABLE = sum(i * o for _, i, o in reference.LAYERS)
KEPT = PRUNABLE - math.floor(0.9 * PRUNABLE + 0.5)


def test_the_tf_keras_side_is_fed_the_protocols_batch_order():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.int32)
    ordered = reference.tfimp_train_data("tf_keras", x, y, 4, seed=3)
    assert ordered.steps_per_epoch == 3
    for epoch in (0, 2):
        seen = np.concatenate([batch[1].numpy() for batch in ordered.epoch(epoch)])
        np.testing.assert_array_equal(seen, reference.epoch_order(3, epoch, 10))
    assert not np.array_equal(reference.epoch_order(3, 0, 10), reference.epoch_order(3, 2, 10))


def test_the_tfimp_side_runs_lc_and_dnw_a_few_steps(tmp_path, fashion_dir):
    out = str(tmp_path)
    report = reference.run_side("tf_keras", ["lc", "dnw"], [0], fashion_dir, out, epochs=1,
                                train_subset=256, test_subset=200)
    assert report["data"] == {"train": 256, "test": 200}
    with open(reference.side_path(out, "tf_keras")) as handle:
        assert json.load(handle) == json.loads(json.dumps(report))  # what it wrote reads back
    assert [(r["method"], r["seed"]) for r in report["results"]] == [("lc", 0), ("dnw", 0)]
    with np.load(reference.init_path(out, 0)) as saved:  # the initial weights the other sides read
        assert [saved[f"w{i}"].shape for i in range(len(saved.files))] == [
            shape for _, i, o in reference.LAYERS for shape in ((i, o), (o,))]
    with np.load(reference.masks_path(out, "tf_keras")) as saved:
        for result in report["results"]:
            masks = [saved[f"{result['method']}/0/{name}"] for name, _, _ in reference.LAYERS]
            assert [m.shape for m in masks] == [(o, i) for _, i, o in reference.LAYERS]  # PyTorch's layout
            assert sum(int(m.sum()) for m in masks) == KEPT
            kernels = [saved[f"kernel:{result['method']}/0/{name}"] for name, _, _ in reference.LAYERS]
            assert all(np.array_equal(k != 0, m.astype(bool)) for k, m in zip(kernels, masks))
            assert result["sparsity"] == pytest.approx(1 - KEPT / PRUNABLE, abs=1e-12)
            assert result["layer_sparsity"] == pytest.approx(result["tfimp_layer_sparsity"], abs=1e-9)
            assert 0.0 <= result["test_accuracy"] <= 1.0


def test_tfimp_skips_the_methods_its_rules_do_not_have():
    from tfimp.core.during_training import RULES

    run, skipped = reference.available_methods("tf_keras", list(reference.METHODS))
    assert run == [m for m in reference.METHODS if m in RULES] and set(run) | set(skipped) == set(reference.METHODS)
    assert reference.available_methods("torch", list(reference.METHODS)) == (list(reference.METHODS), [])
    assert reference.available_methods("torch_l2", ["lc", "cs", "dst"]) == (["cs", "dst"], ["lc"])


def _side(out, side, accuracy, kept_first, method="lc", hyper=None):
    """A side's files: one ``method`` run of seed 0 whose fc1 keeps ``kept_first`` (of its first four weights)."""
    masks, kernels = {}, {}
    for name, inputs, outputs in reference.LAYERS:
        mask = np.zeros((outputs, inputs), np.uint8)
        mask.flat[:4] = 1
        if name == "fc1":
            mask.flat[:4] = kept_first
        masks[name] = mask
        kernels[name] = mask.astype(np.float32) * 2.0
    sparsity, layers = reference.summarise(masks)
    report = {"side": side, "skipped": [], "data": {"train": 8, "test": 8}, "results": [
        {"side": side, "method": method, "seed": 0, "epochs": 7, "hyper": hyper or {}, "test_accuracy": accuracy,
         "sparsity": sparsity, "layer_sparsity": layers}]}
    with open(reference.side_path(out, side), "w") as handle:
        json.dump(report, handle)
    np.savez(reference.masks_path(out, side), **{f"{method}/0/{k}": v for k, v in masks.items()},
             **{f"kernel:{method}/0/{k}": v for k, v in kernels.items()})


def test_merge_compares_each_side_with_pytorch(tmp_path):
    out = str(tmp_path)
    _side(out, "torch", 0.80, [1, 1, 1, 1])
    _side(out, "tf_keras", 0.79, [1, 1, 0, 1])  # one kept weight fewer in fc1
    merged = reference.merge(out, ["tf_keras", "torch"], "the command", "abc1234")
    with open(os.path.join(out, "fidelity_methods.json")) as handle:
        assert json.load(handle) == json.loads(json.dumps(merged))
    assert (merged["command"], merged["revision"]) == ("the command", "abc1234")
    (comparison,) = merged["comparisons"]
    assert (comparison["side"], comparison["method"], comparison["seed"]) == ("tf_keras", "lc", 0)
    assert comparison["accuracy_difference"] == pytest.approx(-1.0)
    assert comparison["kept_differences"] == 1
    assert comparison["kept_overlap"] == pytest.approx(11 / 12)
    assert comparison["kernel_relative_difference"] == pytest.approx((4.0 / (12 * 4.0)) ** 0.5)
    assert comparison["layer_differences"]["fc1"] == pytest.approx(100 / (784 * 300))
    assert comparison["layer_differences"]["fc2"] == 0.0
    (summary,) = merged["summary"]
    assert summary["within_tolerance"] is False and summary["seeds"] == [0]


def test_merge_records_the_budget_and_hyper_parameters_the_runs_had(tmp_path):
    """Not the protocol's defaults: what the side files say (a run with --epochs 7 --dst_alpha 0.003)."""
    out = str(tmp_path)
    for side in ("torch", "tf_keras"):
        _side(out, side, 0.80, [1, 1, 1, 1], method="dst", hyper={"dst_alpha": 0.003})
    merged = reference.merge(out, ["tf_keras", "torch"], "the command", "abc1234")
    assert merged["protocol"]["epochs"] == 7 and merged["hyper"]["dst"]["dst_alpha"] == 0.003
    assert merged["hyper"]["cs"] == reference.HYPER["cs"]


def test_the_pytorch_side_follows_tfimp_step_for_step(tmp_path, fashion_dir):
    pytest.importorskip("torch")
    out = str(tmp_path)
    settings = dict(epochs=1, train_subset=256, test_subset=200)
    reference.run_side("tf_keras", ["lc", "gsm"], [0], fashion_dir, out, **settings)
    reference.run_side("torch", ["lc", "gsm"], [0], fashion_dir, out, **settings)
    merged = reference.merge(out, ["tf_keras", "torch"], "test", "test")
    assert {c["method"] for c in merged["comparisons"]} == {"lc", "gsm"}
    for comparison in merged["comparisons"]:
        assert comparison["kept_differences"] == 0, comparison
        assert comparison["kernel_relative_difference"] < 1e-5, comparison
