"""What a workdir promises, in the framework-free core both front ends share: overwrite, the lock."""

import json
import os
import pathlib
import signal
import socket
import time

import pytest

from tfimp.core import workdir

from lock_holder import hold as _hold

def _user_folder(root: pathlib.Path) -> pathlib.Path:
    folder = root / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "thesis.txt").write_text("chapter 1")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    return folder


def _snapshot(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_refuses_a_folder_that_holds_no_run_and_touches_nothing(tmp_path):
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    with pytest.raises(workdir.NotARun, match=r"is not empty \(2 entries: data.csv, notes\) and holds no tfimp run"):
        workdir.claim(str(folder), {"run": 1}, overwrite=True, verbose=0)
    assert _snapshot(folder) == before


def test_overwrite_removes_only_what_the_run_wrote(tmp_path, capsys):
    run = tmp_path / "run"
    workdir.claim(str(run), {"run": 1}, verbose=0)
    for name in (workdir.RESULTS_JSON, workdir.CONFIG, "results.json.tmp"):
        (run / name).write_text("{}")
    (run / "cycle_0").mkdir()
    (run / "cycle_0" / workdir.CYCLE_ROW).write_text("{}")
    (run / "checkpoint" / "save_3").mkdir(parents=True)
    (run / "my_notes.txt").write_text("keep me")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.py").write_text("print(1)")
    workdir.claim(str(run), {"run": 2}, overwrite=True, verbose=1)
    assert sorted(os.listdir(run)) == ["analysis", "identity.json", "my_notes.txt"]
    assert (run / "my_notes.txt").read_text() == "keep me" and (run / "analysis" / "plot.py").read_text() == "print(1)"
    assert json.loads((run / workdir.IDENTITY).read_text()) == {"run": 2}
    out = capsys.readouterr().out
    assert "removed the previous run's 6 entries" in out
    assert "kept 2 that tfimp did not write (analysis, my_notes.txt)" in out


def test_overwrite_of_an_empty_or_missing_folder_just_claims_it(tmp_path):
    for run in (tmp_path / "missing", tmp_path / "empty"):
        if run.name == "empty":
            run.mkdir()
        workdir.claim(str(run), {"run": 1}, overwrite=True, verbose=0)
        assert os.listdir(run) == [workdir.IDENTITY]


def test_a_live_holder_keeps_the_workdir_and_its_death_frees_it(tmp_path, capsys):
    run = str(tmp_path / "run")
    holder = _hold(run)
    try:
        with pytest.raises(workdir.WorkdirInUse, match=rf"in use by process {holder.pid} on host"):
            workdir.acquire(run, verbose=0)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert os.path.exists(os.path.join(run, workdir.LOCK))  # a SIGKILL leaves the file; the kernel freed the lock
    assert workdir.acquire(run, verbose=1)
    assert f"taking over the stale lock of process {holder.pid}" in capsys.readouterr().out
    owner = json.loads(pathlib.Path(run, workdir.LOCK).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    workdir.release(run)
    assert not os.path.exists(os.path.join(run, workdir.LOCK))


@pytest.mark.parametrize("content, said", [
    (json.dumps({"host": socket.gethostname(), "pid": 0}), "naming process id 0, not a positive integer"),
    (json.dumps({"host": socket.gethostname(), "pid": "12"}), "naming process id '12', not a positive integer"),
    ('{"host": "a', "whose content could not be read"),
    ("", None),
])
def test_a_lock_nobody_holds_is_taken_over_whatever_it_says(tmp_path, capsys, content, said):
    run = tmp_path / "run"
    run.mkdir()
    (run / workdir.LOCK).write_text(content)
    assert workdir.acquire(str(run), verbose=1)
    out = capsys.readouterr().out
    assert (said in out) if said else "taking over" not in out
    workdir.release(str(run))


@pytest.mark.parametrize("local_os_lock", [True, False])
def test_another_hosts_lock_holds_while_its_heartbeat_is_recent(tmp_path, monkeypatch, local_os_lock):
    if not local_os_lock:  # as on an object store: the written owner alone decides
        monkeypatch.setattr(workdir, "fcntl", None)
    run = tmp_path / "run"
    run.mkdir()
    recent = {"host": "another-host.example", "pid": 4242, "started": "then", "heartbeat": time.time() - 30}
    (run / workdir.LOCK).write_text(json.dumps(recent))
    with pytest.raises(workdir.WorkdirInUse, match=r"process 4242 on host 'another-host\.example'.*if that run is "
                                                   r"dead, delete"):
        workdir.acquire(str(run), verbose=0)
    assert json.loads((run / workdir.LOCK).read_text()) == recent  # left as it was
    old = {**recent, "heartbeat": time.time() - workdir.STALE_AFTER_S - 60}
    (run / workdir.LOCK).write_text(json.dumps(old))
    assert workdir.acquire(str(run), verbose=0)
    assert json.loads((run / workdir.LOCK).read_text())["pid"] == os.getpid()
    workdir.release(str(run))


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(workdir, "HEARTBEAT_S", 0.05)
    run = str(tmp_path / "run")
    workdir.acquire(run, verbose=0)
    try:
        first = json.loads(pathlib.Path(run, workdir.LOCK).read_text())["heartbeat"]
        time.sleep(0.5)
        later = json.loads(pathlib.Path(run, workdir.LOCK).read_text())["heartbeat"]
        assert later > first
    finally:
        workdir.release(run)
