"""The ``channels`` structure on Keras 3: a pruned channel's bias and following BatchNormalization zeroed."""

from __future__ import annotations

import keras
import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.keras3 import _private
from tfimp.keras3.wrapper import MaskedLayer


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
