"""The ``channels`` structure on Keras 3: a pruned channel's bias and following BatchNormalization zeroed and held.

How they are held at zero while the model trains: by a variable constraint
(:class:`HoldChannels`), which every Keras 3 optimizer applies right after
each update, on every backend, so a user's own ``fit`` gets it too. Why not a
mask in the forward pass, as :class:`~tfimp.keras3.wrapper.MaskedLayer` does
for kernels: a BatchNormalization is not wrapped, and wrapping it would cost
every unstructured run a layer. Why not a mask variable: on JAX the optimizer
step runs statelessly over the trainable variables only, so a constraint
reading a non-trainable variable would see the value it had when the step
was traced. The constraint therefore reads the *kernels* (trainable, so
current in every step, and exactly zero where pruned) and derives the dead
channels from them, through the graph for a BatchNormalization: a later
prune changes nothing in the traced step; only installing the constraints
(once, at the first prune with channels) retraces the train function. An
unstructured run never installs them: it costs nothing there.
"""


from __future__ import annotations

import keras
import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.keras3 import _private
from tfimp.keras3.wrapper import MaskedLayer

ops = keras.ops


def nodes(model: keras.Model):
    """Reads the model's graph for :mod:`tfimp.core.channel_graph` (None for a subclassed model)."""
    if not _private.is_functional(model):
        return None
    return lambda: _graph.read_nodes(model.get_config(), isinstance(model, keras.Sequential), inbound,
                                     _describe(model))


def zero(variable, channels: np.ndarray) -> None:
    """Zeroes ``variable``'s last axis at ``channels``."""
    value = np.array(keras.ops.convert_to_numpy(variable.value))
    value[..., channels] = 0
    variable.assign(value)


def _describe(model: keras.Model):
    def describe(name):
        layer = model.get_layer(name)
        inner = layer.layer if isinstance(layer, MaskedLayer) else layer
        return type(inner).__name__, inner.get_config(), tuple(layer.output.shape)

    return describe


def _histories(value) -> list:
    """The ``keras_history`` of every Keras tensor in a node's serialized arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"]]
        return [h for item in value.values() for h in _histories(item)]
    if isinstance(value, (list, tuple)):
        return [h for item in value for h in _histories(item)]
    return []


def inbound(entry: dict) -> list[tuple[list[list], list[str]]]:
    """Keras 3's ``inbound_nodes``: per call, ``{"args": [...], "kwargs": {...}}`` holding serialized tensors."""
    return [(_histories(node.get("args", [])), [key for key, value in node.get("kwargs", {}).items() if _histories(value)])
            for node in entry.get("inbound_nodes") or []]


#: The dead-channel arithmetic in ``keras.ops``, run inside the optimizer step.
VECTORS = _graph.VectorOps(lambda vectors: ops.all(ops.stack(vectors), axis=0), lambda vectors: ops.concatenate(vectors),
                           lambda vector, factor: ops.repeat(vector, factor), lambda width: ops.zeros((width,), "bool"))


def _dead_columns(kernel):
    value = kernel.weight.value  # the step's current value, inside a stateless (JAX) optimizer step too
    return ops.all(ops.equal(ops.reshape(value, (-1, value.shape[-1])), 0), axis=0)


class HoldChannels:
    """Variable constraint ``v -> constraint(v) * (not dead())`` on a bias or a BatchNormalization's gamma or beta."""

    def __init__(self, dead, inner):
        self.dead = dead
        self.inner = inner

    def __call__(self, value):
        value = self.inner(value) if self.inner is not None else value
        return ops.multiply(value, ops.cast(ops.logical_not(self.dead()), value.dtype))


def hold(model: keras.Model, kernels: list) -> int:
    """Holds the bias of every prunable filter and the gamma and beta of every BatchNormalization after one at zero
    wherever their channel is pruned, after every optimizer step (``tfimp.prune(..., structure="channels")`` and
    ``tfimp.load_model`` call it). ``kernels``: the model's prunable kernels
    (:func:`tfimp.keras3.masks.prunable_kernels`). Returns how many variables it newly holds."""
    new = 0
    for variable, dead in _graph.holds(kernels, nodes(model), get_layer=model.get_layer,
                                       dead_columns_of=_dead_columns, vectors=VECTORS):
        inner = variable.constraint
        if isinstance(inner, HoldChannels):
            inner = inner.inner
        else:
            new += 1
        variable.constraint = HoldChannels(dead, inner)
    if new and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)  # a traced step applies only the constraints it saw
    return new


def release(model: keras.Model) -> None:
    """Removes :class:`HoldChannels` from the model's variables (their own constraints, if any, come back)."""
    for variable in model.variables:
        if isinstance(variable.constraint, HoldChannels):
            variable.constraint = variable.constraint.inner
