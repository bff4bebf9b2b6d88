"""The per-epoch checkpoint as a unit on disk, framework-free: ``checkpoint/save_K/``, ``state.json`` last.

Each save is a new directory whose ``state.json`` is written after the
front end's payload (its weights, masks and optimizer state): a kill at any
moment leaves the previous complete save or the new one, never a mix, and
no directory is renamed (object stores cannot do that atomically). Older
saves are removed only once the new one is whole. Each front end passes
the function that writes and reads its payload.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir
from tfimp.core.results import to_json

_STATE = "state.json"  # written last: a save without it is incomplete
_SAVE = "save_"


def _saves(workdir: str) -> list[tuple[int, str]]:
    """(number, path) of every save directory under ``workdir/checkpoint``, oldest first."""
    root = os.path.join(workdir, _workdir.CHECKPOINT)
    return sorted((int(name[len(_SAVE):]), os.path.join(root, name)) for name in _storage.listdir(root)
                  if name.startswith(_SAVE) and name[len(_SAVE):].isdigit())


def save(workdir: str, write_payload: Callable[[str], None], state: dict) -> None:
    """Writes a new save: ``write_payload(directory)``, then ``state.json``; then removes the older saves."""
    saves = _saves(workdir)
    target = os.path.join(workdir, _workdir.CHECKPOINT, f"{_SAVE}{saves[-1][0] + 1 if saves else 0}")
    _storage.remove(target)
    _storage.makedirs(target)
    write_payload(target)
    _storage.atomic_write_text(os.path.join(target, _STATE), to_json(state))
    for _, older in saves:
        _storage.remove(older)


def complete_save(workdir: str) -> Optional[str]:
    """The newest save with its ``state.json`` (a newer one without it was cut short by a kill)."""
    for _, candidate in reversed(_saves(workdir)):
        if _storage.exists(os.path.join(candidate, _STATE)):
            return candidate
    return None


def load_state(workdir: str) -> Optional[dict]:
    """The saved state, or ``None`` when the workdir has no checkpoint."""
    path = complete_save(workdir)
    return None if path is None else _storage.read_json(os.path.join(path, _STATE))


def restore(workdir: str, read_payload: Callable[[str], None]) -> Optional[dict]:
    """``read_payload(directory)`` of the newest complete save; returns its state (``None``: nothing saved)."""
    path = complete_save(workdir)
    if path is None:
        return None
    read_payload(path)
    return _storage.read_json(os.path.join(path, _STATE))


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
