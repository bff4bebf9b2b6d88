"""The benchmark scripts run end to end on tiny settings (no timings asserted)."""

import json
import os
import subprocess
import sys

import pytest

import dpf_trace
import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFIMP_OFFLINE": "1"}


def _bench(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=900)


def test_methods_benchmark_tiny(tmp_path, fashion_dir):
    out = str(tmp_path / "bench")
    # The methods themselves are tested in test_cli/test_baselines; here the benchmark's groups and bookkeeping.
    result = _bench("bench_methods.py", "--methods", "dense,gmp,imp_slr", "--criteria", "erk",
                    "--sparsities", "0.9", "--seeds", "0", "--epochs", "3", "--imp_cycles", "2",
                    "--split_budget", "4", "--splits", "0.5", "--retrain_per_cycle", "1,2", "--c_sparsity", "0.8",
                    "--calibration_runs", "1", "--own_methods", "str", "--train_subset", "256", "--test_subset", "500",
                    "--data_dir", fashion_dir, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "methods.json")) as handle:
        results = json.load(handle)["results"]
    by_method = {r["method"]: r for r in results}
    from tfimp import models
    total = helpers.prunable_total(models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1)))
    assert set(by_method) == {"dense", "gmp", "imp_slr", "imp_slr_erk", "split50_e1", "split50_e2", "str",
                              "imp_slr_at_str"}
    assert all(r["epochs"] == 3 for r in results if r["group"] in ("a", "b", "own"))  # equal budget
    for r in results:
        if r["method"] in ("gmp", "imp_slr", "imp_slr_erk"):
            assert r["sparsity"] == helpers.exact_fraction(0.9, total), r
    # (b): ERK chose other per-layer sparsities than global, over the same layers.
    assert set(by_method["imp_slr_erk"]["layer_sparsity"]) == set(by_method["imp_slr"]["layer_sparsity"])
    assert by_method["imp_slr_erk"]["layer_sparsity"] != by_method["imp_slr"]["layer_sparsity"]
    # (c): a 4-epoch budget split 2 dense + 2 retraining, as 2 cycles of 1 or 1 cycle of 2.
    assert (by_method["split50_e1"]["cycles"], by_method["split50_e2"]["cycles"]) == (2, 1)
    assert by_method["split50_e1"]["epochs"] == by_method["split50_e2"]["epochs"] == 4
    assert by_method["split50_e1"]["sparsity"] == helpers.exact_fraction(0.8, total)
    # STR: IMP is rerun at the sparsity STR reached.
    assert by_method["imp_slr_at_str"]["sparsity"] == pytest.approx(round(by_method["str"]["sparsity"], 4), abs=1e-3)
    assert by_method["str"]["hyperparameter"] == "str_weight_decay" and by_method["str"]["value"] > 0
    assert "(c) IMP + SLR" in result.stdout and "STR, CS, DST and IMP + SLR" in result.stdout
    assert os.path.getsize(os.path.join(out, "accuracy_vs_sparsity.png")) > 1000


