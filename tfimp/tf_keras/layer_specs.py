"""Which weights of which tf_keras layers tfimp prunes, by kind: the registry of layer types and their weights.

Every weight tfimp can prune has a *kind*, so that a user can choose what to
prune (``tfimp.wrap(model, kinds=...)``):

| kind | weights |
|---|---|
| ``dense`` | ``Dense`` and ``EinsumDense`` kernels |
| ``conv`` | kernels of ``Conv1D/2D/3D``, ``Conv*Transpose``, ``LocallyConnected*``, and the pointwise kernel of ``SeparableConv*`` |
| ``depthwise`` | the depthwise kernel of ``DepthwiseConv1D/2D`` and ``SeparableConv*`` |
| ``embedding`` | ``Embedding`` tables |
| ``attention`` | ``MultiHeadAttention``'s query, key, value and output kernels |
| ``rnn`` | the kernel and recurrent kernel of ``SimpleRNN``/``GRU``/``LSTM`` cells (also ``ConvLSTM*``, ``RNN`` with such cells or stacks of them, inside ``Bidirectional`` and ``TimeDistributed``) |

This covers every weight tfmot's own registry prunes, plus the depthwise
kernels, ``EinsumDense``, ``Bidirectional`` and ``TimeDistributed`` that it
does not. Biases, normalisation layers and layers without weights stay dense.
A layer type of your own joins with :func:`register`.

A *spec* is the path from the wrapped layer to one weight (attribute names,
and list indices for stacked cells: ``"forward_layer.cell.recurrent_kernel"``)
and its kind.
"""

from __future__ import annotations

from typing import Iterable

from tfimp.tf_keras._backend import keras
from tfimp.core import coverage as _core
from tfimp.core.coverage import DEFAULT_KINDS, KINDS, Coverage, Spec, normalize_kinds, resolve  # noqa: F401

_REGISTRY = _core.SpecRegistry("tf_keras")


def register(layer_class: type, specs) -> None:
    """Makes the tf_keras ``layer_class`` (and its subclasses) prunable (see ``SpecRegistry.register``).

    Raises:
      TypeError: not a tf_keras layer class (a Keras 3 process's ``tfimp.coverage`` takes Keras 3 classes).
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"tfimp.coverage.register needs a tf_keras layer class here, got {layer_class!r}")
    _REGISTRY.register(layer_class, specs)


def _handler(layer):
    return _REGISTRY.handler(layer)


def specs(layer: keras.layers.Layer, kinds: Iterable[str] | None = None) -> list[Spec]:
    """The prunable weights of ``layer`` (paths and kinds), restricted to ``kinds``; empty if none."""
    return _REGISTRY.specs(layer, kinds)

# --------------------------------------------------------------------------
# The built-in layer types
# --------------------------------------------------------------------------

_RECURRENT_CELL_SPECS = {"kernel": "rnn", "recurrent_kernel": "rnn"}


def _conv_lstm_cell(cell):
    """ConvLSTM's cell class is not exported by tf_keras: it is pruned as an LSTM cell."""
    if any(klass.__name__ == "ConvLSTMCell" for klass in type(cell).__mro__):
        return _REGISTRY.handler_of_class(keras.layers.LSTMCell)
    return None


_rnn_specs, _bidirectional_specs, _time_distributed_specs = _core.rnn_spec_functions(
    _REGISTRY, keras.layers.StackedRNNCells, _conv_lstm_cell)


def _separable_specs(layer) -> list[Spec]:
    return [("depthwise_kernel", "depthwise"), ("pointwise_kernel", "conv")]


register(keras.layers.Dense, {"kernel": "dense"})
register(keras.layers.EinsumDense, {"kernel": "dense"})
register(keras.layers.Embedding, {"embeddings": "embedding"})
# Conv is the base of every convolution, transposed ones included; the depthwise and separable
# subclasses are registered below it and win by method resolution order.
register(keras.layers.Conv1D.__mro__[1], {"kernel": "conv"})
register(keras.layers.DepthwiseConv2D.__mro__[1], {"depthwise_kernel": "depthwise"})
register(keras.layers.SeparableConv2D.__mro__[1], _separable_specs)
for _locally_connected in ("LocallyConnected1D", "LocallyConnected2D"):
    if hasattr(keras.layers, _locally_connected):
        register(getattr(keras.layers, _locally_connected), {"kernel": "conv"})
register(keras.layers.MultiHeadAttention, {f"_{projection}_dense.kernel": "attention"
                                           for projection in ("query", "key", "value", "output")})
for _cell in (keras.layers.SimpleRNNCell, keras.layers.GRUCell, keras.layers.LSTMCell):
    register(_cell, _RECURRENT_CELL_SPECS)
register(keras.layers.RNN, _rnn_specs)  # SimpleRNN, GRU, LSTM and ConvLSTM* are RNN subclasses
register(keras.layers.Bidirectional, _bidirectional_specs)
register(keras.layers.TimeDistributed, _time_distributed_specs)
