"""The ``channels`` structure on tf_keras: a pruned channel's bias and following BatchNormalization zeroed."""

from __future__ import annotations

import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.tf_keras import slimming as _slimming
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras


def nodes(model: keras.Model):
    """Reads the model's graph for :mod:`tfimp.core.channel_graph` (None for a subclassed model)."""
    if not wrapping.is_graph_model(model):
        return None
    return lambda: _graph.read_nodes(model.get_config(), isinstance(model, keras.Sequential), _slimming._inbound,
                                     _describe(model))


def zero(variable, channels: np.ndarray) -> None:
    """Zeroes ``variable``'s last axis at ``channels``."""
    value = variable.numpy()
    value[..., channels] = 0
    variable.assign(value)


def _describe(model: keras.Model):
    def describe(name):
        layer = model.get_layer(name)
        inner = layer.layer if isinstance(layer, wrapping.PruneLowMagnitude) else layer
        return type(inner).__name__, inner.get_config(), tuple(layer.output.shape)

    return describe
