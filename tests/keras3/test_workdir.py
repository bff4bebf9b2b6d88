"""Runs you can trust on Keras 3: identity and lock, cycle_N/ and load_cycle, exact resume after kill -9."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.core import workdir as workdir_layout

import k3_helpers as h
import lock_holder

HERE = os.path.dirname(os.path.abspath(__file__))


def _imp(**changes):
    fields = dict(target_sparsity=0.8, cycles=2, dense_epochs=1, retrain_epochs=1, learning_rate=0.05, batch_size=32)
    return tfimp.IMP(**{**fields, **changes})


def test_cycles_results_and_load_cycle(tmp_path):
    run = str(tmp_path / "run")
    x, y = h.classification_data(128)
    imp = _imp()
    rows = imp.run(h.small_cnn(), (x, y), test=(x[:32], y[:32]), workdir=run, verbose=0)
    assert workdir_layout.cycles(run) == [0, 1, 2]
    for row in rows:
        directory = workdir_layout.cycle_dir(run, row["cycle"])
        assert sorted(os.listdir(directory)) == ["files.json", "model.json", "model.weights.h5", "report.json",
                                                 "row.json"]
        with open(os.path.join(directory, "report.json")) as handle:  # the model report, as on tf_keras
            assert json.load(handle)["total_nonzero"] == tfimp.report.model_report(imp.model).total_nonzero \
                if row["cycle"] == 2 else True
        with open(os.path.join(directory, "row.json")) as handle:
            assert json.load(handle) == json.loads(json.dumps(row))
        model = tfimp.load_cycle(run, row["cycle"])
        assert tfimp.sparsity(model) == row["sparsity"]
    np.testing.assert_array_equal(tfimp.load_cycle(run, 2).predict(x[:8], verbose=0), imp.model.predict(x[:8], verbose=0))
    with open(os.path.join(run, workdir_layout.RESULTS_JSON)) as handle:
        assert [r["cycle"] for r in json.load(handle)["rows"]] == [0, 1, 2]
    assert not os.path.exists(os.path.join(run, workdir_layout.LOCK))  # released at the end
    with pytest.raises(FileNotFoundError, match=r"finished cycles: \[0, 1, 2\]"):
        tfimp.load_cycle(run, 7)
    again = _imp().run(h.small_cnn(), (x, y), test=(x[:32], y[:32]), workdir=run, verbose=0)
    assert again == rows  # finished: the rows back, nothing trained
    with pytest.raises(tfimp.core.workdir.IdentityMismatch, match="target_sparsity: 0.8"):
        _imp(target_sparsity=0.9).run(h.small_cnn(), (x, y), workdir=run, verbose=0)
    assert not os.path.exists(os.path.join(run, workdir_layout.LOCK))


def test_a_live_lock_is_respected(tmp_path):
    run = str(tmp_path / "run")
    holder = lock_holder.hold(run)
    try:
        x, y = h.classification_data(64)
        with pytest.raises(tfimp.core.workdir.WorkdirInUse, match=f"process {holder.pid}"):
            _imp().run(h.mlp(inputs=192), (x.reshape(64, -1), y), workdir=run, verbose=0)
    finally:
        holder.kill()
        holder.wait()


_RUN = r"""
import json, os, signal, sys
import numpy as np, keras, tfimp
sys.path.insert(0, sys.argv[3])
import k3_helpers as h
x, y = h.classification_data(96, seed=1)

class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (3, 2):
            os.kill(os.getpid(), signal.SIGKILL)

def run(workdir, callbacks=()):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=2, retrain_epochs=2, learning_rate=0.05, batch_size=16)
    rows = imp.run(h.small_cnn(), (x, y), test=(x, y), workdir=workdir, verbose=0, callbacks=list(callbacks))
    model = imp.model
    np.savez(workdir + ".npz", *[keras.ops.convert_to_numpy(v.value) for v in model.variables + model.optimizer.variables])
    print(json.dumps([{k: v for k, v in r.items() if k != "wall_s"} for r in rows]))


