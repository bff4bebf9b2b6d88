"""The ``channels`` structure's view of a model's graph: which channels a pruned filter reaches, and what is zeroed.

A pruned output channel (every weight of its filter zero) outputs exactly
zero once its bias is zero too; a BatchNormalization that reads it then
outputs ``beta - gamma * mean / sqrt(variance + eps)``, so its ``gamma`` and
``beta`` are zeroed as well. Which BatchNormalization channels those are is
followed forward through the graph (:func:`dead_channels`): a
BatchNormalization channel is zeroed where it reads only pruned filters
(after an Add, only where every filter feeding it is pruned). A depthwise
convolution has no channels of its own: its kernel is masked where it reads
a pruned channel (:func:`depthwise_keeps`), and its bias zeroed there.

Zeroed once is not enough: training moves a bias, ``gamma`` or ``beta``
again. :func:`holds` lists what the front ends hold at zero after every
optimizer step, each with a function that finds its dead channels from the
kernels at that moment (the same propagation, in the front end's array
functions: :class:`VectorOps`).

The front ends read their model into :class:`Node` records (framework-free).
Layers this module does not know are boundaries: their output channels are
treated as fresh and alive, so nothing is ever zeroed through them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from tfimp.core.slim_layers import Inbound
from tfimp.core.slimming import CONCAT, FRESH, REPEAT, SAME, SOURCE, Op, topological_order

#: Layers whose outputs are new channels made by their own filters.
FILTER_LAYERS = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                           "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "EinsumDense"})
#: Layers whose output channels ``c * depth_multiplier ...`` each read input channel ``c`` alone.
DEPTHWISE = frozenset({"DepthwiseConv1D", "DepthwiseConv2D"})
#: Layers that act channel by channel and keep a zero channel zero (or, BatchNormalization, are what is zeroed).
CHANNEL_WISE = frozenset({"BatchNormalization", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D",
                          "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout",
                          "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                          "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                          "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
                          "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
                          "Cropping3D", "Add", "Subtract", "Maximum", "Minimum", "Average", "Multiply",
                          "Identity", "Activation", "Rescaling"})


@dataclasses.dataclass(frozen=True)
class Node:
    """One layer of a model as the channels structure reads it.

    Attributes:
      name: the layer's name in the model (a wrapper's own name for a wrapped layer).
      class_name: the class of the layer (of the wrapped layer, for a wrapper).
      config: the layer's config (the wrapped layer's).
      inputs: the names of the layers it takes, in order (none for an input).
      channels: its output's channel count (the last axis).
      rank: its output's rank, batch axis included (to read a BatchNormalization's axis).
    """

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]
    channels: int
    rank: int = 0


def _last_axis(node: Node) -> bool:
    axis = node.config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis in (-1, node.rank - 1)


def _op(node: Node) -> Op:
    if not node.inputs:
        return Op(node.name, (), SOURCE, node.channels)
    if node.class_name == "Concatenate" and _last_axis(node):
        return Op(node.name, node.inputs, CONCAT)
    if node.class_name in DEPTHWISE and len(node.inputs) == 1:
        return Op(node.name, node.inputs, REPEAT, factor=int(node.config.get("depth_multiplier", 1)))
    if node.class_name in CHANNEL_WISE and (node.class_name != "BatchNormalization" or _last_axis(node)):
        return Op(node.name, node.inputs, SAME)
    return Op(node.name, node.inputs, FRESH, node.channels)


def channel_ops(nodes: Sequence[Node]) -> list[Op]:
    """The ops :func:`~tfimp.core.slimming.group_channels` joins, one per node (unknown layers are fresh)."""
    return [_op(node) for node in nodes]


@dataclasses.dataclass(frozen=True)
class VectorOps:
    """The array functions :func:`dead_channels` needs on boolean channel vectors: numpy's at pruning time,
    a framework's (``keras.ops``, TensorFlow) inside a training step."""

    all_of: Callable[[list], Any]  #: element-wise AND of a list of vectors
    concat: Callable[[list], Any]  #: the vectors one after the other
    repeat: Callable[[Any, int], Any]  #: each element repeated ``factor`` times in place
    none: Callable[[int], Any]  #: an all-False vector of a width


NUMPY_VECTORS = VectorOps(np.logical_and.reduce, np.concatenate, np.repeat, lambda width: np.zeros(width, bool))


def _ancestors(ops: Sequence[Op], wanted: Iterable[str]) -> set[str]:
    inputs = {op.name: op.inputs for op in ops}
    seen, stack = set(), list(wanted)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(inputs.get(name, ()))
    return seen


