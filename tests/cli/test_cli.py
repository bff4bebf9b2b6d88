"""The absl/ml_collections CLI end to end on a tiny train_subset."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest

import tfimp

import helpers  # noqa: E402
from tfimp.cli import config as tfimp_config
from tfimp import data, keras, methods, models
from tfimp.cli import main


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "fashion_mnist_imp.py")


def _cli(workdir, *overrides, env_extra=None):
    env = {**os.environ, "TFIMP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "tfimp", f"--config={CONFIG}", f"--workdir={workdir}", *overrides],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )


def _tiny(fashion_dir):
    return ["--config.train_subset=512", "--config.dense_epochs=1", "--config.retrain_epochs=1",
            "--config.cycles=2", "--config.batch_size=64", "--config.verbose=0", f"--config.data_dir={fashion_dir}"]


def test_cli_end_to_end_then_resume_is_a_no_op(tmp_path, fashion_dir):
    workdir = str(tmp_path / "run")
    # 500 test examples: every export is run on the whole test set.
    tiny = [o for o in _tiny(fashion_dir) if not o.startswith("--config.verbose")] + ["--config.test_subset=500"]
    result = _cli(workdir, *tiny, "--config.verbose=1", "--config.export_formats=keras,savedmodel,tflite,tflite_int8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[tfimp] config:" in result.stdout and "target_sparsity: 0.9" in result.stdout
    assert "retraining 1 epoch with slr" in result.stdout and "1 epochs" not in result.stdout
    assert result.stdout.count("theoretical speed-up") == 3  # the model report after each cycle
    assert result.stdout.count("prunable share") == 3 and "prunable weights, " in result.stdout
    # tfimp's own calls leave no warnings behind (export checks, TFLite interpreter).
    assert "compiled metrics" not in result.stderr and "Interpreter is deprecated" not in result.stderr

    with open(os.path.join(workdir, "results.json")) as handle:
        rows = json.load(handle)["rows"]
    assert [r["cycle"] for r in rows] == [0, 1, 2]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    with open(os.path.join(workdir, "results.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 4
    assert os.path.getsize(os.path.join(workdir, "accuracy_vs_sparsity.png")) > 1000
    events = [f for _, _, files in os.walk(os.path.join(workdir, "tensorboard")) for f in files if "tfevents" in f]
    assert events
    stripped = keras.models.load_model(os.path.join(workdir, "model_stripped.keras"))  # plain Keras
    assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, 0.9)
    assert rows[-1]["sparsity"] == tfimp.sparsity(stripped)  # the row holds the exact count, not about 0.9
    # One directory per cycle, listed in the summary, with the model report.
    assert tfimp.workdir.cycles(workdir) == [0, 1, 2] and "cycle_0/, cycle_1/, cycle_2/" in result.stdout
    with open(os.path.join(workdir, "cycle_2", "report.json")) as handle:
        assert json.load(handle)["speedup"] > 1.0
    with open(os.path.join(workdir, "export", "sizes.json")) as handle:
        sizes = json.load(handle)
    assert [f["format"] for f in sizes] == ["keras", "savedmodel", "tflite", "tflite_int8"]
    assert all(f["max_abs_error"] <= f["tolerance"] for f in sizes)
    assert os.path.exists(os.path.join(workdir, "export", "model.tflite"))
    # Each file's test accuracy on the whole test set, through its own runtime, beside the float model's: a float
    # file flips at most one prediction (near-ties); the int8 file moves the accuracy by at most 5 points.
    test_size = min(500, helpers.count_test_examples(fashion_dir))  # test_subset=500 of the fixture's idx files
    for f in sizes:
        assert f["test_examples"] == test_size and f["float_accuracy"] == sizes[0]["float_accuracy"], f
        assert abs(f["test_accuracy"] - f["float_accuracy"]) <= (0.05 if f["format"] == "tflite_int8"
                                                                 else 1 / test_size), f
    assert sizes[-1]["sparsity"] >= rows[-1]["sparsity"]  # every pruned weight an int8 zero of the file

    # Again, quiet: a finished run is not redone, and verbose=0 prints nothing.
    again = _cli(workdir, *tiny, "--config.verbose=0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == ""
    with open(os.path.join(workdir, "results.json")) as handle:
        assert json.load(handle)["rows"] == rows

    with open(os.path.join(workdir, "config.json")) as handle:
        config_before = handle.read()
    other = _cli(workdir, *tiny, "--config.seed=7", "--config.momentum=0.8")
    assert other.returncode == 2 and "--overwrite" in other.stderr
    assert "user.seed: 0 (in the workdir) vs 7 (this run)" in other.stderr
    assert "user.momentum: 0.9 (in the workdir) vs 0.8 (this run)" in other.stderr
    with open(os.path.join(workdir, "config.json")) as handle:
        assert handle.read() == config_before  # the refused run wrote nothing


def test_unknown_config_key_is_named(tmp_path):
    result = _cli(str(tmp_path / "x"), "--config.target_sparstiy=0.5")
    assert result.returncode != 0 and "target_sparstiy" in result.stderr


def test_unknown_method_lists_the_known_ones(tmp_path):
    result = _cli(str(tmp_path / "x"), "--config.method=snip")
    assert result.returncode == 2
    assert ("config.method='snip' is unknown; known methods: ['dense', 'imp', 'bimp', 'oneshot', 'gmp', "
            "'tfmot_gmp', 'dpf', 'str', 'dnw', 'lc', 'gsm', 'cs', 'dst']") in result.stderr


def test_missing_dataset_fails_fast_with_instructions(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _cli(str(tmp_path / "x"), "--config.dataset=cifar10", "--config.model=resnet20",
                  f"--config.data_dir={tmp_path / 'empty'}")
    assert result.returncode == 2
    assert "dataset 'cifar10' is not on disk" in result.stderr and "download_and_prepare" in result.stderr


def _config(**values):
    config = tfimp_config.base()
    config.update(values)
    return config


def test_model_and_dataset_shapes_must_fit(tmp_path, fashion_dir):
    config = _config(dataset="fashion_mnist", model="resnet20", data_dir=fashion_dir, train_subset=64, verbose=0)
    with pytest.raises(ValueError, match=r"model 'resnet20' takes inputs of shape \(32, 32, 3\), but dataset "
                                         r"'fashion_mnist' gives \(28, 28, 1\)"):
        main.run(config, str(tmp_path / "x"))


@pytest.mark.parametrize("method, extra", [
    ("dense", dict(dense_epochs=1)),
    ("oneshot", dict(dense_epochs=1, retrain_epochs=1, target_sparsity=0.8)),
    ("bimp", dict(dense_epochs=1, epochs=3, cycles=2)),
    ("gmp", dict(epochs=2, prune_frequency=2)),
    ("dpf", dict(epochs=2)),
    ("gsm", dict(epochs=2)),
    ("dst", dict(epochs=2, dst_alpha=0.01)),
])
def test_other_methods_run_in_process(tmp_path, fashion_dir, method, extra):
    # No exports: each is checked in a fresh process (tested once, end to end, above).
    config = _config(method=method, data_dir=fashion_dir, train_subset=256, batch_size=64, verbose=0,
                     export_formats="", **extra)
    rows = main.run(config, str(tmp_path / method))
    expected_cycles = {"dense": [0], "oneshot": [0, 1], "bimp": [0, 1, 2], "gmp": [1, 2], "dpf": [1, 2],
                       "gsm": [1, 2], "dst": [1, 2]}[method]
    assert [r["cycle"] for r in rows] == expected_cycles
    if method == "bimp":
        assert sum(r["epochs"] for r in rows) == 3 and rows[-1]["retrain_schedule"] == "allr"
    stripped = keras.models.load_model(str(tmp_path / method / "model_stripped.keras"))
    if method != "dst":  # DST reaches the sparsity its penalty leads to
        assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, rows[-1]["target_sparsity"])
    assert rows[-1]["sparsity"] == tfimp.sparsity(stripped)


def test_str_calibrated_from_the_cli_reaches_its_target_and_a_resume_reuses_the_decay(tmp_path, fashion_dir,
                                                                                     capsys):
    config = _config(method="str", epochs=2, target_sparsity=0.6, str_init=-8.0, calibrate=3,
                     data_dir=fashion_dir, train_subset=256, batch_size=64, verbose=1, export_formats="")
    workdir = str(tmp_path / "str")
    rows = main.run(config, workdir)
    printed = capsys.readouterr().out
    with open(os.path.join(workdir, tfimp.workdir.CALIBRATION)) as handle:
        calibration = json.load(handle)
    runs = re.findall(r"str calibration run \d+: str_weight_decay ([0-9.e+-]+) reaches ([0-9.]+)", printed)
    assert 1 <= len(runs) <= 3 and calibration["max_runs"] == 3 and calibration["target_sparsity"] == 0.6
    best = min(runs, key=lambda run: abs(float(run[1]) - 0.6))
    assert calibration["reached_sparsity"] == pytest.approx(float(best[1]), abs=5e-5)  # printed to 4 digits
    # The run itself used the calibrated decay: it is in the workdir's identity and reaches the same sparsity.
    with open(os.path.join(workdir, tfimp.workdir.IDENTITY)) as handle:
        assert json.load(handle)["str_weight_decay"] == calibration["str_weight_decay"]
    assert rows[-1]["sparsity"] == pytest.approx(calibration["reached_sparsity"], abs=0.02)
    # A rerun finds the finished run with the same decay, without calibrating again.
    again = main.run(config, workdir)
    printed = capsys.readouterr().out
    assert "str calibration run" not in printed and f"from {tfimp.workdir.CALIBRATION}" in printed
    assert [r["sparsity"] for r in again] == [r["sparsity"] for r in rows]


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".py")))
def test_every_shipped_config_is_valid(name):
    import importlib.util

    module_spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config()
    assert set(config.keys()) == set(tfimp_config.base().keys())  # no stray keys
    assert "tfimp --config=configs/" + name in module.__doc__  # the docstring holds the command
    main.check_config(config)
    models.check_fits(config.model, data.spec(config.dataset).input_shape)
    methods.make_runner(config)


def test_optimizer_allr_and_str_keys_reach_the_runners():
    runner = methods.make_runner(_config(optimizer="keras_sgd_decoupled", allr_norm_drop="this_cycle",
                                      recalibrate_bn=False))
    assert runner.optimizer == "keras_sgd_decoupled"
    assert (runner.plan.allr_norm_drop, runner.plan.recalibrate_bn) == ("this_cycle", False)
    assert methods.make_runner(_config()).optimizer == "torch_sgd" and methods.make_runner(_config()).plan.recalibrate_bn
    baseline = methods.make_runner(_config(method="str", epochs=2, str_init=-3.0, str_weight_decay=1e-3))
    assert (baseline.str_init, baseline.str_weight_decay) == (-3.0, 1e-3)
    dpf = methods.make_runner(_config(method="dpf", epochs=4))
    assert (dpf.begin_fraction, dpf.end_fraction) == (0.0, 0.75)  # the method's defaults when unset
    with pytest.raises(ValueError, match=r"config.optimizer='adam' is unknown; known: \['keras_sgd_decoupled', "
                                         r"'torch_sgd'\]"):
        main.check_config(_config(optimizer="adam"))


@pytest.mark.parametrize("key, value, message", [
    ("method", "snip", "config.method='snip' is unknown"),
    ("model", "resnet57", "config.model='resnet57' is unknown"),
    ("dataset", "cifar11", "unknown dataset 'cifar11'"),
    ("optimizer", "adam", "config.optimizer='adam' is unknown"),
    ("criterion", "random", "unknown criterion 'random'"),
    ("retrain_schedule", "step", "unknown retraining schedule 'step'"),
    ("dense_schedule", "poly", "config.dense_schedule='poly' is unknown"),
    ("optimizer_state", "reset", "config.optimizer_state='reset' is unknown"),
    ("allr_norm_drop", "global", "config.allr_norm_drop='global' is unknown"),
    ("augmentation", "mixup", "config.augmentation='mixup' is unknown"),
    ("verbose", 3, "config.verbose=3 is unknown"),
    ("export_formats", "keras,tflit", "config.export_formats has unknown format(s) ['tflit']"),
    ("target_sparsity", 1.0, "config.target_sparsity=1.0 is out of range; allowed: 0 < value < 1"),
    ("learning_rate", 0.0, "config.learning_rate=0.0 is out of range"),
    ("momentum", 1.0, "config.momentum=1.0 is out of range"),
    ("weight_decay", -1e-4, "config.weight_decay=-0.0001 is out of range"),
    ("validation_fraction", 1.0, "config.validation_fraction=1.0 is out of range"),
    ("train_subset", -5, "config.train_subset=-5 is out of range"),
    ("test_subset", -1, "config.test_subset=-1 is out of range"),
    ("batch_size", 0, "config.batch_size must be >= 1"),
    ("cycles", 0, "config.cycles must be >= 1"),
    ("prune_frequency", -1, "config.prune_frequency=-1 is out of range"),
    ("strategy", "mirorred", "config.strategy='mirorred' is unknown; known: ['default', 'mirrored', 'multi_worker'"),
    ("steps_per_execution", 0, "config.steps_per_execution must be >= 1"),
    ("cs_lambda", -1.0, "config.cs_lambda=-1.0 is out of range; allowed: >= 0"),
    ("cs_beta_final", 0.5, "config.cs_beta_final=0.5 is out of range; allowed: >= 1"),
    ("dst_alpha", -1e-3, "config.dst_alpha=-0.001 is out of range"),
    ("calibrate", 4, "config.calibrate=4 applies to ['cs', 'dst', 'str'], which reach their own sparsity; method 'imp'"),
    ("structure", "2:5:4", "config.structure='2:5:4': unknown structure '2:5:4'; the forms are 'unstructured', "
                           "'N:M' (e.g. '2:4', 1 <= N < M), 'block:RxC' (e.g. 'block:1x4') or 'channels'"),
    ("structure", "block:4", "config.structure='block:4': structure 'block:4': a block structure is written "
                             "'block:RxC'"),
    ("structure", "2:4", "config.structure='2:4' with config.target_sparsity=0.9: structure '2:4' prunes to "
                         "sparsity 1 - 2/4 = 0.5; give target_sparsity=0.5, not 0.9"),
])
def test_every_kind_of_config_key_is_checked_before_data_is_read(tmp_path, key, value, message):
    # The data directory does not exist: a check that came after loading would report missing data instead.
    config = _config(data_dir=str(tmp_path / "no_data"), verbose=0)
    config[key] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        main.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")  # nothing written either


def test_the_structure_key_reaches_the_runners_and_a_method_without_selection_refuses_it():
    imp = methods.make_runner(_config(structure="2:4", target_sparsity=0.5))
    assert imp.plan.structure == "2:4"
    bimp = methods.make_runner(_config(method="bimp", epochs=5, dense_epochs=2, structure="block:1x4"))
    assert bimp.plan.structure == "block:1x4"
    assert methods.make_runner(_config(method="gmp", epochs=2, structure="block:2x2")).structure == "block:2x2"
    assert methods.make_runner(_config()).plan.structure == "unstructured"
    assert "structure" not in tfimp_config.identity(_config())  # the identity of runs from before the key
    assert tfimp_config.identity(_config(structure="2:4"))["structure"] == "2:4"
    with pytest.raises(ValueError, match=re.escape("config.structure='block:1x4' cannot apply to method 'str', which "
                                                   "does not prune with tfimp's selection; methods that take a "
                                                   "structure: ['imp', 'bimp', 'oneshot', 'gmp', 'dpf', 'dnw', 'lc', "
                                                   "'gsm']")):
        main.check_config(_config(method="str", epochs=2, structure="block:1x4"))
    with pytest.raises(ValueError, match="config.structure='2:4' cannot apply to method 'dense'"):
        main.check_config(_config(method="dense", structure="2:4", target_sparsity=0.5))


def test_a_cli_method_is_one_registry_entry(tmp_path, fashion_dir):
    methods.RUNNERS.register("dense_short", lambda config, settings: tfimp.Dense(1, **settings))
    try:
        config = _config(method="dense_short", data_dir=fashion_dir, train_subset=128, batch_size=64, verbose=0,
                         export_formats="")
        rows = main.run(config, str(tmp_path / "run"))
        assert [r["cycle"] for r in rows] == [0] and rows[0]["epochs"] == 1
        with pytest.raises(ValueError, match=r"known methods: \['dense', .*'gsm', 'cs', 'dst', 'dense_short'\]"):
            main.check_config(_config(method="nope"))
    finally:
        methods.RUNNERS.unregister("dense_short")


def _capturing_runner(monkeypatch):
    """Makes main.run's runner available to the test (it returns only rows)."""
    made = []
    original = methods.make_runner
    monkeypatch.setattr(methods, "make_runner", lambda *args: made.append(original(*args)) or made[-1])
    return made


