"""Reading private attributes of upstream objects so that a rename fails loudly: the front ends' adapters use it.

Some things tfimp needs have no public API (MultiHeadAttention's projection
layers, a layer's direct sublayers, whether a model is a graph network).
Each front end reaches them through its one adapter module
(:mod:`tfimp.tf_keras._private`, :mod:`tfimp.keras3._private`), and every
such access ends in :func:`attribute` here, so that when an upstream release
renames or removes one, tfimp fails at once with a message that names the
attribute and the installed versions, instead of silently doing nothing.
This module imports no framework: it asks only modules already imported.
"""

from __future__ import annotations

import sys
from typing import Any

_MISSING = object()


class UpstreamChanged(AttributeError):
    """A private attribute tfimp relies on is gone from an upstream object."""


def versions() -> str:
    """The installed versions of the frameworks this process uses, for error messages.

    Only modules already imported are asked (asking must not import TensorFlow into a JAX process).
    """
    found = []
    for module_name, label in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras"),
                               ("tensorflow_model_optimization", "tfmot"), ("keras", "keras"),
                               ("jax", "jax"), ("torch", "torch")):
        module = sys.modules.get(module_name)
        if module is not None:
            found.append(f"{label} {getattr(module, '__version__', '?')}")
    return ", ".join(found) or "no framework imported"


def attribute(obj: Any, name: str, *, what: str) -> Any:
    """``getattr(obj, name)`` for a private attribute, failing loudly when it is gone.

    Args:
      obj: the upstream object.
      name: the private attribute.
      what: what tfimp reads it for (goes into the error message).

    Raises:
      UpstreamChanged: ``obj`` has no attribute ``name``.
    """
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        raise UpstreamChanged(
            f"tfimp reads {type(obj).__name__}.{name} ({what}), which this installation does not have "
            f"({versions()}); tfimp supports the versions its setup.py allows: please report this with "
            "the versions above")
    return value


def set_attribute(obj: Any, name: str, value: Any, *, what: str) -> None:
    """Sets a private attribute that must already exist (so a renamed one fails here instead of being ignored)."""
    attribute(obj, name, what=what)
    setattr(obj, name, value)
