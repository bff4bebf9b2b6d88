"""The one door to private or undocumented attributes of TensorFlow, tf_keras, tfmot and Keras 3.

Some things tfimp needs have no public API (MultiHeadAttention's projection
layers, a layer's direct sublayers, whether a model is a graph network).
Every such access goes through :func:`attribute` here, so that when an
upstream release renames or removes one, tfimp fails at once with a message
that names the attribute and the installed versions, instead of silently
doing nothing.
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


def is_autocast_variable(variable: Any) -> bool:
    """A mixed-precision ``AutoCastVariable`` (its class is not exported by tf_keras)."""
    return any(klass.__name__ == "AutoCastVariable" for klass in type(variable).__mro__)


def autocast_inner(variable: Any) -> Any:
    """The float32 variable an ``AutoCastVariable`` wraps."""
    return attribute(variable, "_variable", what="the float32 variable inside a mixed-precision AutoCastVariable")


def in_multi_worker_mode(strategy: Any) -> bool:
    """Whether ``strategy`` spans several workers (tf.distribute has no public way to ask)."""
    return bool(attribute(strategy.extended, "_in_multi_worker_mode",
                          what="whether a distribution strategy spans several workers")())


def flatten_layers(layer: Any, *, recursive: bool) -> list:
    """``layer``'s sublayers (direct, or all below it), in tracking order, without the layer itself."""
    return list(attribute(layer, "_flatten_layers", what="the sublayers of a layer")(include_self=False,
                                                                                      recursive=recursive))


def is_graph_network(model: Any) -> bool:
    """Whether a tf_keras ``Model`` is functional (built from a graph of layers)."""
    return bool(attribute(model, "_is_graph_network", what="whether a model is functional"))


def save_spec(model: Any):
    """The input spec a subclassed model was first called with, or ``None`` when it was never called."""
    return attribute(model, "_get_save_spec", what="the input shape a subclassed model was called with")(
        dynamic_batch=False)


def optimizer_learning_rate(optimizer: Any):
    """What a tf_keras optimizer holds as its learning rate: a schedule object, or the variable of the current rate."""
    return attribute(optimizer, "_learning_rate", what="the learning-rate schedule an optimizer was compiled with")


def set_optimizer_schedule(optimizer: Any, schedule: Any) -> None:
    """Makes ``schedule`` the learning rate of an optimizer created with a number, as its constructor would have."""
    build = attribute(optimizer, "_build_learning_rate", what="how an optimizer stores a learning-rate schedule")
    set_attribute(optimizer, "_learning_rate", build(schedule), what="an optimizer's learning-rate schedule")


def slot_index(optimizer: Any, variable: Any) -> int:
    """The index of ``variable``'s slots in a tf_keras optimizer's slot lists (e.g. ``momentums``)."""
    index = attribute(optimizer, "_index_dict", what="where an optimizer keeps a variable's slots")
    key = attribute(optimizer, "_var_key", what="an optimizer's key for a variable")
    return index[key(variable)]


def running_callbacks(callback: Any) -> list | None:
    """The callbacks of the ``fit`` that is calling ``callback`` now, or ``None`` when none is.

    Keras gives a callback no handle on its siblings; the ``CallbackList`` that
    ``fit`` builds is the caller of the callback's hook (through our helper), so
    it is found on the call stack. ``None`` (not ``[]``) when it is not there,
    so the caller can say it could not check instead of assuming none.
    """
    frame = sys._getframe(1)
    for _ in range(6):  # CallbackList.on_train_begin -> callback.on_train_begin -> helper -> here
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if type(owner).__name__ == "CallbackList" and hasattr(owner, "callbacks"):
            return list(owner.callbacks)
        frame = frame.f_back
    return None


