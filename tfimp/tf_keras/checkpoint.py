"""A run's state on disk: atomic, readable, one unit per epoch and per cycle.

The workdir's layout, identity, lock and file-system functions live in
:mod:`tfimp.workdir`; this module writes and reads its contents, through
``tf.io.gfile`` (any file system TensorFlow has). Each epoch's checkpoint is
a new directory ``checkpoint/save_K/`` whose ``state.json`` is written last:
a kill at any moment leaves the previous complete save or the new one, never
a mix, and no directory is ever renamed (object stores cannot do that
atomically). Keras' ``BackupAndRestore`` saves the model and epoch but cannot
carry the per-cycle rows and the cycle state in the same unit, hence this
module. Each finished cycle is also written as its own directory
(``cycle_N/``, ``row.json`` last), from which :func:`load_cycle` rebuilds the
model at that point.
"""

from __future__ import annotations

import os

from tfimp.tf_keras import report as _report
from tfimp.core import storage as _storage
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras, tf
from tfimp.core import checkpoint as _core_checkpoint

atomic_write_text = _storage.atomic_write_text


save_weights = _core_checkpoint.save_weights
load_weights = _core_checkpoint.load_weights


def write_cycle(workdir: str, model: keras.Model, row: dict) -> str:
    """Writes finished cycle ``row["cycle"]`` as ``cycle_N/`` (weights and masks, architecture, report, row).

    ``row.json`` is written last (after ``files.json``, the digests the
    files are checked against when read back): a ``cycle_N/`` without it (a
    kill while writing) is not a finished cycle and is replaced when the
    cycle is written again. Returns its path.
    """
    def write_payload(directory: str) -> None:
        save_weights(model, os.path.join(directory, _workdir.CYCLE_WEIGHTS))
        if wrapping.is_graph_model(model):  # subclassed: load_cycle needs the user's model object
            atomic_write_text(os.path.join(directory, _workdir.CYCLE_MODEL), model.to_json())
        try:
            atomic_write_text(os.path.join(directory, _workdir.CYCLE_REPORT),
                              _report.model_report(model, row.get("structure", "unstructured")).to_json())
        except ValueError:  # a layer whose output size is unknown: no FLOP count possible
            pass

    return _core_checkpoint.write_cycle(workdir, row, write_payload)


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
    directory = _core_checkpoint.finished_cycle_dir(workdir, cycle)
    if model is None:
        architecture = _core_checkpoint.cycle_architecture(workdir, cycle)
        with keras.utils.custom_object_scope(wrapping.custom_objects()):
            model = keras.models.model_from_json(architecture)
    elif not wrapping.wrappers(model):
        model = wrapping.wrap(model)
    load_weights(model, os.path.join(directory, _workdir.CYCLE_WEIGHTS))
    wrapping.apply_masks(wrapping.prunable_kernels(model))
    return model


def _trackables(model: keras.Model) -> tf.train.Checkpoint:
    if model.optimizer is None:
        raise ValueError("compile the model before saving or restoring an IMP checkpoint")
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def save(workdir: str, model: keras.Model, state: dict) -> None:
    """Saves weights, masks, optimizer and ``state`` as one unit: a new ``save_K/``, ``state.json`` last."""
    trackables = _trackables(model)
    _core_checkpoint.save(workdir, lambda directory: trackables.write(os.path.join(directory, "ckpt")), state)


load_state = _core_checkpoint.load_state


def restore(workdir: str, model: keras.Model) -> dict | None:
    """Restores weights, masks and optimizer; returns the saved state (``None``: nothing saved)."""
    trackables = _trackables(model)
    return _core_checkpoint.restore(
        workdir, lambda directory: trackables.read(os.path.join(directory, "ckpt")).assert_existing_objects_matched())
