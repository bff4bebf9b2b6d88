"""The per-epoch checkpoint and the finished cycles as units on disk, framework-free, checked when read back.

Each save is a new directory ``checkpoint/save_K/`` whose ``state.json`` is
written after the front end's payload (its weights, masks and optimizer
state) and records the sha256 of every payload file: a kill at any moment
leaves the previous complete save or the new one, never a mix, and no
directory is renamed (object stores cannot do that atomically). The two
newest complete saves are kept, so one damaged save never loses a run: a
save whose files no longer match (or whose ``state.json`` is unreadable) is
passed over, with a message, for the one before it. A finished cycle
(``cycle_N/``) records its files' digests in ``files.json``, written before
``row.json``; a damaged cycle is written again from the checkpoint when the
checkpoint holds that cycle's end, else refused with the file named. Each
front end passes the functions that write and read its payload. Saves and
cycles written before digests existed are read as they are.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from tfimp.core import notices as _notices
from tfimp.core import results as _core_results
from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir
from tfimp.core.results import to_json

_STATE = "state.json"  # written last: a save without it is incomplete
_SAVE = "save_"
_DIGESTS = "checkpoint_files"  # in state.json: relative path -> sha256 of the save's payload files
_KEPT = 2  # complete saves kept: one damaged save falls back to the one before


def _saves(workdir: str) -> list[tuple[int, str]]:
    """(number, path) of every save directory under ``workdir/checkpoint``, oldest first."""
    root = os.path.join(workdir, _workdir.CHECKPOINT)
    return sorted((int(name[len(_SAVE):]), os.path.join(root, name)) for name in _storage.listdir(root)
                  if name.startswith(_SAVE) and name[len(_SAVE):].isdigit())


def save(workdir: str, write_payload: Callable[[str], None], state: dict) -> None:
    """Writes a new save: ``write_payload(directory)``, then ``state.json`` with the payload's digests; then removes
    all but the newest complete saves."""
    saves = _saves(workdir)
    target = os.path.join(workdir, _workdir.CHECKPOINT, f"{_SAVE}{saves[-1][0] + 1 if saves else 0}")
    _storage.remove(target)
    _storage.makedirs(target)
    write_payload(target)
    _storage.atomic_write_text(os.path.join(target, _STATE),
                               to_json({**state, _DIGESTS: _storage.file_digests(target, skip=(_STATE,))}))
    complete = [path for _, path in saves if _storage.exists(os.path.join(path, _STATE))]
    keep = set(complete[-(_KEPT - 1):]) if _KEPT > 1 else set()
    for _, older in saves:
        if older not in keep:
            _storage.remove(older)


def _checked_state(save_dir: str) -> tuple[Optional[dict], Optional[str]]:
    """(the save's state, None) when its files are whole, else (None, why not)."""
    try:
        state = _storage.read_json(os.path.join(save_dir, _STATE))
    except _storage.DamagedFile as error:
        return None, str(error)
    if not isinstance(state, dict):
        return None, f"{_STATE} holds no state"
    why = _storage.check_digests(save_dir, state.get(_DIGESTS) or {})
    if why is not None:
        return None, why
    return {key: value for key, value in state.items() if key != _DIGESTS}, None


def _good_saves(workdir: str):
    """(directory, state) of each complete save whose files are whole, newest first; says which it passes over.

    Raises:
      DamagedFile: there are complete saves and every one of them is damaged.
    """
    damaged = []
    for _, candidate in reversed(_saves(workdir)):
        if not _storage.exists(os.path.join(candidate, _STATE)):
            continue  # cut short by a kill: not a save
        state, why = _checked_state(candidate)
        if state is None:
            damaged.append(f"{candidate}: {why}")
            _notices.say(f"[tfimp] checkpoint {candidate} is damaged ({why}); trying the save before it")
            continue
        yield candidate, state
    if damaged:
        raise _storage.DamagedFile(
            "every checkpoint of the run is damaged (" + "; ".join(damaged) + "): restore one, or start the run "
            "again with overwrite=True (CLI: --overwrite)")


def complete_save(workdir: str) -> Optional[str]:
    """The newest complete save whose files are whole (see the module docstring), or ``None``."""
    for candidate, _ in _good_saves(workdir):
        return candidate
    return None


def load_state(workdir: str) -> Optional[dict]:
    """The newest whole save's state, or ``None`` when the workdir has no checkpoint."""
    for _, state in _good_saves(workdir):
        return state
    return None


def restore(workdir: str, read_payload: Callable[[str], None]) -> Optional[dict]:
    """``read_payload(directory)`` of the newest whole save; returns its state (``None``: nothing saved).

    A save that cannot be read back (an older save without digests whose files are cut) is passed over, with a
    message, for the one before it.
    """
    for candidate, state in _good_saves(workdir):
        try:
            read_payload(candidate)
        except (OSError, ValueError, IndexError, KeyError, RuntimeError) + _storage.read_errors() as error:
            _notices.say(f"[tfimp] checkpoint {candidate} cannot be read ({type(error).__name__}: {error}); "
                         "trying the save before it")
            continue
        return state
    return None


def write_cycle(workdir: str, row: dict, write_payload: Callable[[str], None]) -> str:
    """Writes finished cycle ``row["cycle"]`` as ``cycle_N/``: ``write_payload(directory)``, then ``files.json``
    (the digests of what it wrote), then ``row.json`` last. Returns its path."""
    directory = _workdir.cycle_dir(workdir, row["cycle"])
    _storage.remove(directory)
    _storage.makedirs(directory)
    write_payload(directory)
    _storage.atomic_write_text(os.path.join(directory, _workdir.CYCLE_FILES), to_json(_storage.file_digests(directory)))
    _storage.atomic_write_text(os.path.join(directory, _workdir.CYCLE_ROW), to_json(row))
    return directory


def damaged_cycle(workdir: str, cycle: int) -> Optional[str]:
    """Why finished cycle ``cycle`` no longer holds what was written (a file cut or changed), or ``None``."""
    directory = _workdir.cycle_dir(workdir, cycle)
    try:
        row = _storage.read_json(os.path.join(directory, _workdir.CYCLE_ROW))
        recorded = _storage.read_json(os.path.join(directory, _workdir.CYCLE_FILES))
    except _storage.DamagedFile as error:
        return str(error)
    if row is None:
        return f"{_workdir.CYCLE_ROW} is missing"
    if recorded is None:
        return None  # written before digests existed: nothing to check against
    why = _storage.check_digests(directory, recorded)
    return None if why is None else f"{os.path.join(directory, why.split(' ', 1)[0])}: {why}"


def check_outputs(workdir: str, rows: list[dict], extra: dict, *, rewrite_cycle: Callable[[dict], None],
                  restorable_cycle: Optional[int], finished: bool) -> None:
    """After a resume: every finished ``cycle_N/`` of ``rows`` and ``results.json`` checked against what was written.

    In a ``finished`` run, a damaged ``results.json``/``results.csv`` (or rows that differ from the checkpoint's)
    is written again from the checkpoint's rows; a damaged ``cycle_N/`` of ``restorable_cycle`` (the checkpoint
    holds that cycle's end) is written again with ``rewrite_cycle(row)``; each is said. Any other damaged cycle
    is refused.

    Raises:
      DamagedFile: a finished cycle is damaged and the checkpoint has moved past it.
    """
    for row in rows:
        cycle = row.get("cycle")
        if not _storage.exists(_workdir.cycle_dir(workdir, cycle)):
            continue  # during-training rows: only the last epoch has a cycle directory
        why = damaged_cycle(workdir, cycle)
        if why is None:
            continue
        if cycle != restorable_cycle:
            raise _storage.DamagedFile(
                f"{_workdir.cycle_dir(workdir, cycle)} is damaged ({why}) and the last checkpoint is past cycle "
                f"{cycle}, so it cannot be written again from it: restore the file, or start the run again with "
                "overwrite=True (CLI: --overwrite)")
        _notices.say(f"[tfimp] {_workdir.cycle_dir(workdir, cycle)} is damaged ({why}); writing it again from the "
                     "last checkpoint, which holds the end of that cycle")
        rewrite_cycle(row)
    if not (rows and finished):  # before the end, the results are written again at the next cycle's end
        return
    for name, text in _core_results.results_files(rows, extra).items():
        try:
            on_disk = _storage.read_text(os.path.join(workdir, name))
        except _storage.DamagedFile as error:
            on_disk = str(error)
        if on_disk != text:
            _notices.say(f"[tfimp] {os.path.join(workdir, name)} is damaged (it is not what the last checkpoint's "
                         "rows give); writing the results again from the last checkpoint")
            _core_results.write_results(workdir, rows, extra)
            return


def save_weights(model, target: str) -> None:
    """``model.save_weights`` to an h5 file on any file system (h5py writes only local files)."""
    with _storage.local_file(target, "w") as local:
        model.save_weights(local)


def load_weights(model, source: str) -> None:
    """``model.load_weights`` from an h5 file on any file system."""
    with _storage.local_file(source, "r") as local:
        model.load_weights(local)


def finished_cycle_dir(workdir: str, cycle: int) -> str:
    """The directory of finished cycle ``cycle`` (its ``row.json`` is there).

    Raises:
      FileNotFoundError: no such finished cycle (the message lists those there are).
    """
    directory = _workdir.cycle_dir(workdir, cycle)
    if not _storage.exists(os.path.join(directory, _workdir.CYCLE_ROW)):
        raise FileNotFoundError(f"workdir {workdir!r} has no finished cycle {cycle}; "
                                f"finished cycles: {_workdir.cycles(workdir)}")
    return directory


def cycle_architecture(workdir: str, cycle: int) -> str:
    """The model architecture (Keras JSON) saved with finished cycle ``cycle``.

    Raises:
      ValueError: the cycle was saved from a subclassed model (no architecture).
    """
    architecture = _storage.read_text(os.path.join(_workdir.cycle_dir(workdir, cycle), _workdir.CYCLE_MODEL))
    if architecture is None:
        raise ValueError(f"cycle {cycle} in {workdir!r} was saved from a subclassed model: pass a built "
                         "instance as load_cycle(workdir, cycle, model=...)")
    return architecture
