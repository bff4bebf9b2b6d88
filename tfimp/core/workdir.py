"""A run's directory: its layout, its identity and its lock, in one place.

Layout of a workdir (every name below is defined here and nowhere else)::

    identity.json       what the run is: everything that can change its results
    config.json         the CLI's resolved config (readable copy)
    run.lock            host and process of the run using the workdir now
    checkpoint/save_K/  IMP's per-epoch state, state.json written last (tfimp.checkpoint)
    backup/             Keras' BackupAndRestore state of the dense and baseline runners
    cycle_N/            one finished cycle: weights.h5 (weights and masks; model.weights.h5
                        on Keras 3), model.json (architecture, when Keras can serialise it),
                        row.json, report.json
    results.json        the per-cycle rows (results.csv: the same as a table)
    final.weights.h5    the finished model of the dense and baseline runners
    tensorboard/        Keras' epoch scalars; per-cycle scalars under tensorboard/cycles
    export/             the CLI's checked exports and their size table (sizes.txt, sizes.json)
    accuracy_vs_sparsity.png, model_stripped.keras   the CLI's plot and final stripped model
    workertemp_<id>/    a non-chief worker's scratch in a multi-worker run, removed at its end

**Identity.** A workdir belongs to one run, described by a dict of
everything that can change its results (the runner's settings and, from the
CLI, the whole resolved config). It is stored once, in ``identity.json``. A
later run with any difference is refused before anything is written, with
every differing key and both values; ``overwrite=True`` removes every file
of the previous run first, whatever it was.

**Lock.** ``run.lock`` names the host and process using the workdir. A
second run is refused while that process lives; a lock whose process is gone
(same host) is stale and taken over. A lock written on another host cannot be
checked from here and is respected: delete it by hand if that run is dead.

**File systems.** Every read and write goes through :mod:`tfimp.core.storage`
(Python's file functions locally, ``tf.io.gfile`` otherwise), so a
workdir may be on any file system TensorFlow has (``gs://``, ``s3://`` with
tensorflow-io, ``hdfs://``, the in-memory ``ram://``). Units that must appear
whole (a checkpoint, a ``cycle_N/``) are never renamed as directories, which
object stores cannot do atomically: their files are written first and a
small marker file last (``state.json``, ``row.json``), and readers only trust
a unit whose marker is there. Single files are written to ``name.tmp`` and
renamed, atomic on local disks; on object stores a rename is a copy and a
delete, and readers still see either the old or the new object. The lock is
an exclusive create on local disks; elsewhere it is checked and then written,
so two runs started within the same moment on a remote workdir can both
proceed: start one run per workdir.

**Several workers.** Under ``MultiWorkerMirroredStrategy`` every worker
saves (saving reads variables whose values are all-reduced across workers),
but only the chief into the workdir: the others write into
``workertemp_<task id>/`` (the tf_keras front end's ``write_dir``, Keras'
convention) and remove it at the end. Every worker reads the chief's workdir
when it resumes. This module is framework-free: a front end with several
workers tells it who the chief is (:func:`set_workers`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Callable, Optional

from tfimp.core.storage import atomic_write_text, exists, is_local, listdir, makedirs, read_errors, read_json, remove

IDENTITY = "identity.json"
CONFIG = "config.json"
LOCK = "run.lock"
CHECKPOINT = "checkpoint"
BACKUP = "backup"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
FINAL_WEIGHTS = "final.weights.h5"
TENSORBOARD = "tensorboard"
TENSORBOARD_CYCLES = os.path.join("tensorboard", "cycles")
EXPORT = "export"
EXPORT_SIZES_TXT = os.path.join("export", "sizes.txt")
EXPORT_SIZES_JSON = os.path.join("export", "sizes.json")
STRIPPED_MODEL = "model_stripped.keras"
STR_CALIBRATION = "str_calibration.json"  # the CLI's calibrated STR decay (--config.calibrate_str), reused on resume
PLOT = "accuracy_vs_sparsity.png"
CYCLE_WEIGHTS = "weights.h5"
KERAS3_WEIGHTS = "model.weights.h5"  # the Keras 3 front end's weights (Keras 3 wants this suffix): cycle_N/, save_K/
KERAS3_RNG_STATES = "rng_states.npz"  # Keras 3's seed generators (dropout, ...), which weights files leave out: save_K/
CYCLE_MODEL = "model.json"
CYCLE_ROW = "row.json"
CYCLE_REPORT = "report.json"
WORKER_TEMP = "workertemp_"  # + task id: a non-chief worker's scratch copy, removed at the end


def path(workdir: str, *names: str) -> str:
    """``workdir/names...``."""
    return os.path.join(workdir, *names)


def cycle_dir(workdir: str, cycle: int) -> str:
    """The directory of finished cycle ``cycle`` (0 = the dense phase)."""
    return os.path.join(workdir, f"cycle_{int(cycle)}")


def cycles(workdir: str) -> list[int]:
    """The finished cycles found in ``workdir``, in order."""
    found = []
    for name in listdir(workdir):
        if name.startswith("cycle_") and name[6:].isdigit() and exists(path(workdir, name, CYCLE_ROW)):
            found.append(int(name[6:]))
    return sorted(found)


class WorkdirInUse(RuntimeError):
    """Another live process holds the workdir's lock."""


