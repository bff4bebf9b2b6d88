"""The workdir: identity, clean overwrite, lock, one directory per cycle, load_cycle, TensorBoard per cycle."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest

import tfimp
from tfimp import keras, tf, workdir

import helpers
import lock_holder

BATCH = 16


def _imp(**fields):
    settings = {k: fields.pop(k) for k in ("seed", "momentum", "weight_decay") if k in fields}
    return tfimp.IMP(batch_size=BATCH, learning_rate=0.05, **settings, **fields)


def _listing(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, _, files in os.walk(directory) for name in files)


def _snapshot(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in _listing(directory)}


def test_a_different_run_is_refused_naming_each_difference_before_anything_is_written(tmp_path):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(32)
    _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(helpers.small_cnn(), (x, y),
                                                                               workdir=run, verbose=0)
    before = _snapshot(run)
    other = _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1, seed=3, momentum=0.8)
    with pytest.raises(workdir.IdentityMismatch) as caught:
        other.run(helpers.small_cnn(), (x, y), workdir=run, verbose=0)
    message = str(caught.value)
    assert "seed: 0 (in the workdir) vs 3 (this run)" in message
    assert "momentum: 0.9 (in the workdir) vs 0.8 (this run)" in message
    assert "plan" not in message and "overwrite=True" in message
    assert _snapshot(run) == before  # not a byte changed, no lock left behind

    stored = json.loads(before["identity.json"])
    assert stored["seed"] == 0 and stored["plan"]["target_sparsity"] == 0.5


def test_overwrite_removes_every_file_of_the_previous_run_and_only_those(tmp_path, capsys):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(32)
    _imp(target_sparsity=0.8, cycles=3, dense_epochs=1, retrain_epochs=1).run(helpers.small_cnn(), (x, y),
                                                                               workdir=run, verbose=0)
    assert workdir.cycles(run) == [0, 1, 2, 3]
    with open(os.path.join(run, "notes.txt"), "w") as handle:  # the user's: it stays
        handle.write("old")
    rows = _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(
        helpers.small_cnn(), (x, y), workdir=run, overwrite=True, verbose=1)
    out = capsys.readouterr().out
    assert "overwrite: removed the previous run's" in out and "kept 1 that tfimp did not write (notes.txt)" in out
    assert workdir.cycles(run) == [0, 1]
    assert not any(name.startswith(("cycle_2", "cycle_3")) for name in _listing(run))
    with open(os.path.join(run, "notes.txt")) as handle:
        assert handle.read() == "old"
    with open(os.path.join(run, "results.json")) as handle:
        assert [r["cycle"] for r in json.load(handle)["rows"]] == [0, 1] == [r["cycle"] for r in rows]


def test_overwrite_of_the_same_run_trains_again(tmp_path):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(32)
    fields = dict(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    _imp(**fields).run(helpers.small_cnn(), (x, y), workdir=run, verbose=0)

    class Count(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1

    _imp(**fields).run(helpers.small_cnn(), (x, y), workdir=run, verbose=0, callbacks=[Count()])
    assert Count.batches == 0  # finished: not redone
    _imp(**fields).run(helpers.small_cnn(), (x, y), workdir=run, overwrite=True, verbose=0, callbacks=[Count()])
    assert Count.batches == 2 * 2


def test_a_workdir_held_by_a_live_process_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(32)
    holder = lock_holder.hold(run)
    try:
        with pytest.raises(workdir.WorkdirInUse, match=rf"in use by process {holder.pid} on host"):
            _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(
                helpers.small_cnn(), (x, y), workdir=run, verbose=0)
        assert os.listdir(run) == [workdir.LOCK]
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now (SIGKILL left its lock file): the kernel released its lock, the file is stale.
    rows = _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(
        helpers.small_cnn(), (x, y), workdir=run, verbose=1)
    assert f"taking over the stale lock of process {holder.pid}" in capsys.readouterr().out
    assert [r["cycle"] for r in rows] == [0, 1]
    assert not os.path.exists(os.path.join(run, workdir.LOCK))  # released at the end


def test_a_lock_from_another_host_is_respected_whatever_its_process_id(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(run)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(finished.stdout)  # no such process here; on the other host it may well live
    with open(os.path.join(run, workdir.LOCK), "w") as handle:
        json.dump({"host": "another-host.example", "pid": gone, "started": "then"}, handle)
    x, y = helpers.random_data(16)
    in_use = rf"process {gone} on host 'another-host\.example'.*if that run is dead, delete"
    with pytest.raises(workdir.WorkdirInUse, match=in_use):
        _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(
            helpers.small_cnn(), (x, y), workdir=run, verbose=0)
    with open(os.path.join(run, workdir.LOCK)) as handle:
        assert json.load(handle)["host"] == "another-host.example"  # left as it was
    assert os.listdir(run) == [workdir.LOCK]


def test_every_workdir_name_is_defined_once_in_the_workdir_module():
    names = {value for key, value in vars(workdir).items() if key.isupper() and isinstance(value, str)}
    names = {name for name in names if "." in name or os.sep in name}  # file names (bare words are module names too)
    assert {"identity.json", "results.json", "run.lock", "model_stripped.keras", "row.json"} <= names
    package = os.path.dirname(tfimp.__file__)
    found, read = [], 0
    for folder, _, files in os.walk(package):  # the core and both front ends
        for module in sorted(files):
            relative = os.path.relpath(os.path.join(folder, module), package)
            if not module.endswith(".py") or relative == os.path.join("core", "workdir.py"):
                continue
            with open(os.path.join(folder, module)) as handle:
                source = handle.read()
            read += 1
            found += [f"{relative}: {name!r}" for name in names if re.search(rf"[\"']{re.escape(name)}[\"']", source)]
    assert found == [] and read > 40


def test_each_cycle_is_a_directory_and_load_cycle_gives_the_model_of_that_cycle(tmp_path):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(48)
    imp = _imp(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1)
    rows = imp.run(helpers.small_cnn(), (x, y), test=(x, y), workdir=run, verbose=0)
    assert workdir.cycles(run) == [0, 1, 2]
    for row in rows:
        directory = workdir.cycle_dir(run, row["cycle"])
        assert sorted(os.listdir(directory)) == ["files.json", "model.json", "report.json", "row.json", "weights.h5"]
        with open(os.path.join(directory, "row.json")) as handle:
            assert json.load(handle) == json.loads(json.dumps(row))
        with open(os.path.join(directory, "report.json")) as handle:
            report = json.load(handle)
        loaded = tfimp.load_cycle(run, row["cycle"])
        total = sum(k.size for k in tfimp.wrapping.prunable_kernels(loaded))
        assert tfimp.sparsity(loaded) == row["sparsity"]
        assert sum(layer["parameters"] - layer["nonzero"] for layer in report["layers"]) == round(
            row["sparsity"] * total)
    final = tfimp.load_cycle(run, 2)
    np.testing.assert_array_equal(final.predict(x, verbose=0), imp.model.predict(x, verbose=0))
    # Into a model object (the way for subclassed models): the same weights and masks.
    into = tfimp.load_cycle(run, 2, model=helpers.small_cnn(name="other"))
    np.testing.assert_array_equal(into.predict(x, verbose=0), imp.model.predict(x, verbose=0))
    with pytest.raises(FileNotFoundError, match=r"no finished cycle 5; finished cycles: \[0, 1, 2\]"):
        tfimp.load_cycle(run, 5)


def _scalars(directory):
    values = {}
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def test_per_cycle_tensorboard_scalars_are_written(tmp_path):
    run = str(tmp_path / "run")
    x, y = helpers.random_data(48)
    board = keras.callbacks.TensorBoard(os.path.join(run, "tensorboard"), update_freq=100)
    rows = _imp(target_sparsity=0.8, cycles=2, dense_epochs=1, retrain_epochs=1).run(
        helpers.small_cnn(), (x, y), test=(x, y), workdir=run, verbose=0, callbacks=[board],
        cycle_end_hooks=[tfimp.report.CycleReporter(run, verbose=0)])
    scalars = _scalars(os.path.join(run, "tensorboard", "cycles"))
    assert scalars["cycle/sparsity"] == pytest.approx({r["cycle"]: r["sparsity"] for r in rows})
    assert scalars["cycle/accuracy"] == pytest.approx({r["cycle"]: r["test_accuracy"] for r in rows})
    assert scalars["cycle/learning_rate"] == pytest.approx({r["cycle"]: r["initial_lr"] for r in rows})
    for cycle in (0, 1, 2):  # the speed-up and every layer's sparsity are the cycle's saved report's
        with open(os.path.join(run, f"cycle_{cycle}", "report.json")) as handle:
            report = json.load(handle)
        assert scalars["cycle/theoretical_speedup"][cycle] == pytest.approx(report["speedup"])
        layers = {layer["name"]: layer["sparsity"] for layer in report["layers"]}
        assert {tag[len("layer_sparsity/"):] for tag in scalars if tag.startswith("layer_sparsity/")} == set(layers)
        assert {name: scalars[f"layer_sparsity/{name}"][cycle] for name in layers} == pytest.approx(layers)
    assert scalars["cycle/theoretical_speedup"][2] > scalars["cycle/theoretical_speedup"][0] == pytest.approx(1.0)
