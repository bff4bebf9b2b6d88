"""The one door to private or undocumented attributes of TensorFlow, tf_keras and tfmot (the tf_keras front end).

Every access fails loudly, naming the attribute and the installed versions,
when an upstream release renamed or removed it (:mod:`tfimp.core.upstream`).
"""

from __future__ import annotations

import sys
from typing import Any

from tfimp.core.upstream import UpstreamChanged, attribute, set_attribute, versions  # noqa: F401

_MISSING = object()


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


def tf_keras_is_bound(tensorflow: Any) -> bool:
    """Whether TensorFlow already resolved ``tf.keras`` (its lazy loader ran), without resolving it now."""
    loader = vars(tensorflow).get("keras")
    if loader is None or not type(loader).__name__.endswith("LazyLoader"):
        return loader is not None
    return bool(attribute(loader, "_tfll_initialized", what="whether TensorFlow has resolved tf.keras"))