def test_methods_benchmark_rejects_bad_grids(tmp_path, monkeypatch, capsys):
    """In this process (the script's argument checks; a subprocess would only add TensorFlow's start-up)."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bench_methods

    for args, message in ((["--sparsities", "0.9,1.2"], "sparsities must lie in (0, 1)"),
                          (["--methods", "dense,snip", "--seeds", "0", "--train_subset", "64", "--epochs", "4"],
                           "unknown benchmark method 'snip'"),
                          (["--own_values", "dst=0.003,gmp=0.1"], "--own_values: unknown method 'gmp' in 'gmp=0.1'"),
                          (["--own_values", "cs=small"], "--own_values: 'cs=small' is not METHOD=NUMBER")):
        monkeypatch.setattr(sys, "argv", ["bench_methods.py", *args, "--out", str(tmp_path)])
        with pytest.raises(SystemExit) as exit_:
            bench_methods.main_cli()
        assert exit_.value.code != 0 and message in capsys.readouterr().err


def test_methods_benchmark_records_a_refused_run_and_goes_on(tmp_path, monkeypatch, capsys):
    """A run the CLI refuses (here: a criterion that cannot reach the target on the model) is recorded with its
    reason and the grid goes on; methods.json is written after every run. In this process, main.run stubbed."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bench_methods

    def fake_run(config, workdir, overwrite):
        if config.criterion == "uniform_plus":
            raise ValueError("uniform_plus cannot reach sparsity 0.95 on this model")
        written = json.load(open(tmp_path / "methods.json")) if (tmp_path / "methods.json").exists() else None
        calls.append(written)
        return [{"sparsity": 0.95, "test_accuracy": 0.5, "epochs": 4, "cycle": 1}]

    calls = []
    monkeypatch.setattr(bench_methods.main, "run", fake_run)
    monkeypatch.setattr(bench_methods, "_layer_sparsity", lambda workdir, rows: {"fc": 0.95})
    monkeypatch.setattr(sys, "argv", ["bench_methods.py", "--groups", "b", "--criteria", "uniform_plus,erk",
                                      "--sparsities", "0.95", "--seeds", "0", "--epochs", "4", "--out", str(tmp_path)])
    bench_methods.main_cli()
    written = json.load(open(tmp_path / "methods.json"))
    assert [r["method"] for r in written["results"]] == ["imp_slr_erk"]
    assert written["skipped"] == [{"group": "b", "method": "imp_slr_uniform_plus", "target": 0.95, "seed": 0,
                                   "reason": "uniform_plus cannot reach sparsity 0.95 on this model"}]
    assert calls[0]["skipped"] == written["skipped"] and calls[0]["results"] == []  # saved before the next run
    assert "skipped: (b) imp_slr_uniform_plus at 0.95 seed 0" in capsys.readouterr().out