if sys.argv[2] == "kill":
    run(sys.argv[1], [Kill()])
else:  # the uninterrupted run, then the killed one resumed, in one fresh process
    run(sys.argv[1] + "_straight")
    run(sys.argv[1])
"""


def _run(workdir, mode):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", _RUN, workdir, mode, HERE], env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_run_killed_with_sigkill_resumes_exactly(tmp_path):
    killed = _run(str(tmp_path / "killed"), "kill")
    assert killed.returncode == -signal.SIGKILL
    assert os.path.exists(tmp_path / "killed" / workdir_layout.LOCK)  # the dead run's lock, taken over below
    both = _run(str(tmp_path / "killed"), "straight_then_resume")
    assert both.returncode == 0, both.stderr[-3000:]
    straight_rows, resumed_rows = (json.loads(line) for line in both.stdout.splitlines()[-2:])
    assert resumed_rows == straight_rows and len(resumed_rows) == 3
    a, b = np.load(tmp_path / "killed_straight.npz"), np.load(tmp_path / "killed.npz")
    assert len(a.files) == len(b.files) > 10
    for name in a.files:  # weights, masks, seed generators, optimizer slots and step: bit for bit
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _dense_run(workdir, epochs=3, callbacks=()):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    x, y = h.classification_data(96, seed=2)
    dense = tfimp.Dense(epochs, learning_rate=0.05, batch_size=16, chance_guard=False)
    rows = dense.run(h.small_cnn(), (x, y), test=(x[:32], y[:32]), workdir=workdir, verbose=0,
                     callbacks=list(callbacks))
    _DENSE_WEIGHTS[workdir] = [keras.ops.convert_to_numpy(v.value) for v in dense.model.weights]
    return rows, [keras.ops.convert_to_numpy(v.value) for v in dense.model.variables + dense.model.optimizer.variables]


_DENSE_WEIGHTS = {}


def test_a_dense_run_checkpoints_resumes_exactly_and_writes_cycle_zero(tmp_path):
    straight_rows, straight = _dense_run(str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        _dense_run(str(tmp_path / "resumed"), callbacks=[h.StopAtEpoch(2)])  # epochs 0 and 1 saved
    assert workdir_layout.cycles(str(tmp_path / "resumed")) == []
    assert not os.path.exists(tmp_path / "resumed" / workdir_layout.LOCK)
    resumed_rows, resumed = _dense_run(str(tmp_path / "resumed"))
    drop_wall = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert drop_wall(resumed_rows) == drop_wall(straight_rows) and resumed_rows[0]["cycle"] == 0
    assert resumed_rows[0]["sparsity"] == 0.0 and resumed_rows[0]["epochs"] == 3
    for a, b in zip(straight, resumed):  # weights, seed generators, optimizer slots and step: bit for bit
        np.testing.assert_array_equal(a, b)
    run = str(tmp_path / "resumed")
    with open(os.path.join(workdir_layout.cycle_dir(run, 0), "row.json")) as handle:
        assert json.load(handle) == json.loads(json.dumps(resumed_rows[0]))
    with open(os.path.join(run, workdir_layout.RESULTS_JSON)) as handle:
        stored = json.load(handle)
    assert stored["rows"] == json.loads(json.dumps(resumed_rows)) and stored["method"] == "dense"
    in_cycle_zero = [keras.ops.convert_to_numpy(v.value) for v in tfimp.load_cycle(run, 0).weights]
    assert len(in_cycle_zero) == len(_DENSE_WEIGHTS[run]) > 5
    for a, b in zip(in_cycle_zero, _DENSE_WEIGHTS[run]):  # cycle_0/ holds the final weights
        np.testing.assert_array_equal(a, b)
    again, _ = _dense_run(run)  # finished: the row back, nothing trained
    assert again == resumed_rows
    with pytest.raises(tfimp.core.workdir.IdentityMismatch, match="epochs"):
        _dense_run(run, epochs=4)

