"""A Keras 3 run's state on disk: per-epoch saves, ``cycle_N/`` directories and ``load_cycle``.

The units and their order are :mod:`tfimp.core.checkpoint`'s and
:mod:`tfimp.core.workdir`'s (the same layout as tf_keras). The payload is
Keras 3's own ``.weights.h5``, which holds the model's variables (weights,
masks, seed generators) and the optimizer's (slots, step counter), so a run
killed at any moment resumes exactly. ``cycle_N/`` holds the wrapped model's
weights, its architecture (``model.json``, when Keras can serialise it) and
``row.json``, written last.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np

from tfimp.keras3 import _private
from tfimp.core import checkpoint as _core_checkpoint
from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import report as _report
from tfimp.keras3.wrapper import MaskedLayer, ReparamMaskedLayer


save_weights = _core_checkpoint.save_weights
load_weights = _core_checkpoint.load_weights


def build_optimizer(model: keras.Model) -> None:
    """Creates the optimizer's slots, so a save restores them (Keras builds them lazily, at the first step)."""
    optimizer = model.optimizer
    if optimizer is None:
        raise ValueError("compile the model before saving or restoring an IMP checkpoint")
    if not optimizer.built:
        optimizer.build(model.trainable_variables)


def rng_states(model: keras.Model) -> list:
    """The model's variables that are not weights: the states of its seed generators (dropout, noise, ...)."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


#: The npz entry of torch's global generator: Keras' torch backend draws unseeded dropout from it.
_TORCH_GLOBAL_RNG = "torch_global_rng"


def global_rng_state() -> Optional[np.ndarray]:
    """The state of the backend's global generator that Keras draws from outside its seed generators, or None.

    On the torch backend a Dropout without a seed runs ``torch.nn.functional.dropout`` (Keras' fast path),
    which draws from torch's global generator; the other backends draw only through seed generators.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch  # noqa: PLC0415  (torch backend only)

    return torch.get_rng_state().numpy()


def set_global_rng_state(state: Optional[np.ndarray]) -> None:
    """Puts back a :func:`global_rng_state` (nothing for None)."""
    if state is not None:
        import torch  # noqa: PLC0415  (torch backend only)

        torch.set_rng_state(torch.from_numpy(np.array(state, dtype=np.uint8)))


def _write_payload(model: keras.Model, directory: str) -> None:
    save_weights(model, os.path.join(directory, _workdir.KERAS3_WEIGHTS))
    state = global_rng_state()
    extra = {} if state is None else {_TORCH_GLOBAL_RNG: state}
    with _storage.local_file(os.path.join(directory, _workdir.KERAS3_RNG_STATES), "w") as local:
        with open(local, "wb") as handle:
            np.savez(handle, *[keras.ops.convert_to_numpy(v.value) for v in rng_states(model)], **extra)


def _read_payload(model: keras.Model, directory: str) -> None:
    load_weights(model, os.path.join(directory, _workdir.KERAS3_WEIGHTS))
    with _storage.local_file(os.path.join(directory, _workdir.KERAS3_RNG_STATES), "r") as local:
        with np.load(local) as saved:
            states = rng_states(model)
            held = [name for name in saved.files if name.startswith("arr_")]
            if len(held) != len(states):
                raise ValueError(f"the checkpoint in {directory!r} holds {len(held)} random-generator states, "
                                 f"the model has {len(states)}: it was saved from another model")
            for index, variable in enumerate(states):
                variable.assign(saved[f"arr_{index}"])
            if keras.backend.backend() == "torch" and _TORCH_GLOBAL_RNG in saved.files:
                set_global_rng_state(saved[_TORCH_GLOBAL_RNG])


def save(workdir: str, model: keras.Model, state: dict) -> None:
    """Saves weights, masks, optimizer, seed generators and ``state`` as one unit (``checkpoint/save_K/``)."""
    build_optimizer(model)
    _masks._sync_training_state(model)
    _core_checkpoint.save(workdir, lambda directory: _write_payload(model, directory), state)


def restore(workdir: str, model: keras.Model) -> Optional[dict]:
    """Restores weights, masks, optimizer and seed generators from the newest complete save; returns its state."""
    build_optimizer(model)
    return _core_checkpoint.restore(workdir, lambda directory: _read_payload(model, directory))


load_state = _core_checkpoint.load_state


def write_cycle(workdir: str, model: keras.Model, row: dict) -> str:
    """Writes finished cycle ``row["cycle"]`` as ``cycle_N/`` (weights, architecture, model report; ``files.json``,
    then ``row.json`` last); returns its path."""
    def write_payload(directory: str) -> None:
        save_weights(model, os.path.join(directory, _workdir.KERAS3_WEIGHTS))
        if _private.is_functional(model):
            _storage.atomic_write_text(os.path.join(directory, _workdir.CYCLE_MODEL), model.to_json())
        try:
            _storage.atomic_write_text(os.path.join(directory, _workdir.CYCLE_REPORT),
                                       _report.model_report(model, row.get("structure", "unstructured")).to_json())
        except ValueError:  # a layer whose output size is unknown: no FLOP count possible
            pass

    return _core_checkpoint.write_cycle(workdir, row, write_payload)


def load_cycle(workdir: str, cycle: int, model: Optional[keras.Model] = None) -> keras.Model:
    """The wrapped model as it was at the end of ``cycle`` (see the tf_keras ``tfimp.load_cycle``); uncompiled.

    Raises:
      FileNotFoundError: no such finished cycle (the message lists those there are).
      ValueError: the cycle has no saved architecture and no ``model`` was given.
    """
    directory = _core_checkpoint.finished_cycle_dir(workdir, cycle)
    if model is None:
        # model.json may carry the compile config (TorchSGD, a Tabulated rate): their classes register on import.
        from tfimp.keras3 import lr, optimizers  # noqa: F401, PLC0415
        architecture = _core_checkpoint.cycle_architecture(workdir, cycle)
        model = keras.models.model_from_json(architecture, custom_objects={"tfimp>MaskedLayer": MaskedLayer,
                                                                         "tfimp>ReparamMaskedLayer": ReparamMaskedLayer})
    elif not _masks.wrappers(model):
        model = _masks.wrap(model)
    load_weights(model, os.path.join(directory, _workdir.KERAS3_WEIGHTS))
    return model