def dead_channels(nodes: Sequence[Node], wanted: Iterable[str], dead_of: Callable[[str], Any],
                  vectors: VectorOps = NUMPY_VECTORS) -> Callable[[], dict[str, Any]]:
    """A function computing, for each layer of ``wanted``, which of its output channels hold a constant.

    Followed forward through the graph: a pruned filter's channel holds a
    constant (zero once its bias is); a channel-wise layer keeps it constant;
    a merge (Add ...) only where all its inputs are; a concatenation and a
    depthwise convolution carry it to their own channels. The graph is read
    once, here; each call of the returned function reads only ``dead_of``.

    Args:
      nodes: the model's layers (see :class:`Node`).
      wanted: names of the layers whose channels are asked for.
      dead_of: filter layer name -> boolean per output channel, True where its
        filter is entirely pruned, or None for a layer that is never pruned.
      vectors: the array functions (numpy's, or a framework's to run inside a
        training step).

    Raises:
      ValueError: a graph that cannot be read (an input no layer makes, a cycle);
        with numpy, mismatched channel counts.
    """
    by_name = {node.name: node for node in nodes}
    ops = topological_order(channel_ops(nodes))
    needed = _ancestors(ops, wanted)
    ops = [op for op in ops if op.name in needed]
    wanted = list(wanted)

    def compute() -> dict[str, Any]:
        constant: dict[str, Any] = {}
        for op in ops:
            width = by_name[op.name].channels
            inputs = [constant[name] for name in op.inputs]
            value = None
            if op.mapping == SAME:
                value = vectors.all_of(inputs) if len(inputs) > 1 else inputs[0]
            elif op.mapping == CONCAT:
                value = vectors.concat(inputs)
            elif op.mapping == REPEAT:
                value = vectors.repeat(inputs[0], op.factor)
            elif op.mapping == FRESH:
                value = dead_of(op.name)
            value = vectors.none(width) if value is None else value
            if isinstance(value, np.ndarray) and value.shape != (width,):
                raise ValueError(f"layer {op.name!r}: {value.shape[0]} channels read, {width} expected")
            constant[op.name] = value
        return {name: constant[name] for name in wanted}

    return compute


def _batch_norms(nodes: Sequence[Node]) -> list[str]:
    return [node.name for node in nodes if node.class_name == "BatchNormalization" and _op(node).mapping == SAME]


