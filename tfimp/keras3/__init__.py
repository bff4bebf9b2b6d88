"""tfimp's Keras 3 front end: the same exact IMP on the TensorFlow, JAX and PyTorch backends.

tfmot wraps only tf_keras models, so this front end brings its own wrapper
(:class:`tfimp.keras3.wrapper.MaskedLayer`), which masks any weight of any
layer in the forward pass on every backend, and the rest of tfimp around it
in ``keras.ops``. ``from tfimp.keras3 import wrap, prune, IMP`` names it
outright; ``tfimp.wrap`` and the other model functions pick it for a Keras 3
model, and ``tfimp.callbacks``, ``tfimp.optimizers`` and ``tfimp.lr`` are
its modules in a process whose Keras is Keras 3.

Importing it imports Keras 3 and its backend (``KERAS_BACKEND``), never
TensorFlow unless that is the backend; its names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

import keras

if not str(keras.__version__).startswith("3."):
    raise ImportError(f"tfimp.keras3 needs Keras 3, found keras {keras.__version__}")

#: Public name -> the module of this front end that defines it.
_NAMES = {**dict.fromkeys(("wrap", "prune", "strip", "sparsity", "layer_sparsity", "load_model"), "masks"),
          "IMP": "imp", "Dense": "imp", "DuringTraining": "baselines", "load_cycle": "checkpoint", "slim": "slimming"}

__all__ = sorted([*_NAMES, "Plan"])


def __getattr__(name: str) -> Any:
    """Imports the module behind ``name`` on first use (PEP 562)."""
    if name == "Plan":
        from tfimp.core.plan import Plan  # noqa: PLC0415

        return Plan
    if name not in _NAMES:
        raise AttributeError(f"module 'tfimp.keras3' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tfimp.keras3.{_NAMES[name]}"), name)
    globals()[name] = value
    return value
