"""A run's directory: its layout, its identity and its lock, in one place.

Layout of a workdir (every name below is defined here and nowhere else)::

    identity.json       what the run is: everything that can change its results
    config.json         the CLI's resolved config (readable copy)
    run.lock            host and process of the run using the workdir now
    checkpoint/save_K/  every run's per-epoch state (IMP, dense, the baselines), state.json
                        written last (tfimp.core.checkpoint, tfimp.core.driver)
    backup/             Keras' BackupAndRestore state of an older tfimp's dense and baseline runs
    cycle_N/            one finished cycle: weights.h5 (weights and masks; model.weights.h5
                        on Keras 3), model.json (architecture, when Keras can serialise it),
                        report.json, files.json (their digests), row.json last
    results.json        the per-cycle rows (results.csv: the same as a table)
    final.weights.h5    an older tfimp's finished dense or baseline model (still read back)
    tensorboard/        Keras' epoch scalars; per-cycle scalars under tensorboard/cycles
    export/             the CLI's checked exports and their size table (sizes.txt, sizes.json)
    accuracy_vs_sparsity.png, model_stripped.keras   the CLI's plot and final stripped model
    workertemp_<id>/    a non-chief worker's scratch in a multi-worker run, removed at its end

**Identity.** A workdir belongs to one run, described by a dict of
everything that can change its results (the runner's settings and, from the
CLI, the whole resolved config). It is stored once, in ``identity.json``. A
later run with any difference is refused before anything is written, with
every differing key and both values. ``overwrite=True`` removes what the
previous run wrote (the names of the layout above, identity last) and
nothing else: files of yours in the workdir stay. It only ever removes in a
directory that holds a tfimp run (its ``identity.json``, or a finished
``cycle_N/`` of an older tfimp); a non-empty directory that holds none is
refused (:class:`NotARun`) and left untouched.

**Lock.** ``run.lock`` names the host and process using the workdir. On a
local disk the run also holds an OS lock on that file (``fcntl.flock``),
which the kernel releases when its process dies however it dies: a second
run is refused while the lock is held, and a lock file nobody holds is stale
and taken over (with a message), whatever it says. Where no OS lock is
available (object stores), the written owner decides: a live process on this
host, or a lock from another host that its holder refreshed in the last
:data:`STALE_AFTER_S` seconds (it does so every :data:`HEARTBEAT_S`), holds
the workdir; a lock naming a process that is gone, a process id that is not
a positive integer, or content that cannot be read is stale.

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
import threading
import time
from typing import Any, Callable, Optional

try:
    import fcntl
except ImportError:  # Windows: the written owner alone decides
    fcntl = None

from tfimp.core.storage import (atomic_write_text, exists, is_local, listdir, makedirs, read_errors, read_json,
                                read_text, remove)

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
EXPORT_SLIM_MODEL = os.path.join("export", "model_slim.keras")  # a channels run's model after tfimp.slim
STRIPPED_MODEL = "model_stripped.keras"
CALIBRATION = "calibration.json"  # the CLI's calibrated STR/CS/DST hyper-parameter and its search (--config.calibrate)
STR_CALIBRATION = "str_calibration.json"  # what an older tfimp wrote for STR alone (removed with its run)
PLOT = "accuracy_vs_sparsity.png"
CYCLE_WEIGHTS = "weights.h5"
KERAS3_WEIGHTS = "model.weights.h5"  # the Keras 3 front end's weights (Keras 3 wants this suffix): cycle_N/, save_K/
KERAS3_RNG_STATES = "rng_states.npz"  # Keras 3's seed generators (dropout, ...), which weights files leave out: save_K/
CYCLE_MODEL = "model.json"
CYCLE_ROW = "row.json"
CYCLE_FILES = "files.json"  # the digests of a cycle_N/'s other files, written before row.json
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


class NotARun(ValueError):
    """``overwrite`` was asked of a non-empty directory that holds no tfimp run; nothing in it was touched."""


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

def _single_process_is_chief() -> bool:
    return True


def _own_directory(workdir: str) -> str:
    return workdir


_is_chief: Callable[[], bool] = _single_process_is_chief
_scratch_of: Callable[[str], str] = _own_directory


def is_chief() -> bool:
    """Whether this process writes the workdir (the chief of a multi-worker job, or the only process)."""
    return _is_chief()


def set_workers(is_chief: Callable[[], bool], scratch_of: Callable[[str], str]) -> None:
    """How a front end with several workers says who the chief is and where another worker writes.

    ``is_chief()``: whether this process writes the workdir (only it takes the
    lock and records the identity); ``scratch_of(workdir)``: a non-chief
    worker's own directory, started afresh when it claims the workdir.
    """
    global _is_chief, _scratch_of
    _is_chief, _scratch_of = is_chief, scratch_of


# -- lock -----------------------------------------------------------------------

#: How often a run refreshes its lock's ``heartbeat`` (seconds), and after how long without one a lock written on
#: another host is stale.
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0

_HELD: dict[str, "_HeldLock"] = {}  # lock path -> the lock this process holds


class _HeldLock:
    """A lock this process holds: the OS lock's file descriptor (local disks) and the heartbeat that refreshes it."""

    def __init__(self, lock: str, owner: dict, descriptor: Optional[int]):
        self.lock, self.owner, self.descriptor = lock, owner, descriptor
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._refresh, name=f"tfimp-lock-heartbeat:{lock}", daemon=True)
        self._beat.start()

    def _refresh(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.write({**self.owner, "heartbeat": time.time()})
            except OSError:  # a missed beat only makes the lock look older to another host
                pass

    def write(self, owner: dict) -> None:
        text = json.dumps(owner)
        if self.descriptor is None:
            atomic_write_text(self.lock, text)
            return
        os.ftruncate(self.descriptor, 0)
        os.pwrite(self.descriptor, text.encode("utf-8"), 0)

    def release(self) -> None:
        self._stop.set()
        remove(self.lock)  # before the OS lock goes: a waiting process then finds no file, or its own
        if self.descriptor is not None:
            os.close(self.descriptor)


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


def _parse_owner(text: Optional[str]) -> Optional[dict]:
    """The owner a lock file names, or ``None`` when its content cannot be read as one."""
    try:
        owner = json.loads(text) if text else None
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def _valid_pid(owner: dict) -> Optional[int]:
    pid = owner.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _holds(owner: Optional[dict], me: dict) -> bool:
    """Whether the owner a lock file names (with no OS lock to ask) still holds the workdir."""
    if owner is None or _valid_pid(owner) is None:
        return False  # unreadable, or no process it could name
    if owner.get("host") == me["host"]:
        return owner["pid"] != me["pid"] and _process_alive(owner["pid"])
    beat = owner.get("heartbeat")
    if isinstance(beat, (int, float)):
        return time.time() - beat <= STALE_AFTER_S
    return True  # another host's lock without a heartbeat (an older tfimp): cannot be checked from here


def _stale_reason(owner: Optional[dict], text: Optional[str]) -> str:
    if owner is None:
        return f"a lock whose content could not be read ({(text or '')[:60]!r})"
    if _valid_pid(owner) is None:
        return f"a lock naming process id {owner.get('pid')!r}, not a positive integer"
    return f"the stale lock of {_owner(owner)}"


def _in_use(workdir: str, lock: str, owner: Optional[dict], me: dict) -> WorkdirInUse:
    named = _owner(owner) if owner else "another process (its lock file is being written)"
    remote = owner is not None and owner.get("host") != me["host"]
    return WorkdirInUse(f"workdir {workdir!r} is in use by {named}; wait for it to finish or use another "
                        f"workdir" + (f" (if that run is dead, delete {lock})" if remote else ""))


def _read_descriptor(descriptor: int) -> str:
    return os.pread(descriptor, 1 << 16, 0).decode("utf-8", "replace")


def _acquire_os_lock(workdir: str, lock: str, me: dict, verbose: int) -> _HeldLock:
    """Takes ``lock`` with ``fcntl.flock`` (a local disk): held while the process lives, released by its death."""
    for _ in range(3):
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = _read_descriptor(descriptor)
            os.close(descriptor)
            raise _in_use(workdir, lock, _parse_owner(text), me) from None
        try:  # the file we locked must still be the one at ``lock`` (its holder removes it when it releases)
            current = os.stat(lock).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            os.close(descriptor)
            continue
        text = _read_descriptor(descriptor)
        owner = _parse_owner(text)
        if owner is not None and owner.get("host") != me["host"] and _holds(owner, me):
            os.close(descriptor)  # another host's run on a shared disk whose OS lock may not reach us
            raise _in_use(workdir, lock, owner, me)
        if text and verbose:
            print(f"[tfimp] taking over {_stale_reason(owner, text)} in {workdir!r}: no process holds it", flush=True)
        held = _HeldLock(lock, me, descriptor)
        held.write(me)
        return held
    raise WorkdirInUse(f"could not take the lock {lock!r}: other processes took and released it meanwhile")


def _acquire_written_lock(workdir: str, lock: str, me: dict, verbose: int) -> _HeldLock:
    """Takes ``lock`` where no OS lock exists: the owner it names decides (see the module docstring)."""
    for _ in range(2):
        if _create_exclusively(lock, json.dumps(me)):
            return _HeldLock(lock, me, None)
        try:
            text = read_text(lock)
        except read_errors():
            text = None  # half-written by a killed process
        owner = _parse_owner(text)
        if _holds(owner, me):
            raise _in_use(workdir, lock, owner, me)
        if verbose and not (owner and owner.get("host") == me["host"] and owner.get("pid") == me["pid"]):
            print(f"[tfimp] taking over {_stale_reason(owner, text)} in {workdir!r}", flush=True)
        remove(lock)
    raise WorkdirInUse(f"could not take the lock {lock!r}: another process took it at the same time")


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
      WorkdirInUse: a live process holds it (see the module docstring).
    """
    if not _is_chief():
        return False
    makedirs(workdir)
    lock = path(workdir, LOCK)
    if lock in _HELD:
        return False
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
          "heartbeat": time.time()}
    take = _acquire_os_lock if fcntl is not None and is_local(lock) else _acquire_written_lock
    _HELD[lock] = take(workdir, lock, me, verbose)
    return True


def release(workdir: str) -> None:
    """Gives ``workdir``'s lock back if this process holds it (the lock file goes too)."""
    held = _HELD.pop(path(workdir, LOCK), None)
    if held is not None:
        held.release()


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

#: The entries a run writes at the top of its workdir (besides ``cycle_N/`` and ``workertemp_<id>/``).
RUN_ENTRIES = (CONFIG, CHECKPOINT, BACKUP, RESULTS_JSON, RESULTS_CSV, FINAL_WEIGHTS, TENSORBOARD, EXPORT,
               STRIPPED_MODEL, CALIBRATION, STR_CALIBRATION, PLOT, IDENTITY)


def written_by_tfimp(name: str) -> bool:
    """Whether ``name``, an entry of a workdir, is one a tfimp run writes (or its ``.tmp`` while writing)."""
    base = name[:-len(".tmp")] if name.endswith(".tmp") else name
    return (base in RUN_ENTRIES or base == LOCK or base.startswith(WORKER_TEMP)
            or (base.startswith("cycle_") and base[len("cycle_"):].isdigit()))


def has_progress(workdir: str) -> bool:
    """Whether the run in ``workdir`` saved any work (a checkpoint, a finished cycle, results, a calibration)."""
    return bool(cycles(workdir)) or any(exists(path(workdir, name)) for name in (
        CHECKPOINT, BACKUP, RESULTS_JSON, FINAL_WEIGHTS, CALIBRATION, STR_CALIBRATION))


def holds_a_run(workdir: str) -> bool:
    """Whether ``workdir`` holds a tfimp run: its identity, or a finished cycle of a tfimp older than identities."""
    return exists(path(workdir, IDENTITY)) or bool(cycles(workdir))


def _not_a_run(workdir: str, entries: list[str]) -> NotARun:
    shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
    return NotARun(f"overwrite refused: {workdir!r} is not empty ({len(entries)} entries: {shown}) and holds no "
                   f"tfimp run (no {IDENTITY}); nothing in it was touched. Give a new or empty workdir, or the "
                   "workdir of an earlier tfimp run.")


def check_usable(workdir: str, overwrite: bool = False) -> None:
    """Fails at once, before any data is read, on a workdir no run can use.

    Raises:
      NotADirectoryError: ``workdir`` is an existing file.
      PermissionError: a local ``workdir`` (or the folder it would be made in) cannot be written.
      NotARun: ``overwrite`` of a non-empty directory that holds no tfimp run.
    """
    if is_local(workdir):
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            raise NotADirectoryError(f"workdir {workdir!r} is a file, not a directory; give a directory (a new one "
                                     "is made)")
        existing = os.path.abspath(workdir)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"workdir {workdir!r} cannot be written: no write permission on {existing!r}")
    if overwrite and exists(workdir):
        entries = [name for name in listdir(workdir) if name != LOCK]
        if entries and not holds_a_run(workdir):
            raise _not_a_run(workdir, entries)