def test_a_given_own_value_skips_calibration_and_imp_follows_each_seeds_sparsity(tmp_path, monkeypatch, capsys):
    """``--own_values``: DST runs with the given alpha on every seed (no calibration run), and IMP + SLR runs per
    seed at the sparsity that seed's DST run reached. In this process, main.run stubbed."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import bench_methods

    reached = {0: 0.9508, 1: 0.5323}  # what the stubbed DST runs end at (seeds part by tens of points)
    calls = []

    def fake_run(config, workdir, overwrite):
        calls.append((config.method, config.seed, config.target_sparsity, config.get("dst_alpha")))
        sparsity = reached[config.seed] if config.method == "dst" else config.target_sparsity
        return [{"sparsity": sparsity, "test_accuracy": 0.5, "epochs": 4, "cycle": 1}]

    monkeypatch.setattr(bench_methods.main, "run", fake_run)
    monkeypatch.setattr(bench_methods, "calibrate", lambda *args: pytest.fail("calibrated a given value"))
    monkeypatch.setattr(bench_methods, "_layer_sparsity", lambda workdir, rows: {"fc": 0.9})
    monkeypatch.setattr(sys, "argv", ["bench_methods.py", "--groups", "own", "--own_methods", "dst",
                                      "--own_values", "dst=0.0031623", "--sparsities", "0.95", "--seeds", "0,1",
                                      "--epochs", "4", "--out", str(tmp_path)])
    bench_methods.main_cli()
    assert [c for c in calls if c[0] == "dst"] == [("dst", 0, 0.95, 0.0031623), ("dst", 1, 0.95, 0.0031623)]
    assert [(c[1], c[2]) for c in calls if c[0] == "imp"] == [(0, 0.9508), (1, 0.5323)]
    written = {(r["method"], r["seed"]): r for r in json.load(open(tmp_path / "methods.json"))["results"]}
    assert written[("imp_slr_at_dst", 1)]["reached"] == 0.5323 and written[("dst", 0)]["value"] == 0.0031623
    assert "dst for 95%: dst_alpha 0.003162 (given)" in capsys.readouterr().out


def test_the_dpf_diagnosis_traces_each_run_epoch_by_epoch(fashion_dir):
    dpf_trace.check_two_epochs_of_512(
        _bench("diagnose_dpf.py", "--data_dir", fashion_dir, "--seeds", "0", "--epochs", "2", "--train_subset", "512"))


def test_core_benchmark_quick():
    result = _bench("bench_core.py", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio" in result.stdout and "peak numpy memory" in result.stdout


def test_fidelity_benchmark_tiny(tmp_path, fashion_dir):
    out = str(tmp_path / "fidelity")
    result = _bench("fidelity_fashion_mnist.py", "--train_subset", "512", "--seeds", "0", "--sparsities", "0.9",
                    "--schedules", "allr", "--data_dir", fashion_dir, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "fidelity.json")) as handle:
        written = json.load(handle)
    summary = {(s["method"], s["target_sparsity"]): s for s in written["summary"]}
    assert set(summary) == {("dense", 0.0), ("imp_allr", 0.9), ("gmp", 0.9)}
    assert summary[("imp_allr", 0.9)]["authors_mean"] == pytest.approx(91.38)  # seed 0 only: its own figure
    runs = {(r["method"], r["target_sparsity"]): r for r in written["runs"]}
    # The difference against the authors' seed-0 figure, from the run's own final row.
    ours = 100.0 * runs[("imp_allr", 0.9)]["rows"][-1]["test_accuracy"]
    assert summary[("imp_allr", 0.9)]["difference"] == pytest.approx(ours - 91.38)
    printed = next(line for line in result.stdout.splitlines() if line.startswith("imp_allr") and "90%" in line)
    assert printed.split()[-1] == f"{ours - 91.38:+.2f}"
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import fidelity_fashion_mnist

    total = helpers.prunable_total(fidelity_fashion_mnist.model_h())
    assert runs[("imp_allr", 0.9)]["sparsity"] == helpers.exact_fraction(0.9, total)
    assert [row["cycle"] for row in runs[("imp_allr", 0.9)]["rows"]] == [1, 2, 3]
    assert runs[("imp_allr", 0.9)]["rows"][0]["test_accuracy_bn_reestimated"] is not None
    assert len(runs[("gmp", 0.9)]["rows"]) == 12  # one row per epoch of its 12-epoch budget
    assert "authors mean" in result.stdout


def test_merge_methods_reads_summaries_and_unfinished_runs(tmp_path):
    import json
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import merge_methods

    finished = tmp_path / "finished"
    finished.mkdir()
    entry = {"group": "a", "method": "gmp", "target": 0.9, "seed": 0, "sparsity": 0.9, "test_accuracy": 0.8,
             "wall_s": 1.0, "epochs": 2, "layer_sparsity": {}}
    (finished / "methods.json").write_text(json.dumps({"results": [entry, {**entry, "group": "str"}]}))
    run = tmp_path / "stopped" / "runs" / "c_split50_e2_0.95_1"
    (run / "cycle_2").mkdir(parents=True)
    rows = [{"cycle": 0, "epochs": 2, "wall_s": 3.0, "sparsity": 0.0, "test_accuracy": 0.7},
            {"cycle": 1, "epochs": 2, "wall_s": 1.0, "sparsity": 0.8, "test_accuracy": 0.6},
            {"cycle": 2, "epochs": 2, "wall_s": 1.0, "sparsity": 0.95, "test_accuracy": 0.65}]
    (run / "results.json").write_text(json.dumps({"rows": rows}))
    (run / "cycle_2" / "report.json").write_text(json.dumps({"layers": [{"name": "fc", "sparsity": 0.97}]}))
    assert merge_methods.load(f"{finished}@a") == [entry]
    assert [r["group"] for r in merge_methods.load(f"{finished}:b98")] == ["b98", "b98"]
    [rebuilt] = merge_methods.load(str(tmp_path / "stopped"))
    assert rebuilt == {"group": "c", "method": "split50_e2", "target": 0.95, "seed": 1, "sparsity": 0.95,
                       "test_accuracy": 0.65, "wall_s": 5.0, "epochs": 6, "layer_sparsity": {"fc": 0.97},
                       "dense_fraction": 0.5, "retrain_epochs": 2, "dense_epochs": 2, "cycles": 2}


def test_callback_cost_benchmark_quick(tmp_path):
    out = str(tmp_path / "cost.json")
    result = _bench("bench_callback.py", "--quick", "--models", "mlp", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio (b)/(a)" in result.stdout
    with open(out) as handle:
        written = json.load(handle)["results"][0]
    assert written["model"] == "mlp"
    assert set(written["step_ms"]) == {"a_plain", "b_imp", "c_imp_spe8", "d_plain_spe8", "e_plain_cosine"}
    assert all(ms > 0 for ms in written["step_ms"].values())
    assert written["ratio_median"]["b_imp/a_plain"] == pytest.approx(
        written["step_ms"]["b_imp"] / written["step_ms"]["a_plain"], rel=1e-6)


def test_recipe_seeds_benchmark_tiny(tmp_path):
    out = str(tmp_path / "recipe")
    result = _bench("recipe_seeds.py", "--seeds", "2", "--datasets", "generated", "--train_examples", "512",
                    "--steps", "4", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "recipe_seeds.json")) as handle:
        runs = json.load(handle)["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("current", 0), ("current", 1), ("before_fc1_bn", 0),
                                                         ("before_fc1_bn", 1)]
    assert all(0.0 <= r["dead_fc1_share"] <= 1.0 and r["final_loss"] > 0 for r in runs)
    assert "runs at chance level (of seeds)" in result.stdout


def test_model_zoo_tiny(tmp_path):
    out = str(tmp_path / "zoo")
    result = _bench("model_zoo.py", "--models", "bidirectional_rnn,normalization_mlp", "--steps", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "model_zoo.json")) as handle:
        rows = {row["model"]: row for row in json.load(handle)}
    for row in rows.values():
        assert row["exact"] and row["zeros_kept"] and row["reload_error"] == 0.0, row
        assert row["pruned"] == int(0.9 * row["prunable"] + 0.5)
    # tfmot refuses Bidirectional; tfimp prunes it
    assert rows["bidirectional_rnn"]["tfmot"] == "refused" and rows["bidirectional_rnn"]["share_pruned"] > 0.85
    assert "| bidirectional_rnn |" in result.stdout


def test_fault_injection_survives_a_kill_and_a_cut_file(tmp_path):
    result = _bench("fault_injection.py", "--kills", "1", "--truncations", "1", "--seed", "3",
                    "--scratch", str(tmp_path / "faults"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["kills_bit_identical"] is True and summary["failures"] == 0
    assert summary["redone"] + summary["refused"] == 1 - result.stdout.count("nothing written yet")
    resumed = json.load(open(tmp_path / "faults" / "killed" / "results.json"))["rows"]
    reference = json.load(open(tmp_path / "faults" / "reference" / "results.json"))["rows"]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in reference]


def test_the_method_overhead_benchmark_times_each_method_against_dense(tmp_path):
    out = str(tmp_path / "overhead")
    result = _bench("method_overhead.py", "--methods", "dense,dnw,gsm", "--epochs", "2", "--steps", "2",
                    "--rounds", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "method_overhead.json")) as handle:
        written = json.load(handle)
    assert [row[0] for row in written["rows"]] == ["dense", "dnw", "gsm"] and written["front_end"] == "tf_keras"
    assert written["ratios"]["dense"] == 1.0 and all(written["step_ms"][m][0] > 0 for m in ("dense", "dnw", "gsm"))
    assert written["ratios"]["dnw"] == pytest.approx(written["step_ms"]["dnw"][0] / written["step_ms"]["dense"][0])
    assert written["reached"]["dnw"] == pytest.approx(0.9, abs=1e-4) and written["reached"]["dense"] == 0.0
    assert f"| dnw | {written['rows'][1][1]} |" in result.stdout
