"""The ``channels`` structure on tf_keras: a pruned channel's bias and following BatchNormalization zeroed."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.tf_keras import slimming as _slimming
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras


def zero_dead_channels(model: keras.Model, kernels: Sequence, keeps: Sequence[np.ndarray]) -> None:
    """Zeroes the bias of every pruned output channel, and the gamma and beta of BatchNormalization reading it.

    So a pruned channel outputs exactly zero. The BatchNormalization layers are
    found on the model's graph (Sequential or functional, top level); where it
    cannot be read, only the biases are zeroed.
    """
    nodes = (lambda: _graph.read_nodes(model.get_config(), isinstance(model, keras.Sequential), _slimming._inbound,
                                       _describe(model))) if wrapping.is_graph_model(model) else None
    _graph.zero_dead_channels(kernels, keeps, nodes=nodes, get_layer=model.get_layer, zero=_zero)


def _zero(variable, channels: np.ndarray) -> None:
    value = variable.numpy()
    value[..., channels] = 0
    variable.assign(value)


def _describe(model: keras.Model):
    def describe(name):
        layer = model.get_layer(name)
        inner = layer.layer if isinstance(layer, wrapping.PruneLowMagnitude) else layer
        return type(inner).__name__, inner.get_config(), tuple(layer.output.shape)

    return describe