def remove_previous_run(workdir: str, verbose: int = 1) -> None:
    """``overwrite``: removes what the previous tfimp run wrote in ``workdir``, and nothing else.

    The identity goes last, so an interrupted removal is still a tfimp run
    that a second ``overwrite`` finishes removing. Files of the user's stay
    (and are named). A missing or empty ``workdir`` has nothing to remove.

    Raises:
      NotARun: ``workdir`` is not empty and holds no tfimp run; nothing was touched.
    """
    entries = [name for name in listdir(workdir) if name != LOCK]
    if not entries:
        return
    if not holds_a_run(workdir):
        raise _not_a_run(workdir, entries)
    ours = sorted((name for name in entries if written_by_tfimp(name)), key=lambda name: name == IDENTITY)
    for name in ours:
        remove(path(workdir, name))
    kept = sorted(set(entries) - set(ours))
    if verbose and (ours or kept):
        shown = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
        print(f"[tfimp] overwrite: removed the previous run's {len(ours)} "
              f"{'entry' if len(ours) == 1 else 'entries'} from {workdir!r}"
              + (f"; kept {len(kept)} that tfimp did not write ({shown})" if kept else ""), flush=True)


def holds_other_run(workdir: str, user_identity: dict) -> bool:
    """Whether ``workdir`` records a run whose user-given identity (the CLI's config) differs from ``user_identity``."""
    stored = read_json(path(workdir, IDENTITY))
    return stored is not None and stored.get("user") != _normalise(user_identity)


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
        if stored is not None and stored != wanted and not has_progress(workdir):
            if verbose:
                print(f"[tfimp] {workdir!r} holds the identity of a run that never finished an epoch: this run "
                      "takes its place", flush=True)
        else:
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