_MIRRORED_CLI = """
import json, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")  # two replicas on one CPU, before TensorFlow starts
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import tfimp
from tfimp.cli import config as tfimp_config, main
from tfimp import methods
made = []
original = methods.make_runner
methods.make_runner = lambda *args: made.append(original(*args)) or made[-1]
config = tfimp_config.base()
config.update(json.loads(sys.argv[1]))
rows = main.run(config, sys.argv[2])
model = made[0].model
masks = [m for _, w in tfimp.wrapping.wrappers(model) for _, m, _ in w.pruning_vars]
print(json.dumps({"strategy": type(model.distribute_strategy).__name__,
                  "replicas": model.distribute_strategy.num_replicas_in_sync,
                  "masks": sorted({type(m).__name__ for m in masks}),
                  "iterations": type(model.optimizer.iterations).__name__,
                  "steps_per_execution": int(model._steps_per_execution.numpy()),
                  "sparsity": rows[-1]["sparsity"], "exact": tfimp.sparsity(model) == round(0.8 * sum(
                      int(m.shape.num_elements()) for m in masks)) / sum(int(m.shape.num_elements()) for m in masks)}))
"""


def test_the_mirrored_strategy_holds_the_model_optimizer_and_masks(tmp_path, fashion_dir):
    # In its own process: TensorFlow's collectives of one MirroredStrategy's finished run can collide with those
    # of another strategy later in the same process (instance keys restart per strategy), which other tests make.
    settings = dict(method="oneshot", strategy="mirrored", dense_epochs=1, retrain_epochs=1, target_sparsity=0.8,
                    data_dir=fashion_dir, train_subset=256, batch_size=64, verbose=0, export_formats="",
                    steps_per_execution=2)
    result = subprocess.run([sys.executable, "-c", _MIRRORED_CLI, json.dumps(settings), str(tmp_path / "run")],
                            capture_output=True, text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "TFIMP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert (facts["strategy"], facts["replicas"]) == ("MirroredStrategy", 2)
    assert facts["masks"] == ["MirroredVariable"] and facts["iterations"] == "MirroredVariable"
    assert facts["steps_per_execution"] == 2 and facts["exact"] and facts["sparsity"] == pytest.approx(0.8, abs=1e-4)


def test_mixed_precision_from_the_cli_and_the_policy_is_restored(tmp_path, fashion_dir, monkeypatch):
    made = _capturing_runner(monkeypatch)
    config = _config(method="oneshot", mixed_precision=True, dense_epochs=1, retrain_epochs=1, target_sparsity=0.8,
                     data_dir=fashion_dir, train_subset=256, batch_size=64, verbose=0, export_formats="")
    rows = main.run(config, str(tmp_path / "run"))
    model = made[0].model
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.layers[1].compute_dtype == "float16" and model.output.dtype == tfimp.tf.float32
    assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert rows[-1]["sparsity"] == helpers.exact_sparsity(model, 0.8)


def test_a_missing_tpu_is_named(tmp_path, monkeypatch):
    def no_tpu(tpu=None, **kwargs):
        raise ValueError(f"Could not lookup TPU metadata for {tpu}")

    monkeypatch.setattr(tfimp.tf.distribute.cluster_resolver.TPUClusterResolver, "connect", staticmethod(no_tpu))
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match=r"no TPU reachable at tpu='grpc://10.0.0.2:8470'"):
        main.run(_config(strategy="tpu", tpu="grpc://10.0.0.2:8470", verbose=0), str(tmp_path / "run"))
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    with pytest.raises(ValueError, match=r"no TPU reachable at tpu='my-tpu'"):
        main.run(_config(strategy="tpu", verbose=0), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_multi_worker_without_tf_config_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy 'multi_worker' needs TF_CONFIG"):
        main.run(_config(strategy="multi_worker", verbose=0), str(tmp_path / "run"))


def test_refusals_before_any_work_touch_nothing_of_the_users(tmp_path, fashion_dir):
    folder = tmp_path / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "thesis.txt").write_text("chapter 1")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    result = _cli(str(folder), *_tiny(fashion_dir), "--overwrite")  # the command line: exit 2, one line
    assert result.returncode == 2, result.stderr[-2000:]
    assert "holds no tfimp run" in result.stderr and "nothing in it was touched" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(folder)) == ["data.csv", "notes"]
    assert (folder / "notes" / "thesis.txt").read_text() == "chapter 1"
    tiny = dict(data_dir=fashion_dir, train_subset=256, batch_size=64, dense_epochs=1, retrain_epochs=1, cycles=2,
                verbose=0, export_formats="")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        main.run(_config(**tiny), str(a_file))
    assert a_file.read_text() == "x"
    with pytest.raises(data.DataUnavailableError, match=r"data_dir .*nowhere.* does not exist"):
        main.run(_config(**{**tiny, "data_dir": str(tmp_path / "nowhere")}), str(tmp_path / "run_nowhere"))
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"min_kept_per_layer=100000000.0 keeps .* not target_sparsity=0.9"):
        main.run(_config(**tiny, min_kept_per_layer=1e8), str(run))
    assert not (run / "cycle_0").exists() and not (run / "checkpoint").exists()  # refused before the dense phase
    rows = main.run(_config(**tiny, min_kept_per_layer=1), str(run))  # the corrected rerun needs no --overwrite
    assert [r["cycle"] for r in rows] == [0, 1, 2]
    assert [r["cycle"] for r in json.load(open(run / "results.json"))["rows"]] == [0, 1, 2]


