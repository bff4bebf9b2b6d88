"""A run's state on disk: atomic, readable, one unit per epoch and per cycle.

The workdir's layout, identity and lock live in :mod:`tfimp.workdir`; this
module writes and reads its contents. The checkpoint directory is written
beside the old one and swapped in by renames, so a kill at any moment leaves
either the previous or the new epoch's complete state, never a mix. Keras'
``BackupAndRestore`` saves the model and epoch but cannot carry the
per-cycle rows and the cycle state in the same atomic unit, hence this
module. Each finished cycle is also written as its own directory
(``cycle_N/``), renamed into place once complete, from which
:func:`load_cycle` rebuilds the model at that point.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from typing import Any, Sequence

from tfimp import workdir as _workdir
from tfimp._backend import keras, tf

_CHECKPOINT = _workdir.CHECKPOINT
_STATE = "state.json"
atomic_write_text = _workdir.atomic_write_text


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=_json_default)


def write_results(workdir: str, rows: Sequence[dict], extra: dict | None = None) -> None:
    """Writes ``results.json`` (rows + ``extra``) and ``results.csv`` atomically."""
    atomic_write_text(os.path.join(workdir, _workdir.RESULTS_JSON), to_json({**(extra or {}), "rows": list(rows)}))
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(workdir, _workdir.RESULTS_CSV), buffer.getvalue())


def load_results(workdir: str) -> list[dict] | None:
    """The rows of ``results.json`` in ``workdir``, or ``None`` if there is none."""
    found = _workdir.read_json(os.path.join(workdir, _workdir.RESULTS_JSON))
    return None if found is None else found["rows"]


def write_cycle(workdir: str, model: keras.Model, row: dict) -> str:
    """Writes finished cycle ``row["cycle"]`` as ``cycle_N/`` (weights and masks, architecture, row, report).

    Built in ``cycle_N.tmp`` and renamed into place, so a ``cycle_N/`` is
    always complete. Returns its path.
    """
    from tfimp import report as _report  # report imports this module's writer
    from tfimp import tfmot_glue

    final = _workdir.cycle_dir(workdir, row["cycle"])
    tmp = f"{final}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_weights(os.path.join(tmp, _workdir.CYCLE_WEIGHTS))
    if tfmot_glue.is_graph_model(model):  # subclassed: load_cycle needs the user's model object
        atomic_write_text(os.path.join(tmp, _workdir.CYCLE_MODEL), model.to_json())
    try:
        atomic_write_text(os.path.join(tmp, _workdir.CYCLE_REPORT), _report.model_report(model).to_json())
    except ValueError:  # a layer whose output size is unknown: no FLOP count possible
        pass
    atomic_write_text(os.path.join(tmp, _workdir.CYCLE_ROW), to_json(row))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def load_cycle(workdir: str, cycle: int, model: keras.Model | None = None) -> keras.Model:
    """The wrapped model as it was at the end of ``cycle`` of the run in ``workdir``.

    Without ``model``, the model is rebuilt from the architecture saved with
    the cycle (functional and sequential models). For a subclassed model,
    pass a built instance of it (wrapped or not); its weights and masks are
    overwritten. Uncompiled either way.

    Raises:
      FileNotFoundError: no such finished cycle (the message lists those there are).
      ValueError: the cycle has no saved architecture and no ``model`` was given.
    """
    from tfimp import tfmot_glue

    directory = _workdir.cycle_dir(workdir, cycle)
    if not os.path.exists(os.path.join(directory, _workdir.CYCLE_ROW)):
        raise FileNotFoundError(f"workdir {workdir!r} has no finished cycle {cycle}; "
                                f"finished cycles: {_workdir.cycles(workdir)}")
    if model is None:
        architecture = os.path.join(directory, _workdir.CYCLE_MODEL)
        if not os.path.exists(architecture):
            raise ValueError(f"cycle {cycle} in {workdir!r} was saved from a subclassed model: pass a built "
                             "instance as load_cycle(workdir, cycle, model=...)")
        with open(architecture, encoding="utf-8") as handle:
            with keras.utils.custom_object_scope(tfmot_glue.custom_objects()):
                model = keras.models.model_from_json(handle.read())
    elif not tfmot_glue.wrappers(model):
        model = tfmot_glue.wrap(model)
    model.load_weights(os.path.join(directory, _workdir.CYCLE_WEIGHTS))
    tfmot_glue.apply_masks(tfmot_glue.prunable_kernels(model))
    return model


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
