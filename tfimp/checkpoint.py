"""A run's state on disk: atomic, readable, one unit per epoch.

Layout of a workdir::

    plan.json          the plan (and settings) the workdir belongs to
    checkpoint/        weights, masks and optimizer (tf.train.Checkpoint) + state.json
    results.json       the per-cycle rows, rewritten after each cycle
    results.csv

The checkpoint directory is written beside the old one and swapped in by
renames, so a kill at any moment leaves either the previous or the new
epoch's complete state, never a mix. Keras' ``BackupAndRestore`` saves the
model and epoch but cannot carry the per-cycle rows and the cycle state in
the same atomic unit, hence this module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from typing import Any, Sequence

from tfimp._backend import keras, tf

_CHECKPOINT = "checkpoint"
_STATE = "state.json"


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=_json_default)


def write_results(workdir: str, rows: Sequence[dict], extra: dict | None = None) -> None:
    """Writes ``results.json`` (rows + ``extra``) and ``results.csv`` atomically."""
    atomic_write_text(os.path.join(workdir, "results.json"), to_json({**(extra or {}), "rows": list(rows)}))
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(workdir, "results.csv"), buffer.getvalue())


def load_results(workdir: str) -> list[dict] | None:
    """The rows of ``results.json`` in ``workdir``, or ``None`` if there is none."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["rows"]


def check_plan(workdir: str, description: dict, overwrite: bool) -> None:
    """Claims ``workdir`` for ``description``; refuses one written by another plan.

    With ``overwrite``, a workdir of another plan is cleared first.

    Raises:
      ValueError: the workdir belongs to a different plan and ``overwrite`` is false.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "plan.json")
    wanted = json.loads(to_json(description))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
        if found != wanted:
            if not overwrite:
                changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                raise ValueError(
                    f"workdir {workdir!r} holds a run of a different plan (differs in {changed}); "
                    "use another workdir, or pass overwrite=True (CLI: --overwrite) to start over"
                )
            clear(workdir)
    atomic_write_text(path, to_json(wanted))


def clear(workdir: str) -> None:
    """Removes a run's state and results from ``workdir``."""
    for name in (_CHECKPOINT, f"{_CHECKPOINT}.new", f"{_CHECKPOINT}.old"):
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    shutil.rmtree(os.path.join(workdir, "backup"), ignore_errors=True)
    for name in ("results.json", "results.csv", "plan.json", "final.weights.h5"):
        if os.path.exists(os.path.join(workdir, name)):
            os.remove(os.path.join(workdir, name))


def _trackables(model: keras.Model) -> tf.train.Checkpoint:
    if model.optimizer is None:
        raise ValueError("compile the model before saving or restoring an IMP checkpoint")
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def save(workdir: str, model: keras.Model, state: dict) -> None:
    """Saves weights, masks, optimizer and ``state`` as one atomic unit."""
    final = os.path.join(workdir, _CHECKPOINT)
    new, old = f"{final}.new", f"{final}.old"
    shutil.rmtree(new, ignore_errors=True)
    _trackables(model).write(os.path.join(new, "ckpt"))
    atomic_write_text(os.path.join(new, _STATE), to_json(state))
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def _complete_checkpoint(workdir: str) -> str | None:
    for name in (_CHECKPOINT, f"{_CHECKPOINT}.old"):  # .old survives a kill between two renames
        path = os.path.join(workdir, name)
        if os.path.exists(os.path.join(path, _STATE)):
            return path
    return None


def load_state(workdir: str) -> dict | None:
    """The saved state, or ``None`` when the workdir has no checkpoint."""
    path = _complete_checkpoint(workdir)
    if path is None:
        return None
    with open(os.path.join(path, _STATE), encoding="utf-8") as handle:
        return json.load(handle)


def restore(workdir: str, model: keras.Model) -> dict | None:
    """Restores weights, masks and optimizer; returns the saved state (``None``: nothing saved)."""
    path = _complete_checkpoint(workdir)
    if path is None:
        return None
    status = _trackables(model).read(os.path.join(path, "ckpt"))
    status.assert_existing_objects_matched()
    with open(os.path.join(path, _STATE), encoding="utf-8") as handle:
        return json.load(handle)