class IdentityMismatch(ValueError):
    """The workdir holds a run that differs from this one."""


def describe(value: Any) -> Any:
    """A stable, JSON-able description of a setting for the identity: objects by class, name and config, never
    by address (a schedule, a loss, a callable of the step)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    described: dict[str, Any] = {"class": type(value).__name__}
    if hasattr(value, "__name__"):
        described["name"] = value.__name__
    if hasattr(value, "get_config"):
        try:
            described["config"] = describe(value.get_config())
        except (NotImplementedError, TypeError):
            pass
    return described


def _normalise(value: Any) -> Any:
    """JSON-comparable form (tuples become lists, numpy scalars numbers, unknown objects their repr)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else repr(v)))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat or {prefix[:-1]: {}}
    return {prefix[:-1]: value}


_MISSING = "<absent>"


def differences(stored: dict, wanted: dict) -> list[str]:
    """``"key: stored -> wanted"`` for each (dotted) key whose value differs."""
    old, new = _flatten(_normalise(stored)), _flatten(_normalise(wanted))
    return [f"{key}: {old.get(key, _MISSING)!r} (in the workdir) vs {new.get(key, _MISSING)!r} (this run)"
            for key in sorted(set(old) | set(new)) if old.get(key, _MISSING) != new.get(key, _MISSING)]


# -- several workers --------------------------------------------------------------

_is_chief: Callable[[], bool] = lambda: True
_scratch_of: Callable[[str], str] = lambda workdir: workdir


def set_workers(is_chief: Callable[[], bool], scratch_of: Callable[[str], str]) -> None:
    """How a front end with several workers says who the chief is and where another worker writes.

    ``is_chief()``: whether this process writes the workdir (only it takes the
    lock and records the identity); ``scratch_of(workdir)``: a non-chief
    worker's own directory, started afresh when it claims the workdir.
    """
    global _is_chief, _scratch_of
    _is_chief, _scratch_of = is_chief, scratch_of


# -- lock -----------------------------------------------------------------------

_HELD: set[str] = set()  # lock paths this process holds


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(owner: dict) -> str:
    return f"process {owner.get('pid')} on host {owner.get('host')!r} (started {owner.get('started', '?')})"


def _create_exclusively(lock: str, text: str) -> bool:
    """Creates ``lock`` holding ``text`` unless it exists; ``False`` if it did.

    Exclusive on local disks (``O_EXCL``); other file systems have no
    exclusive create in ``tf.io.gfile``, so there it is a check and a write.
    """
    if is_local(lock):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True
    if exists(lock):
        return False
    atomic_write_text(lock, text)
    return True


def acquire(workdir: str, verbose: int = 1) -> bool:
    """Takes ``workdir``'s lock for this process; ``False`` when this process holds it already.

    Whoever got ``True`` releases it (:func:`release`), so nested holders
    (the CLI, a runner, the IMP callback) leave it to the outermost.

    Only the chief of a multi-worker job takes the lock (``False`` on the
    other workers, which never write the workdir).

    Raises:
      WorkdirInUse: a live process (or one on another host) holds it.
    """
    if not _is_chief():
        return False
    makedirs(workdir)
    lock = path(workdir, LOCK)
    if lock in _HELD:
        return False
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        if _create_exclusively(lock, json.dumps(me)):
            _HELD.add(lock)
            return True
        try:
            owner = read_json(lock) or {}
        except read_errors():
            owner = {}  # half-written by a killed process
        same_host = owner.get("host") == me["host"]
        if same_host and owner.get("pid") == me["pid"]:
            remove(lock)  # ours, left by an earlier call of this process that failed
            continue
        if owner and (not same_host or _process_alive(int(owner.get("pid", -1)))):
            raise WorkdirInUse(
                f"workdir {workdir!r} is in use by {_owner(owner)}; wait for it to finish or use another "
                f"workdir" + ("" if same_host else f" (if that run is dead, delete {lock})"))
        if verbose:
            print(f"[tfimp] taking over the stale lock of {_owner(owner)} in {workdir!r}", flush=True)
        remove(lock)
    raise WorkdirInUse(f"could not take the lock {lock!r}: another process took it at the same time")