def swap_batchnorm_momentum(layer: Any, momentum: Any) -> Any:
    """Sets a tf_keras BatchNormalization's momentum to ``momentum``; returns the one it had.

    BatchNorm re-estimation sets a ``tf.Variable`` as the momentum so that one
    traced pass reads a new value at every batch; Keras would track a variable
    set as an attribute (and save it), so the attribute is set past its
    tracking. The check below fails loudly if the layer stops reading the
    attribute we set (a renamed or cached momentum).
    """
    previous = attribute(layer, "momentum", what="a BatchNormalization layer's moving-average momentum")
    object.__setattr__(layer, "momentum", momentum)  # bypass Keras' attribute tracking
    if layer.__dict__.get("momentum", _MISSING) is not momentum:
        raise UpstreamChanged(f"setting {type(layer).__name__}.momentum did not take ({versions()})")
    return previous


def pruning_triples(wrapper: Any) -> list:
    """tfmot's ``PruneLowMagnitude.pruning_vars``: one ``(weight, mask, threshold)`` per pruned weight.

    The attribute has no underscore but no documented layout either; a
    change of it would make tfimp mask the wrong variable, so it is checked.
    """
    triples = list(attribute(wrapper, "pruning_vars", what="a tfmot wrapper's (weight, mask, threshold) variables"))
    for triple in triples:
        if len(triple) != 3 or tuple(triple[0].shape) != tuple(triple[1].shape):
            raise UpstreamChanged(
                f"tfmot's PruneLowMagnitude.pruning_vars no longer holds (weight, mask, threshold) triples "
                f"with the mask shaped as the weight ({versions()})")
    return triples


def reset_compiled_functions(model: Any) -> None:
    """Drops the evaluation and prediction functions a tf_keras model traced, so the next call retraces."""
    for name in ("make_test_function", "make_predict_function"):
        attribute(model, name, what="how a tf_keras model rebuilds its traced functions")(force=True)


# --------------------------------------------------------------------------
# Keras 3
# --------------------------------------------------------------------------


def keras3_replace_tracked_layer(container: Any, old: Any, new: Any) -> None:
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


def keras3_is_functional(model: Any) -> bool:
    """Whether a Keras 3 model is Sequential or functional (what ``clone_model`` can rebuild)."""
    import keras

    if isinstance(model, keras.Sequential):
        return True
    functional = sys.modules.get("keras.src.models.functional")
    cls = attribute(functional, "Functional", what="Keras 3's functional model class") if functional else None
    return cls is not None and isinstance(model, cls)


def keras3_conv_lstm_cell_class() -> type:
    """Keras 3's ConvLSTM cell class, which is not exported (``keras.layers.ConvLSTM*`` build it in ``__init__``).

    Read from its module rather than from a throwaway layer: constructing a
    ConvLSTM layer draws from Keras' global seed (its dropout seed generator),
    so ``keras.utils.set_random_seed(0)`` followed by ``import tfimp``'s Keras 3
    coverage would give other initial weights than without it.
    """
    import importlib

    module = importlib.import_module("keras.src.layers.rnn.conv_lstm")
    return attribute(module, "ConvLSTMCell", what="Keras 3's ConvLSTM cell class, to make it prunable")


def keras3_slot_variables(optimizer: Any, variable: Any) -> list:
    """The slot variables (momentum, Adam's moments, ...) a built Keras 3 optimizer keeps for ``variable``.

    Keras 3 optimizers keep each kind of slot in a list aligned with the
    variables they train (``_get_variable_index``); which attributes hold
    those lists differs by optimizer (``momentums``, ``_momentums``,
    ``_velocities``, ...), so every such list of the optimizer's own is taken.
    An optimizer without any (plain SGD) has none.
    """
    import keras

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


def keras3_retrack_torch_parameters(model: Any) -> None:
    """On the torch backend, makes every layer list its current variables as torch parameters again.

    Keras' ``Model.quantize`` does this after it changes layers: torch
    modules keep the parameters they were first given.
    """
    for layer in flatten_layers(model, recursive=True) + [model]:
        attribute(layer, "_track_variables", what="how a Keras 3 torch layer lists its parameters")()
