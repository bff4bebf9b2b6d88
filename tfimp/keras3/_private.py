"""The one door to private or undocumented attributes of Keras 3 (the Keras 3 front end).

Every access fails loudly, naming the attribute and the installed versions,
when an upstream release renamed or removed it (:mod:`tfimp.core.upstream`).
Keras' own LoRA and quantization code changes built layers the same way.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import keras

from tfimp.core.upstream import UpstreamChanged, attribute, set_attribute, versions  # noqa: F401


def flatten_layers(layer: Any, *, recursive: bool) -> list:
    """``layer``'s sublayers (direct, or all below it), in tracking order, without the layer itself."""
    return list(attribute(layer, "_flatten_layers", what="the sublayers of a layer")(include_self=False,
                                                                                      recursive=recursive))


def optimizer_learning_rate(optimizer: Any):
    """What a Keras 3 optimizer holds as its learning rate: a schedule object, or the variable of the current rate."""
    return attribute(optimizer, "_learning_rate", what="the learning-rate schedule an optimizer was compiled with")


def replace_tracked_layer(container: Any, old: Any, new: Any) -> None:
    """Makes Keras 3's tracking of ``container`` list ``new`` where it listed ``old``, in the same place.

    Keras 3 keeps a layer's sublayers in its tracker (the order its weights
    are listed, saved and loaded in) and locks it once the layer is built;
    Keras' own LoRA and quantization unlock it the same way to add state to
    built layers.
    """
    tracker = attribute(container, "_tracker", what="the sublayers a Keras 3 layer tracks")
    locked = bool(attribute(tracker, "locked", what="whether a Keras 3 layer's tracking is locked"))
    tracker.unlock()
    try:
        if tracker.is_in_store("layers", old):
            tracker.replace_tracked_value("layers", old, new)
        else:
            tracker.add_to_store("layers", new)
    finally:
        if locked:
            tracker.lock()


def is_functional(model: Any) -> bool:
    """Whether a Keras 3 model is Sequential or functional (what ``clone_model`` can rebuild)."""
    if isinstance(model, keras.Sequential):
        return True
    functional = sys.modules.get("keras.src.models.functional")
    cls = attribute(functional, "Functional", what="Keras 3's functional model class") if functional else None
    return cls is not None and isinstance(model, cls)


def conv_lstm_cell_class() -> type:
    """Keras 3's ConvLSTM cell class, which is not exported (``keras.layers.ConvLSTM*`` build it in ``__init__``).

    Read from its module rather than from a throwaway layer: constructing a
    ConvLSTM layer draws from Keras' global seed (its dropout seed generator),
    so ``keras.utils.set_random_seed(0)`` followed by ``import tfimp``'s Keras 3
    coverage would give other initial weights than without it.
    """
    module = importlib.import_module("keras.src.layers.rnn.conv_lstm")
    return attribute(module, "ConvLSTMCell", what="Keras 3's ConvLSTM cell class, to make it prunable")


def slot_variables(optimizer: Any, variable: Any) -> list:
    """The slot variables (momentum, Adam's moments, ...) a built Keras 3 optimizer keeps for ``variable``.

    Keras 3 optimizers keep each kind of slot in a list aligned with the
    variables they train (``_get_variable_index``); which attributes hold
    those lists differs by optimizer (``momentums``, ``_momentums``,
    ``_velocities``, ...), so every such list of the optimizer's own is taken.
    An optimizer without any (plain SGD) has none.
    """
    trained = list(attribute(optimizer, "_trainable_variables", what="the variables a Keras 3 optimizer trains"))
    index = attribute(optimizer, "_get_variable_index", what="where a Keras 3 optimizer keeps a variable's slots")(
        variable)
    slots = []
    for value in vars(optimizer).values():
        if not isinstance(value, (list, tuple)) or len(value) != len(trained) or value is trained:
            continue
        slot = value[index]
        if (isinstance(slot, keras.Variable) and slot is not variable
                and tuple(slot.shape) == tuple(variable.shape)):
            slots.append(slot)
    return slots


def retrack_torch_parameters(model: Any) -> None:
    """On the torch backend, makes every layer list its current variables as torch parameters again.

    Keras' ``Model.quantize`` does this after it changes layers: torch
    modules keep the parameters they were first given.
    """
    for layer in flatten_layers(model, recursive=True) + [model]:
        attribute(layer, "_track_variables", what="how a Keras 3 torch layer lists its parameters")()
