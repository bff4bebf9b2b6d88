"""The CLI with --config.keras=3: every file it writes read back, exact sparsity, resume, refusals, models by name."""

import json
import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.cli import config as tfimp_config
from tfimp.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import idx_files  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "fashion_mnist_imp.py")
#: A run small enough for CI: 256 examples, batch 64, one dense epoch, two cycles of one epoch.
SMALL = dict(keras=3, train_subset=256, test_subset=64, batch_size=64, dense_epochs=1, cycles=2, retrain_epochs=1,
             validation_fraction=0.25, chance_guard=False, verbose=0, export_formats="")


def _config(data_dir, **changes):
    config = tfimp_config.base()
    config.update(dict(SMALL, data_dir=str(data_dir), learning_rate=0.02, **changes))
    return config


def _prunable_total(model):
    return sum(int(np.prod(kernel.weight.shape)) for kernel in tfimp.keras3.masks.prunable_kernels(model))


def test_main_run_on_keras3_writes_every_output_and_keeps_the_process_keras3(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    workdir = str(tmp_path / "run")
    rows = main.run(_config(tmp_path / "idx"), workdir)
    assert "tf_keras" not in sys.modules and not os.environ.get("TF_USE_LEGACY_KERAS")
    assert [row["cycle"] for row in rows] == [0, 1, 2]
    stored = json.load(open(os.path.join(workdir, "results.json")))
    assert [row["sparsity"] for row in stored["rows"]] == [row["sparsity"] for row in rows]
    assert json.load(open(os.path.join(workdir, "config.json")))["keras"] == 3
    assert json.load(open(os.path.join(workdir, "identity.json")))["user"]["keras"] == 3
    with open(os.path.join(workdir, "accuracy_vs_sparsity.png"), "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    # The stripped model holds exactly the pruned count as zeros in its prunable kernels.
    stripped = keras.saving.load_model(os.path.join(workdir, "model_stripped.keras"))
    covered = tfimp.keras3.masks.covered_weights(stripped)
    total = sum(int(np.prod(weight.shape)) for _, weight in covered)
    zeros = sum(int(np.sum(keras.ops.convert_to_numpy(weight) == 0)) for _, weight in covered)
    assert total == _prunable_total(tfimp.load_cycle(workdir, 2)) and zeros == math.floor(0.9 * total + 0.5)
    assert rows[-1]["sparsity"] == zeros / total
    cycle_two = tfimp.load_cycle(workdir, 2)
    assert tfimp.sparsity(cycle_two) == rows[-1]["sparsity"]


def test_the_console_command_runs_keras3_and_resumes_as_a_no_op(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    workdir = str(tmp_path / "run")
    overrides = [f"--config.{key}={value}" for key, value in SMALL.items() if key not in ("verbose",)]
    command = [sys.executable, "-m", "tfimp", f"--config={CONFIG}", f"--workdir={workdir}",
               f"--config.data_dir={tmp_path / 'idx'}", *overrides, "--config.verbose=1",
               "--config.cycles=1"]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"backend {keras.backend.backend()}" in first.stdout
    assert "pruned to 90.0000% (global)" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds this finished run" in again.stdout and "Epoch 1/" not in again.stdout
    assert json.load(open(os.path.join(workdir, "results.json")))["rows"][-1]["sparsity"] == pytest.approx(0.9, abs=1e-5)


def test_dense_through_the_cli_on_keras3_writes_its_row_and_a_plain_model(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    workdir = str(tmp_path / "run")
    rows = main.run(_config(tmp_path / "idx", method="dense", dense_epochs=2), workdir)
    assert [(row["cycle"], row["sparsity"], row["epochs"], row["retrain_schedule"]) for row in rows] == [
        (0, 0.0, 2, "dense")]
    stored = json.load(open(os.path.join(workdir, "results.json")))
    assert stored["method"] == "dense" and stored["rows"][0]["test_accuracy"] == rows[0]["test_accuracy"]
    assert json.load(open(os.path.join(workdir, "cycle_0", "row.json")))["train_loss"] == rows[0]["train_loss"]
    stripped = keras.saving.load_model(os.path.join(workdir, "model_stripped.keras"))
    x = np.zeros((2, 28, 28, 1), "float32")
    np.testing.assert_allclose(stripped.predict(x, verbose=0), tfimp.load_cycle(workdir, 0).predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    assert main.run(_config(tmp_path / "idx", method="dense", dense_epochs=2), workdir) == rows  # finished: a no-op


@pytest.mark.parametrize("method", ["gmp", "lc"])
def test_a_during_training_method_through_the_cli_on_keras3_prunes_exactly(tmp_path, method):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    workdir = str(tmp_path / "run")
    rows = main.run(_config(tmp_path / "idx", method=method, epochs=3, target_sparsity=0.75), workdir)
    assert [(row["cycle"], row["retrain_schedule"], row["criterion"]) for row in rows] == [
        (1, method, "global"), (2, method, "global"), (3, method, "global")]
    stripped = keras.saving.load_model(os.path.join(workdir, "model_stripped.keras"))
    total = sum(int(np.size(v)) for v in (keras.ops.convert_to_numpy(w) for w in stripped.trainable_weights)
                if np.ndim(v) > 1)  # the kernels: what tfimp prunes in this model
    zeros = sum(int(np.size(v) - np.count_nonzero(v)) for v in
                (keras.ops.convert_to_numpy(w) for w in stripped.trainable_weights) if np.ndim(v) > 1)
    assert zeros == tfimp.criteria.round_count(0.75, total) and rows[-1]["sparsity"] == zeros / total
    stored = json.load(open(os.path.join(workdir, "results.json")))
    assert stored["method"] == method and stored["rows"] == json.loads(json.dumps(rows))
    assert json.load(open(os.path.join(workdir, "cycle_3", "row.json")))["test_accuracy"] == rows[-1]["test_accuracy"]


def test_cs_calibrated_through_the_keras3_cli_and_a_resume_reuses_its_penalty(tmp_path, capsys):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    config = _config(tmp_path / "idx", method="cs", epochs=2, target_sparsity=0.6, calibrate=2,
                     verbose=1, export_formats="")
    workdir = str(tmp_path / "cs")
    rows = main.run(config, workdir)
    printed = capsys.readouterr().out
    calibration = json.load(open(os.path.join(workdir, "calibration.json")))
    runs = [(float(d), float(r)) for d, r in
            re.findall(r"cs calibration run \d+: cs_lambda ([0-9.e+-]+) reaches ([0-9.]+)", printed)]
    assert 1 <= len(runs) <= 2 and calibration["max_runs"] == 2 and calibration["target_sparsity"] == 0.6
    # The search is recorded run by run, as printed.
    recorded = [(r["cs_lambda"], r["reached_sparsity"]) for r in calibration["runs"]]
    assert len(recorded) == len(runs)
    for (value, reached), (printed_value, printed_reached) in zip(recorded, runs):
        assert value == pytest.approx(printed_value, rel=1e-3) and reached == pytest.approx(printed_reached, abs=5e-5)
    best = min(runs, key=lambda run: abs(run[1] - 0.6))
    assert calibration["reached_sparsity"] == pytest.approx(best[1], abs=5e-5)  # printed to 4 digits
    # The run used the calibrated penalty: the workdir's identity holds it, and the run reached what its search run did.
    assert json.load(open(os.path.join(workdir, "identity.json")))["cs_lambda"] == calibration["cs_lambda"]
    assert rows[-1]["retrain_schedule"] == "cs" and rows[-1]["sparsity"] == pytest.approx(best[1], abs=1e-4)
    # A rerun finds the finished run with the same penalty, without calibrating again.
    again = main.run(config, workdir)
    printed = capsys.readouterr().out
    assert "cs calibration run" not in printed and "from calibration.json" in printed
    assert [r["sparsity"] for r in again] == [r["sparsity"] for r in rows]
    # With overwrite the finished run goes first; the calibration is found again, written, and survives the run.
    fresh = main.run(config, workdir, overwrite=True)
    assert "cs calibration run 1" in capsys.readouterr().out
    assert json.load(open(os.path.join(workdir, "calibration.json"))) == calibration
    assert [r["sparsity"] for r in fresh] == [r["sparsity"] for r in rows]


@pytest.mark.parametrize("change, message", [
    (dict(strategy="tpu"), r"known: \['default', 'data_parallel', 'mirrored'\]"),
    (dict(keras=4), r"config.keras=4 is unknown; known: \[2, 3\]"),
    (dict(model="kcv_resnet18_v2"), "config.model='kcv_resnet18_v2' is unknown"),
])
def test_what_keras3_cannot_run_is_refused_before_any_work(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        main.run(_config(tmp_path / "idx", **change), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_each_strategy_is_refused_on_a_backend_it_does_not_run_on(tmp_path):
    wrong, runs_on = ("data_parallel", "on JAX") if keras.backend.backend() == "tensorflow" else (
        "mirrored", "TensorFlow backend")
    with pytest.raises(ValueError, match=f"config.strategy='{wrong}' .*{runs_on}"):
        main.run(_config(tmp_path / "idx", strategy=wrong), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_keras2_is_refused_in_a_keras3_process(tmp_path):
    with pytest.raises(ValueError, match="already uses Keras 3"):
        main.run(_config(tmp_path / "idx", keras=2), str(tmp_path / "run"))
    assert "tf_keras" not in sys.modules


def _tf_keras_architectures():
    """Each built-in model's parameter count and weighted layer names, as the tf_keras front end builds them."""
    script = ("import json, tfimp\n"
              "from tfimp import models\n"
              "out = {}\n"
              "for name in ('resnet20', 'vgg16_bn', 'small_cnn'):\n"
              "    m = models.build(name, num_classes=10, input_shape=models.DESIGNED_FOR[name])\n"
              "    out[name] = [m.count_params(), [l.name for l in m.layers if l.weights]]\n"
              "print(json.dumps(out))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TFIMP_TEST_KERAS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keras3_builds_the_same_models_as_tf_keras():
    expected = _tf_keras_architectures()
    for name, (count, names) in expected.items():
        model = tfimp.models.build(name, num_classes=10, input_shape=tfimp.models.DESIGNED_FOR[name])
        assert model.count_params() == count, name
        assert [layer.name for layer in model.layers if layer.weights] == names, name
    norms = [layer for layer in tfimp.models.build("resnet20", num_classes=10, input_shape=(32, 32, 3)).layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 and layer.epsilon == 1e-5 for layer in norms)
    model = tfimp.wrap(tfimp.models.build("resnet20", num_classes=10, input_shape=(32, 32, 3)), verbose=0)
    tfimp.prune(model, 0.9)
    assert tfimp.sparsity(model) == math.floor(0.9 * _prunable_total(model) + 0.5) / _prunable_total(model)
    with pytest.raises(ValueError, match="unknown model 'resnet57'"):
        tfimp.models.build("resnet57", num_classes=10, input_shape=(32, 32, 3))


def _user_folder(root):
    folder = root / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "thesis.txt").write_text("chapter 1")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    return folder


def test_refusals_before_any_work_on_keras3_touch_nothing_of_the_users(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    folder = _user_folder(tmp_path)
    with pytest.raises(tfimp.core.workdir.NotARun, match="holds no tfimp run.*nothing in it was touched"):
        main.run(_config(tmp_path / "idx"), str(folder), overwrite=True)
    assert sorted(os.listdir(folder)) == ["data.csv", "notes"]
    assert (folder / "notes" / "thesis.txt").read_text() == "chapter 1"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        main.run(_config(tmp_path / "idx"), str(a_file))
    with pytest.raises(tfimp.core.datasets.DataUnavailableError, match="data_dir .*nowhere.* does not exist"):
        main.run(_config(tmp_path / "nowhere"), str(tmp_path / "run_nowhere"))
    # A guard that cannot reach the target is refused before the dense phase trains; the corrected rerun then
    # takes the workdir, whose recorded identity never trained.
    run = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"min_kept_per_layer=100000000.0 keeps .* not target_sparsity=0.9"):
        main.run(_config(tmp_path / "idx", min_kept_per_layer=1e8), run)
    assert tfimp.core.workdir.cycles(run) == [] and not tfimp.core.workdir.has_progress(run)
    rows = main.run(_config(tmp_path / "idx", min_kept_per_layer=1), run)
    assert [row["cycle"] for row in rows] == [0, 1, 2]


def test_a_channels_run_on_keras3_also_exports_its_slimmed_model_with_its_size(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    workdir = str(tmp_path / "run")
    main.run(_config(tmp_path / "idx", cycles=1, structure="channels:l1", target_sparsity=0.5, criterion="uniform"),
             workdir)
    with open(os.path.join(workdir, "export", "sizes.json")) as handle:
        (row,) = json.load(handle)  # export_formats="": the slimmed model alone
    assert row["format"] == "keras_slim" and row["max_abs_error"] <= row["tolerance"]
    slimmed = keras.saving.load_model(os.path.join(workdir, "export", "model_slim.keras"))
    stripped = keras.saving.load_model(os.path.join(workdir, "model_stripped.keras"))
    assert row["parameters"] == slimmed.count_params() < stripped.count_params() == row["dense_parameters"]
    assert row["bytes"] == os.path.getsize(row["path"])
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(slimmed.predict_on_batch(x), stripped.predict_on_batch(x), rtol=1e-4, atol=1e-4)
