"""MultiWorkerMirroredStrategy with two local CPU worker processes (TF_CONFIG on localhost ports).

Each worker runs tests/multi_worker_job.py and dumps its rows, masks and
weights; the tests compare the two workers, the workdir, and a killed and
resumed job with an uninterrupted one.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_worker_job.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(commands, out_dir, timeout=240, env_extra=None):
    """Runs ``commands[i]`` as worker i of one cluster; returns their exit codes."""
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(len(commands))]}
    processes = []
    for index, command in enumerate(commands):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(os.path.join(out_dir, f"worker_{index}.log"), "w")
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
    return codes


def _launch(runner, workdir, out_dir, stop_worker_1_at=None):
    """Runs the job on both workers; returns (exit codes, [dump of worker 0, dump of worker 1])."""
    outs = [os.path.join(out_dir, f"worker_{index}.npz") for index in range(2)]
    commands = [[sys.executable, JOB, runner, workdir, out] for out in outs]
    if stop_worker_1_at is not None:
        commands[1].append(str(stop_worker_1_at))
    codes = _start_workers(commands, out_dir)
    return codes, [dict(np.load(out)) if os.path.exists(out) else None for out in outs]


def _log(out_dir, index):
    return open(os.path.join(out_dir, f"worker_{index}.log")).read()[-3000:]


def _listing(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, _, files in os.walk(directory) for name in files)


def _rows(value):
    """Rows without their wall-clock seconds (which differ between processes and runs)."""
    rows = json.loads(value) if isinstance(value, str) else json.loads(str(value))
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def _same(first, second):
    differing = [k for k in first if k != "rows" and not np.array_equal(first[k], second[k])]
    return differing


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("imp_two_workers")
    codes, dumps = _launch("imp", str(base / "run"), str(base))
    assert codes == [0, 0], _log(base, 0) + _log(base, 1)
    return base, dumps


def test_two_workers_prune_identically_and_only_the_chief_writes_the_workdir(uninterrupted):
    base, (chief, worker) = uninterrupted
    assert _same(chief, worker) == []  # every mask and weight, bit for bit
    masks = [v for k, v in chief.items() if k.startswith("mask/")]
    total = sum(m.size for m in masks)
    assert sum(int((m == 0).sum()) for m in masks) == round(0.75 * total)  # exact sparsity
    files = _listing(str(base / "run"))
    assert not [f for f in files if f.startswith("workertemp_") or f == "run.lock"], files
    assert {"results.json", "identity.json", "cycle_2/row.json", "cycle_2/weights.h5"} <= set(files)
    with open(base / "run" / "results.json") as handle:
        written = json.load(handle)["rows"]
    assert _rows(json.dumps(written)) == _rows(chief["rows"]) == _rows(worker["rows"])
    assert [row["cycle"] for row in written] == [0, 1, 2]


def test_after_a_worker_is_killed_both_resume_from_the_chiefs_checkpoint(uninterrupted, tmp_path):
    _, (expected, _) = uninterrupted
    run = str(tmp_path / "run")
    codes, _ = _launch("imp", run, str(tmp_path), stop_worker_1_at=3)  # worker 1 dies as epoch 4 of 4 begins
    assert codes[1] == 17 and codes[0] != 0  # the chief's collectives fail once its peer is gone
    assert os.path.isdir(os.path.join(run, "checkpoint")) and not os.path.exists(os.path.join(run, "cycle_2"))
    codes, dumps = _launch("imp", run, str(tmp_path))
    assert codes == [0, 0], _log(tmp_path, 0) + _log(tmp_path, 1)
    for dump in dumps:
        assert _same(expected, dump) == []
        assert _rows(dump["rows"]) == _rows(expected["rows"])
    assert not [f for f in _listing(run) if f.startswith("workertemp_")]


@pytest.mark.parametrize("runner, final_cycle", [("dense", 0), ("gmp", 3)])
def test_the_one_fit_runners_under_two_workers(tmp_path, runner, final_cycle):
    run = str(tmp_path / "run")
    codes, (chief, worker) = _launch(runner, run, str(tmp_path))
    assert codes == [0, 0], _log(tmp_path, 0) + _log(tmp_path, 1)
    assert _same(chief, worker) == []
    files = _listing(run)
    assert not [f for f in files if f.startswith("workertemp_") or f.startswith("backup")], files
    assert f"cycle_{final_cycle}/weights.h5" in files and any(f.startswith("checkpoint/save_") for f in files)
    with open(os.path.join(run, "results.json")) as handle:
        assert _rows(json.dumps(json.load(handle)["rows"])) == _rows(chief["rows"])
    if runner == "gmp":
        masks = [v for k, v in chief.items() if k.startswith("mask/")]
        assert sum(int((m == 0).sum()) for m in masks) == round(0.75 * sum(m.size for m in masks))


def test_the_cli_runs_on_two_workers_and_only_the_chief_writes_outputs(tmp_path):
    import helpers

    # Small generated idx files: with the full 10k-image test set the two workers spend most of the time in a
    # collective per evaluation batch.
    fashion_dir = str(tmp_path / "fashion")
    helpers.make_idx_dataset(fashion_dir, n_train=256, n_test=64)
    run = str(tmp_path / "run")
    command = [sys.executable, "-m", "tfimp", f"--config={os.path.join(REPO, 'configs', 'fashion_mnist_imp.py')}",
               f"--workdir={run}", "--config.strategy=multi_worker", "--config.train_subset=256",
               "--config.dense_epochs=1", "--config.retrain_epochs=1", "--config.cycles=1",
               "--config.batch_size=64", "--config.verbose=0", "--config.export_formats=keras,tflite",
               f"--config.data_dir={fashion_dir}"]
    codes = _start_workers([command, command], str(tmp_path), env_extra={"TFIMP_OFFLINE": "1"})
    assert codes == [0, 0], _log(tmp_path, 0) + _log(tmp_path, 1)
    files = _listing(run)
    assert not [f for f in files if f.startswith("workertemp_") or f == "run.lock"], files
    with open(os.path.join(run, "config.json")) as handle:
        assert json.load(handle)["strategy"] == "multi_worker"
    with open(os.path.join(run, "export", "sizes.json")) as handle:
        assert [entry["format"] for entry in json.load(handle)] == ["keras", "tflite"]
    with open(os.path.join(run, "accuracy_vs_sparsity.png"), "rb") as handle:
        assert handle.read(4) == b"\x89PNG"
    assert any(f.startswith("tensorboard/cycles/") for f in files)
    import tfimp
    stripped = tfimp.keras.models.load_model(os.path.join(run, "model_stripped.keras"))
    assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, 0.9)


@pytest.mark.parametrize("task, cluster, chief", [
    ({"type": "worker", "index": 1}, {"worker": ["a:1", "b:1"]}, False),
    ({"type": "worker", "index": 0}, {"worker": ["a:1", "b:1"]}, True),
    ({"type": "worker", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, False),
    ({"type": "chief", "index": 0}, {"chief": ["c:1"], "worker": ["a:1"]}, True),
    ({"type": "worker", "index": 0}, {"worker": ["a:1"]}, True),  # one task: not a multi-worker job
])
def test_who_writes_the_workdir_from_tf_config(monkeypatch, tmp_path, task, cluster, chief):
    """Callbacks made outside the strategy scope tell the chief from TF_CONFIG, as Keras does."""
    import tfimp

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert tfimp.distribute.is_chief() == chief
    expected = str(tmp_path) if chief else os.path.join(str(tmp_path), f"workertemp_{task['index']}")
    assert tfimp.workdir.write_dir(str(tmp_path)) == expected
    assert tfimp.workdir.acquire(str(tmp_path), verbose=0) == chief  # only the chief takes the lock
    tfimp.workdir.release(str(tmp_path))
    assert not os.path.exists(os.path.join(str(tmp_path), "run.lock"))


def test_a_non_chief_worker_checks_the_identity_and_writes_nothing(monkeypatch, tmp_path):
    import tfimp

    run = str(tmp_path)
    tfimp.workdir.claim(run, {"seed": 0}, verbose=0)  # the chief's earlier run
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]},
                                                "task": {"type": "worker", "index": 1}}))
    with pytest.raises(tfimp.workdir.IdentityMismatch, match=r"seed: 0 \(in the workdir\) vs 1 \(this run\)"):
        tfimp.workdir.claim(run, {"seed": 1}, verbose=0)
    tfimp.workdir.claim(run, {"seed": 1}, overwrite=True, verbose=0)  # overwriting is the chief's job
    assert sorted(os.listdir(run)) == ["identity.json"]
    with open(os.path.join(run, "identity.json")) as handle:
        assert json.load(handle) == {"seed": 0}
