"""Which weights of which Keras 3 layers tfimp prunes, by kind: the registry of layer types and their weights.

The same coverage as the tf_keras front end: ``dense`` (Dense, EinsumDense),
``conv`` (every convolution, transposed ones included, and the pointwise
kernel of SeparableConv), ``depthwise`` (DepthwiseConv and SeparableConv's
depthwise kernel), ``embedding``, ``attention`` (MultiHeadAttention's four
projection kernels) and ``rnn`` (SimpleRNN/GRU/LSTM cells' kernel and
recurrent kernel, also ConvLSTM, stacked cells, ``Bidirectional`` and
``TimeDistributed``). A layer type of your own joins with
``tfimp.coverage.register(MyLayer, {"kernel": "dense"})``.
"""

from __future__ import annotations

from typing import Iterable

import keras

from tfimp.keras3 import _private
from tfimp.core import coverage as _core
from tfimp.core.coverage import Spec

_REGISTRY = _core.SpecRegistry("keras3")


def register(layer_class: type, specs) -> None:
    """Makes the Keras 3 ``layer_class`` (and its subclasses) prunable (see ``SpecRegistry.register``).

    Raises:
      TypeError: ``layer_class`` is not a Keras 3 layer class.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"tfimp.coverage.register needs a Keras 3 layer class here, got {layer_class!r}")
    _REGISTRY.register(layer_class, specs)


def specs(layer: keras.layers.Layer, kinds: Iterable[str] | None = None) -> list[Spec]:
    """The prunable weights of ``layer`` (paths and kinds), restricted to ``kinds``; empty if none."""
    return _REGISTRY.specs(layer, kinds)


_RECURRENT_CELL_SPECS = {"kernel": "rnn", "recurrent_kernel": "rnn"}


_rnn_specs, _bidirectional_specs, _time_distributed_specs = _core.rnn_spec_functions(
    _REGISTRY, keras.layers.StackedRNNCells)


register(keras.layers.Dense, {"kernel": "dense"})
register(keras.layers.EinsumDense, {"kernel": "dense"})
register(keras.layers.Embedding, {"embeddings": "embedding"})
# The base classes are not exported: Conv's holds every convolution (transposed ones too); the depthwise and
# separable bases are registered as well and win by method resolution order.
register(keras.layers.Conv1D.__mro__[1], {"kernel": "conv"})
register(keras.layers.Conv1DTranspose.__mro__[1], {"kernel": "conv"})
register(keras.layers.DepthwiseConv2D.__mro__[1], {"kernel": "depthwise"})  # Keras 3 names it kernel
register(keras.layers.SeparableConv2D.__mro__[1], {"depthwise_kernel": "depthwise", "pointwise_kernel": "conv"})
register(keras.layers.MultiHeadAttention, {f"_{projection}_dense.kernel": "attention"
                                           for projection in ("query", "key", "value", "output")})
for _cell in (keras.layers.SimpleRNNCell, keras.layers.GRUCell, keras.layers.LSTMCell):
    register(_cell, _RECURRENT_CELL_SPECS)
# ConvLSTM's cell class is not exported and is no LSTMCell.
register(_private.conv_lstm_cell_class(), _RECURRENT_CELL_SPECS)
register(keras.layers.RNN, _rnn_specs)  # SimpleRNN, GRU, LSTM and ConvLSTM* are RNN subclasses
register(keras.layers.Bidirectional, _bidirectional_specs)
register(keras.layers.TimeDistributed, _time_distributed_specs)


KINDS = _core.KINDS
DEFAULT_KINDS = _core.DEFAULT_KINDS
normalize_kinds = _core.normalize_kinds