def test_a_channels_run_also_exports_its_slimmed_model_with_its_size(tmp_path, fashion_dir):
    config = _config(data_dir=fashion_dir, train_subset=256, test_subset=64, batch_size=64, dense_epochs=1, cycles=1,
                     retrain_epochs=1, verbose=0, structure="channels", target_sparsity=0.5, export_formats="keras",
                     criterion="uniform")
    workdir = str(tmp_path / "run")
    main.run(config, workdir)
    with open(os.path.join(workdir, "export", "sizes.json")) as handle:
        sizes = {row["format"]: row for row in json.load(handle)}
    assert list(sizes) == ["keras", "keras_slim"]
    slim_row = sizes["keras_slim"]
    assert slim_row["path"] == os.path.join(workdir, "export", "model_slim.keras")
    assert slim_row["max_abs_error"] <= slim_row["tolerance"]
    slimmed = keras.models.load_model(slim_row["path"])
    stripped = keras.models.load_model(os.path.join(workdir, "model_stripped.keras"))
    assert slim_row["parameters"] == slimmed.count_params() < stripped.count_params() == slim_row["dense_parameters"]
    assert slim_row["bytes"] == os.path.getsize(slim_row["path"]) < sizes["keras"]["bytes"]
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(slimmed.predict_on_batch(x), stripped.predict_on_batch(x), rtol=1e-4, atol=1e-4)
