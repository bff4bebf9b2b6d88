"""The ``channels`` structure on Keras 3: a pruned channel's bias and following BatchNormalization zeroed."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.keras3 import _private
from tfimp.keras3.wrapper import MaskedLayer


def zero_dead_channels(model: keras.Model, kernels: Sequence, keeps: Sequence[np.ndarray]) -> None:
    """Zeroes the bias of every pruned output channel, and the gamma and beta of BatchNormalization reading it.

    So a pruned channel outputs exactly zero (the same rules as on tf_keras:
    ``tfimp.tf_keras.channels``); where the graph cannot be read (a subclassed
    model), only the biases are zeroed.
    """
    nodes = (lambda: _graph.read_nodes(model.get_config(), isinstance(model, keras.Sequential), inbound,
                                       _describe(model))) if _private.is_functional(model) else None
    _graph.zero_dead_channels(kernels, keeps, nodes=nodes, get_layer=model.get_layer, zero=_zero)


def _zero(variable, channels: np.ndarray) -> None:
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