def dead_batch_norm_channels(nodes: Sequence[Node], dead: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """BatchNormalization name -> its channels to zero: those that read only pruned filters (see
    :func:`dead_channels`; a BatchNormalization reading such a channel is zeroed there, so its output is zero).

    Args:
      nodes: the model's layers (see :class:`Node`).
      dead: layer name -> boolean per output channel, True where its filter is
        entirely pruned (the filter layers not named are alive).

    Returns:
      Only the BatchNormalization layers with at least one such channel.

    Raises:
      ValueError: a graph that cannot be read (an input no layer makes, a cycle, mismatched channel counts).
    """
    found = dead_channels(nodes, _batch_norms(nodes),
                          lambda name: np.asarray(dead[name], dtype=bool) if name in dead else None)()
    return {name: value for name, value in found.items() if value.any()}


def dead_columns(keep: np.ndarray) -> np.ndarray:
    """Which output channels (columns of the kernel's 2-D view) a kernel mask prunes entirely."""
    keep = np.asarray(keep)
    return ~(keep.reshape(-1, keep.shape[-1]) != 0).any(axis=0) if keep.ndim else np.zeros(1, dtype=bool)


#: A layer's name -> (its class name, its config, its output shape): the wrapped layer's for a wrapper.
Describe = Callable[[str], tuple[str, dict, tuple]]


def read_nodes(config: dict, sequential: bool, inbound: Inbound, describe: Describe) -> list[Node]:
    """A Sequential or functional model's config read into :class:`Node` records.

    Args:
      config: the model's ``get_config()``.
      sequential: whether each layer takes the one before it.
      inbound: the front end's parser of a config entry's ``inbound_nodes`` (see
        :data:`tfimp.core.slim_layers.Inbound`).
      describe: see :data:`Describe` (not asked for input layers).

    Raises:
      ValueError: a layer called more than once (shared).
    """
    nodes, previous = [], None
    for entry in config["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            shape = tuple(entry["config"].get("batch_shape") or entry["config"]["batch_input_shape"])
            nodes.append(Node(name, "InputLayer", entry["config"], (), int(shape[-1] or 1), len(shape)))
        else:
            if sequential:
                inputs = (previous,)
            else:
                calls = inbound(entry)
                if len(calls) != 1:
                    raise ValueError(f"layer {name!r} is called {len(calls)} times")
                inputs = tuple(history[0] for history in calls[0][0])
            class_name, layer_config, shape = describe(name)
            nodes.append(Node(name, class_name, layer_config, inputs, int(shape[-1] or 1), len(shape)))
        previous = name
    return nodes


#: The layers whose kernel's last axis is their output channels and whose bias has one entry per output channel.
OUTPUT_LAST = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D"})


def dead_filters(kernels: Sequence[tuple[str, str, int, np.ndarray]]) -> dict[str, np.ndarray]:
    """Layer name -> its pruned output channels, from ``(layer name, class name, masks of the layer, keep)``.

    Only layers of :data:`OUTPUT_LAST` with a single masked kernel count (a
    transposed convolution's last axis is its input; an LSTM has several kernels).
    """
    return {name: dead_columns(keep) for name, class_name, masks, keep in kernels
            if class_name in OUTPUT_LAST and masks == 1}


def zero_dead_channels(kernels: Sequence, keeps: Sequence[np.ndarray], *, nodes: Callable[[], list[Node]] | None,
                       get_layer: Callable[[str], object], zero: Callable[[object, np.ndarray], None]) -> None:
    """Zeroes the bias of every pruned output channel, and the gamma and beta of BatchNormalization reading it.

    So a pruned channel outputs exactly zero. ``kernels``: a front end's
    prunable kernels (each with its ``wrapper``, whose ``layer`` is the wrapped
    layer); ``keeps``: their masks. ``nodes`` reads the model's graph (None, or
    a ``ValueError`` from it: the graph cannot be read, and only the biases are
    zeroed); ``get_layer`` finds a layer by name; ``zero(variable, channels)``
    zeroes a variable's last axis at ``channels``.
    """
    masks = collections.Counter(id(kernel.wrapper) for kernel in kernels)
    dead = dead_filters([(kernel.wrapper.name, type(kernel.wrapper.layer).__name__, masks[id(kernel.wrapper)], keep)
                         for kernel, keep in zip(kernels, keeps)])
    for kernel in kernels:
        channels = dead.get(kernel.wrapper.name)
        if channels is not None and getattr(kernel.wrapper.layer, "use_bias", False):
            zero(kernel.wrapper.layer.bias, channels)
    if nodes is None:
        return
    try:
        read = nodes()
        zeroed = dead_channels(read, _followers(read), lambda name: np.asarray(dead[name], dtype=bool)
                               if name in dead else None)()
    except (ValueError, KeyError, AttributeError, TypeError):
        return
    for name, channels in zeroed.items():
        if channels.any():
            for variable in _follower_variables(get_layer(name)):
                zero(variable, channels)


def _followers(nodes: Sequence[Node]) -> list[str]:
    """The layers whose variables are zeroed where they read a pruned channel: BatchNormalization (gamma, beta)
    and depthwise convolutions (their bias; their kernel is masked, see :func:`depthwise_keeps`)."""
    return [*_batch_norms(nodes), *(node.name for node in nodes if _op(node).mapping == REPEAT)]


def _follower_variables(layer) -> list:
    if hasattr(layer, "gamma") or hasattr(layer, "beta"):
        return [v for v in (getattr(layer, "gamma", None), getattr(layer, "beta", None)) if v is not None]
    inner = getattr(layer, "layer", layer)  # a depthwise convolution in its pruning wrapper
    return [inner.bias] if getattr(inner, "use_bias", False) and getattr(inner, "bias", None) is not None else []


def holds(kernels: Sequence, nodes: Callable[[], list[Node]] | None, *, get_layer: Callable[[str], object],
          dead_columns_of: Callable[[object], Any], vectors: VectorOps) -> list[tuple[object, Callable[[], Any]]]:
    """What holds a pruned channel at zero while the model trains: ``(variable, dead)`` pairs.

    One for the bias of every filter layer :func:`dead_filters` reads, and one
    for the gamma and the beta of every BatchNormalization and the bias of
    every depthwise convolution that a pruned filter can reach
    (:func:`dead_channels`). ``dead()`` computes the
    variable's dead channels (a boolean vector) from the kernels as they are
    at that moment, so a front end can call it inside its training step,
    after every optimizer update: nothing needs to change when a later prune
    kills more channels.

    Args:
      kernels, nodes, get_layer: as for :func:`zero_dead_channels` (a graph
        that cannot be read holds the biases only).
      dead_columns_of: a kernel -> its dead output channels now, with ``vectors``' arrays.
      vectors: the front end's array functions.
    """
    filters = {kernel.wrapper.name: kernel for kernel, ok in zip(kernels, _eligible(kernels)) if ok}
    found: list[tuple[object, Callable[[], Any]]] = [
        (kernel.wrapper.layer.bias, functools.partial(dead_columns_of, kernel)) for kernel in filters.values()
        if getattr(kernel.wrapper.layer, "use_bias", False) and getattr(kernel.wrapper.layer, "bias", None) is not None]
    if nodes is None or not filters:
        return found
    try:
        read = nodes()
        widths = {node.name: node.channels for node in read}
        every = {name: np.ones(widths[name], bool) for name in filters}
        reached = [name for name, value in dead_channels(read, _followers(read), every.get)().items() if value.any()]
        # One function per layer: each reads only the kernels upstream of it.
        computes = {name: dead_channels(read, [name], lambda producer: dead_columns_of(filters[producer])
                                        if producer in filters else None, vectors) for name in reached}
    except (ValueError, KeyError, AttributeError, TypeError):
        return found
    for name in reached:
        dead = (lambda compute, name: lambda: compute()[name])(computes[name], name)
        found.extend((variable, dead) for variable in _follower_variables(get_layer(name)))
    return found


def pruned_by_channels(masks: Sequence[np.ndarray]) -> bool:
    """Whether masks read back from a file were pruned with ``structure="channels"``: every output channel
    (column of the 2-D view) wholly kept or wholly pruned, and at least one pruned. (An unstructured mask prunes
    parts of columns long before it empties one.) A model loaded with such masks gets its holds back."""
    columns = [np.reshape(np.asarray(mask) != 0, (-1, np.shape(mask)[-1])) for mask in masks if np.ndim(mask)]
    alive = [column.any(axis=0) for column in columns]
    return (bool(columns) and all((column == kept).all() for column, kept in zip(columns, alive))
            and any(not kept.all() for kept in alive))


def depthwise_kernels(kernels: Sequence) -> list[bool]:
    """Which kernels are depthwise (a DepthwiseConv's kernel, a SeparableConv's depthwise kernel): their channels are
    not channels of their own but those of the tensor they read, so the ``channels`` structure does not select them:
    :func:`depthwise_keeps` masks them after the channels they read."""
    def depthwise(kernel) -> bool:
        layer = kernel.wrapper.layer
        name = type(layer).__name__
        return name in DEPTHWISE or (name.startswith("SeparableConv") and
                                     kernel.weight is getattr(layer, "depthwise_kernel", None))

    return [depthwise(kernel) for kernel in kernels]


def depthwise_keeps(kernels: Sequence, keeps: Sequence[np.ndarray | None], masks: Sequence[np.ndarray],
                    nodes: Callable[[], list[Node]] | None) -> list[np.ndarray]:
    """The masks of the depthwise kernels (:func:`depthwise_kernels`; None in ``keeps``) from the others' masks.

    A depthwise kernel's slice ``[..., c, :]`` is masked where input channel
    ``c`` reads only pruned filters: that channel is dead, and the depthwise
    channels it makes with it (so :func:`tfimp.core.slimming.group_channels`,
    which joins them with the producer's, removes them together). The others'
    entries are returned as given; a depthwise kernel keeps what its current
    mask (``masks``) pruned, and all of it where the graph cannot be read.
    """
    wanted = {index: kernel.wrapper.name for index, (kernel, keep) in enumerate(zip(kernels, keeps)) if keep is None}
    keeps = [np.array(mask) if keep is None else keep for keep, mask in zip(keeps, masks)]
    if not wanted or nodes is None:
        return keeps
    counts = collections.Counter(id(kernel.wrapper) for kernel in kernels)
    dead = dead_filters([(kernel.wrapper.name, type(kernel.wrapper.layer).__name__, counts[id(kernel.wrapper)], keep)
                         for index, (kernel, keep) in enumerate(zip(kernels, keeps)) if index not in wanted])
    try:
        read = nodes()
        inputs = {node.name: node.inputs for node in read}
        sources = {index: inputs[name][0] for index, name in wanted.items() if len(inputs[name]) == 1}
        found = dead_channels(read, sorted(set(sources.values())),
                              lambda name: np.asarray(dead[name], dtype=bool) if name in dead else None)()
    except (ValueError, KeyError, AttributeError, TypeError, IndexError):
        return keeps
    for index, source in sources.items():
        if found[source].shape == (keeps[index].shape[-2],):
            keeps[index][..., found[source], :] = 0
    return keeps


def _eligible(kernels: Sequence) -> list[bool]:
    """Which kernels :func:`dead_filters` reads (one kernel of an :data:`OUTPUT_LAST` layer)."""
    masks = collections.Counter(id(kernel.wrapper) for kernel in kernels)
    return [type(kernel.wrapper.layer).__name__ in OUTPUT_LAST and masks[id(kernel.wrapper)] == 1
            for kernel in kernels]