def release(workdir: str) -> None:
    """Removes ``workdir``'s lock if this process holds it."""
    lock = path(workdir, LOCK)
    if lock in _HELD:
        _HELD.discard(lock)
        remove(lock)


class Locked:
    """``with Locked(workdir):`` holds the workdir's lock for the block."""

    def __init__(self, workdir: Optional[str], verbose: int = 1):
        self.workdir, self.verbose = workdir, verbose

    def __enter__(self):
        self._took = self.workdir is not None and acquire(self.workdir, self.verbose)
        return self

    def __exit__(self, *exc):
        if self._took:
            release(self.workdir)
        return False


# -- identity -------------------------------------------------------------------

def clear(workdir: str) -> int:
    """Removes every file and directory in ``workdir`` but the lock and live workers' scratch; returns the count."""
    removed = 0
    for name in listdir(workdir):
        if name == LOCK or name.startswith(WORKER_TEMP):
            continue
        remove(path(workdir, name))
        removed += 1
    return removed


def holds_other_run(workdir: str, user_identity: dict) -> bool:
    """Whether ``workdir`` records a run whose user-given identity (the CLI's config) differs from ``user_identity``."""
    stored = read_json(path(workdir, IDENTITY))
    return stored is not None and stored.get("user") != _normalise(user_identity)


def remove_previous_run(workdir: str, verbose: int = 1) -> None:
    """``overwrite``: empties ``workdir`` (made if missing) but its lock, and says how much went."""
    makedirs(workdir)
    removed = clear(workdir)
    if removed and verbose:
        print(f"[tfimp] overwrite: removed the previous run's {removed} "
              f"{'entry' if removed == 1 else 'entries'} from {workdir!r}", flush=True)


def _refuse_a_different_run(workdir: str, stored: Optional[dict], wanted: dict) -> None:
    """Raises IdentityMismatch, naming each difference, when ``workdir`` holds a run other than ``wanted``."""
    if stored is not None and stored != wanted:
        raise IdentityMismatch(
            f"workdir {workdir!r} holds a different run:\n  " + "\n  ".join(differences(stored, wanted))
            + "\nuse another workdir, or pass overwrite=True (CLI: --overwrite) to remove it and start over")


def claim(workdir: str, identity: dict, overwrite: bool = False, verbose: int = 1,
          files: Optional[dict[str, str]] = None) -> None:
    """Makes ``workdir`` this run's: checks (or, with ``overwrite``, resets) it and records ``identity``.

    ``files`` (name -> text) are written after the check, e.g. the CLI's
    ``config.json``. Nothing is written when the check fails. The non-chief
    workers of a multi-worker job only check (and start their scratch
    directory afresh); follow with :func:`sync_workers` before reading.

    Raises:
      IdentityMismatch: the workdir holds a different run and ``overwrite`` is false.
    """
    wanted = _normalise(identity)
    if not _is_chief():
        remove(_scratch_of(workdir))
        if not overwrite:
            _refuse_a_different_run(workdir, read_json(path(workdir, IDENTITY)), wanted)
        return
    makedirs(workdir)
    if overwrite:
        remove_previous_run(workdir, verbose)
    else:
        stored = read_json(path(workdir, IDENTITY))
        if stored is None and any(name != LOCK for name in listdir(workdir)):
            if cycles(workdir) or exists(path(workdir, CHECKPOINT)) or exists(path(workdir, RESULTS_JSON)):
                raise IdentityMismatch(f"workdir {workdir!r} holds a run without {IDENTITY} (an older tfimp or "
                                       "another tool); use another workdir, or overwrite=True (CLI: --overwrite)")
        _refuse_a_different_run(workdir, stored, wanted)
    if read_json(path(workdir, IDENTITY)) != wanted:
        atomic_write_text(path(workdir, IDENTITY), json.dumps(wanted, indent=2))
    for name, text in (files or {}).items():
        atomic_write_text(path(workdir, name), text)


def acquire_and_claim(workdir: str, identity: dict, overwrite: bool = False, verbose: int = 1) -> bool:
    """:func:`acquire` then :func:`claim`; a refused claim gives the lock back. Returns what ``acquire`` did."""
    took = acquire(workdir, verbose)
    try:
        claim(workdir, identity, overwrite, verbose)
    except Exception:
        if took:
            release(workdir)
        raise
    return took
