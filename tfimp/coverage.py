"""Which weights of which tf_keras layers tfimp prunes, by kind, and a report of what a model has covered.

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

import dataclasses
from typing import Callable, Iterable, Sequence

from tfimp import _private
from tfimp._backend import keras

#: Every kind of prunable weight, in the order reports list them.
KINDS: tuple[str, ...] = ("conv", "dense", "depthwise", "embedding", "attention", "rnn")

#: What :func:`tfimp.wrap` prunes when ``kinds`` is not given: everything.
DEFAULT_KINDS: frozenset[str] = frozenset(KINDS)

Spec = tuple[str, str]  # (path, kind)
_SpecsFn = Callable[[keras.layers.Layer], list[Spec]]
_REGISTRY: dict[type, _SpecsFn] = {}


def register(layer_class: type, specs: dict[str, str] | _SpecsFn) -> None:
    """Makes ``layer_class`` (and its subclasses) prunable.

    Args:
      layer_class: a tf_keras layer class.
      specs: ``{weight attribute or path: kind}``, e.g. ``{"kernel": "dense"}``,
        or a function ``layer -> [(path, kind), ...]`` for layers whose weights
        depend on their configuration.

    Raises:
      ValueError: a kind outside :data:`KINDS`.
    """
    if isinstance(specs, dict):
        fixed = [(path, kind) for path, kind in specs.items()]
        _check_kinds(kind for _, kind in fixed)
        _REGISTRY[layer_class] = lambda layer: list(fixed)
    else:
        _REGISTRY[layer_class] = specs


def _check_kinds(kinds: Iterable[str]) -> frozenset[str]:
    kinds = frozenset(kinds)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"unknown weight kinds {unknown}; the kinds are {list(KINDS)}")
    return kinds


def normalize_kinds(kinds: Iterable[str] | str | None) -> frozenset[str]:
    """``None`` → every kind; a name or names → that set, checked against :data:`KINDS`."""
    if kinds is None:
        return DEFAULT_KINDS
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = _check_kinds(kinds)
    if not kinds:
        raise ValueError(f"kinds is empty: nothing would be pruned; choose from {list(KINDS)}")
    return kinds


def _handler(layer: keras.layers.Layer) -> _SpecsFn | None:
    for klass in type(layer).__mro__:
        if klass in _REGISTRY:
            return _REGISTRY[klass]
    return None


def specs(layer: keras.layers.Layer, kinds: Iterable[str] | None = None) -> list[Spec]:
    """The prunable weights of ``layer`` (paths and kinds), restricted to ``kinds``; empty if none."""
    handler = _handler(layer)
    if handler is None:
        return []
    allowed = normalize_kinds(kinds)
    return [(path, kind) for path, kind in handler(layer) if kind in allowed]


def resolve(layer: keras.layers.Layer, path: str):
    """The variable at ``path`` below ``layer`` (private steps go through :mod:`tfimp._private`).

    Raises:
      _private.UpstreamChanged / AttributeError: the path does not exist (yet: the layer is not built).
    """
    value = layer
    for step in path.split("."):
        if step.isdigit():
            value = value[int(step)]
        elif step.startswith("_"):
            value = _private.attribute(value, step, what=f"the prunable weight {path!r} of a {type(layer).__name__}")
        else:
            value = getattr(value, step)
    return value


# --------------------------------------------------------------------------
# The built-in layer types
# --------------------------------------------------------------------------

_RECURRENT_CELL_SPECS = {"kernel": "rnn", "recurrent_kernel": "rnn"}


def _cell_specs(cell, prefix: str) -> list[Spec]:
    if isinstance(cell, keras.layers.StackedRNNCells):
        return [spec for index, inner in enumerate(cell.cells) for spec in _cell_specs(inner, f"{prefix}cells.{index}.")]
    handler = _handler(cell)
    if handler is None and any(klass.__name__ == "ConvLSTMCell" for klass in type(cell).__mro__):
        handler = _REGISTRY[keras.layers.LSTMCell]  # ConvLSTM's cell class is not exported by tf_keras
    return [(f"{prefix}{path}", kind) for path, kind in handler(cell)] if handler else []


def _rnn_specs(layer) -> list[Spec]:
    return _cell_specs(layer.cell, "cell.")


def _bidirectional_specs(layer) -> list[Spec]:
    return ([(f"forward_layer.{path}", kind) for path, kind in _rnn_specs(layer.forward_layer)]
            + [(f"backward_layer.{path}", kind) for path, kind in _rnn_specs(layer.backward_layer)])


def _time_distributed_specs(layer) -> list[Spec]:
    handler = _handler(layer.layer)
    return [(f"layer.{path}", kind) for path, kind in handler(layer.layer)] if handler else []


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


# --------------------------------------------------------------------------
# What a model has covered
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Coverage:
    """What :func:`tfimp.wrap` covered: parameters under masks and those left dense, by layer type.

    All counts are trainable parameters (BatchNorm's moving statistics and
    tfimp's own masks are not parameters).
    """

    total_parameters: int
    #: layer type -> [layers, parameters under masks]
    pruned_by_type: dict[str, list[int]]
    #: layer type -> [layers, parameters left dense] (biases and normalisation included)
    dense_by_type: dict[str, list[int]]
    #: covered layers that were built when wrapped but never called, or excluded/unchosen: name -> reason
    left_out: dict[str, str]
    #: layer type -> parameters in weight matrices and tables (rank >= 2) left dense: the holes that matter
    dense_matrices_by_type: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def prunable_parameters(self) -> int:
        return sum(count for _, count in self.pruned_by_type.values())

    @property
    def prunable_share(self) -> float:
        """Parameters under masks / all trainable parameters."""
        return self.prunable_parameters / self.total_parameters if self.total_parameters else 0.0

    @property
    def dense_matrix_parameters(self) -> int:
        """Parameters in kernels, tables and other weights of rank >= 2 that are not under masks."""
        return sum(self.dense_matrices_by_type.values())

    def largest_dense(self, top: int = 3) -> list[tuple[str, int]]:
        """The layer types holding the most dense weight-matrix parameters."""
        return sorted(self.dense_matrices_by_type.items(), key=lambda item: -item[1])[:top]

    def summary(self) -> str:
        """A few lines: what is pruned, what stays dense, what was left out."""
        def listing(table):
            return ", ".join(f"{name} ×{layers} ({count:,})" for name, (layers, count) in
                             sorted(table.items(), key=lambda item: -item[1][1])) or "none"
        lines = [f"tfimp.wrap: {self.prunable_parameters:,} of {self.total_parameters:,} parameters "
                 f"({self.prunable_share:.1%}) are prunable",
                 f"  pruned: {listing(self.pruned_by_type)}",
                 f"  dense: {listing(self.dense_by_type)}",
                 f"  of which weight matrices and tables: {self.dense_matrix_parameters:,}"]
        if self.left_out:
            lines.append("  left out: " + ", ".join(f"{name} ({reason})" for name, reason in self.left_out.items()))
        return "\n".join(lines)


def _count(variables: Sequence) -> int:
    return int(sum(int(v.shape.num_elements() or 0) for v in variables))


def _is_matrix(variable) -> bool:
    """A kernel, table or other weight of rank >= 2 (GRU's bias has rank 2 but is a bias)."""
    return len(variable.shape) >= 2 and not variable.name.split("/")[-1].startswith("bias")


def describe(model: keras.Model, left_out: dict[str, str] | None = None) -> Coverage:
    """The :class:`Coverage` of ``model`` (wrapped or not: an unwrapped model has nothing under masks)."""
    from tfimp import tfmot_glue

    masked = {id(kernel.weight) for kernel in tfmot_glue.prunable_kernels(model)}
    pruned: dict[str, list[int]] = {}
    dense: dict[str, list[int]] = {}
    matrices: dict[str, int] = {}
    seen: set[int] = set()
    for _, layer in tfmot_glue.leaf_layers(model):
        inner = layer.layer if isinstance(layer, tfmot_glue.PruneLowMagnitude) else layer
        own = [v for v in layer.trainable_weights if id(v) not in seen]
        seen.update(id(v) for v in own)
        if not own:
            continue
        type_name = type(inner).__name__
        under_mask = _count([v for v in own if id(v) in masked])
        left = _count(own) - under_mask
        if under_mask:
            entry = pruned.setdefault(type_name, [0, 0])
            entry[0] += 1
            entry[1] += under_mask
        if left:
            entry = dense.setdefault(type_name, [0, 0])
            entry[0] += 1
            entry[1] += left
        left_matrices = _count([v for v in own if id(v) not in masked and _is_matrix(v)])
        if left_matrices:
            matrices[type_name] = matrices.get(type_name, 0) + left_matrices
    total = _count(model.trainable_weights)
    return Coverage(total, pruned, dense, dict(left_out or {}), matrices)
