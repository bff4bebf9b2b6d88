"""What a pruned output channel costs in weights: the ``channels`` structure's sparsity, framework-free.

Under ``structure="channels"`` sparsity is the share of the prunable weights
that the slimmed model (:func:`tfimp.slim`) no longer has. A removed output
channel of a layer takes its filter (the kernel's column) and, in every
prunable layer that reads the channel, the weights that read it: followed
through the layers that keep channels apart (BatchNormalization,
activations, pooling, Add and the other merges, Concatenate at its offset,
Flatten at each spatial position, depthwise convolutions), with the channel
groups of :mod:`tfimp.core.slimming`. A weight removed for both reasons
counts once: a kernel of ``spatial`` positions with ``alive_in`` input and
``alive_out`` output channels left keeps ``spatial * alive_in * alive_out``
weights.

Channels an Add joins go together: they are removed only once every filter
making them is pruned. A channel that reaches a model output (or a layer
that mixes channels, LayerNormalization or Softmax) is never removed by
slimming, so :func:`channel_costs` marks it *blocked*; the ``channels``
selection does not prune it. Where the graph cannot be read (a subclassed
model), or for a kernel the graph does not follow (several kernels in one
layer, a transposed convolution), a channel costs its own filter only.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from tfimp.core.channel_graph import OUTPUT_LAST, Node, channel_ops
from tfimp.core.slimming import FLATTEN, FRESH, SAME, SOURCE, Op, group_channels

#: Layers whose kernel's axis -2 reads their input's channels (a depthwise kernel's too: (h, w, channels, multiplier)).
READERS = OUTPUT_LAST | {"DepthwiseConv1D", "DepthwiseConv2D"}
#: Layers that mix all channels of their input, so slimming keeps every channel they read.
MIXING = frozenset({"Softmax", "LayerNormalization", "UnitNormalization", "Normalization"})


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """One prunable kernel as the count sees it.

    Attributes:
      layer: the name of its layer in the model's graph.
      class_name: the class of that layer (the wrapped layer's).
      shape: the kernel's shape.
      alone: whether it is its layer's only prunable kernel (an LSTM's or a separable convolution's are not).
    """

    layer: str
    class_name: str
    shape: tuple[int, ...]
    alone: bool = True


@dataclasses.dataclass(frozen=True)
class ChannelCosts:
    """How the prunable kernels' weights go with their output channels.

    Attributes:
      spatial: per kernel, the weights one (input, output) channel pair holds (``h * w`` of a convolution).
      inputs: per kernel, its input channels (the rows of its 2-D view, for a kernel whose inputs are not followed).
      outputs: per kernel, its output channels (the columns of its 2-D view).
      out_groups: per kernel, a channel group id per output channel, or -1 where the channel costs its filter only.
      in_groups: per kernel, the channel group id of each input channel, or None where no input is followed.
      blocked: per group, whether slimming keeps it whatever is pruned (a model input or output reads or makes it,
        or a layer no prunable kernel is).
    """

    spatial: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray
    out_groups: tuple[np.ndarray, ...]
    in_groups: tuple[np.ndarray | None, ...]
    blocked: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """Each kernel's weights."""
        return self.spatial * self.inputs * self.outputs

    def _of_groups(self, values: np.ndarray, groups: np.ndarray, own) -> np.ndarray:
        """``values[group]`` per channel, ``own`` where the channel is on its own (group -1)."""
        padded = np.append(values, False)
        return np.where(groups >= 0, padded[np.where(groups >= 0, groups, -1)], own)

    def prunable(self) -> list[np.ndarray]:
        """Per kernel, which output channels the ``channels`` selection may prune (not blocked ones)."""
        return [self._of_groups(~self.blocked, g, True) for g in self.out_groups]

    def removed_channels(self, dead: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per kernel, (its removed input channels, its removed output channels) when ``dead`` columns are pruned.

        A group goes when it is not blocked and every output channel making it is dead.
        """
        dead = [np.asarray(d, bool).ravel() for d in dead]
        ids = [g[g >= 0] for g in self.out_groups]
        dead_ids = [g[(g >= 0) & d] for g, d in zip(self.out_groups, dead)]
        empty = np.zeros(0, np.int64)
        producers = np.bincount(np.concatenate([empty, *ids]), minlength=self.blocked.size)
        killed = np.bincount(np.concatenate([empty, *dead_ids]), minlength=self.blocked.size)
        gone = ~self.blocked & (producers > 0) & (killed == producers)
        outs = [self._of_groups(gone, g, d) for g, d in zip(self.out_groups, dead)]
        ins = [np.zeros(int(n), bool) if g is None else gone[g] for g, n in zip(self.in_groups, self.inputs)]
        return ins, outs

    def removed(self, dead: Sequence[np.ndarray]) -> np.ndarray:
        """Per kernel, how many of its weights the slimmed model no longer has when ``dead`` columns are pruned."""
        ins, outs = self.removed_channels(dead)
        alive_in = self.inputs - np.array([int(i.sum()) for i in ins], np.int64)
        alive_out = self.outputs - np.array([int(o.sum()) for o in outs], np.int64)
        return self.sizes - self.spatial * alive_in * alive_out


def _flat(shape: Sequence[int]) -> tuple[int, int, int]:
    """(spatial, inputs, outputs) of a kernel whose axis -2 is its input channels."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return 1, 1, shape[-1] if shape else 1
    return math.prod(shape[:-2]), shape[-2], shape[-1]


def own_costs(shapes: Sequence[Sequence[int]], unit_groups: Sequence[np.ndarray | None] | None = None
              ) -> ChannelCosts:
    """Costs without a graph: a channel costs its own filter (the column of the kernel's 2-D view).

    ``unit_groups`` (per kernel, None or a group id per output channel, -1: on
    its own) joins channels that go together (an Add's, read elsewhere).
    """
    rows = [math.prod(tuple(int(d) for d in shape)[:-1]) if len(shape) else 1 for shape in shapes]
    outputs = [int(shape[-1]) if len(shape) else 1 for shape in shapes]
    groups = [np.full(n, -1, np.int64) if unit_groups is None or unit_groups[i] is None
              else np.asarray(unit_groups[i], np.int64).ravel() for i, n in enumerate(outputs)]
    labels = np.unique(np.concatenate([np.zeros(0, np.int64), *[g[g >= 0] for g in groups]]))
    renumbered = tuple(np.where(g >= 0, np.searchsorted(labels, g), -1) for g in groups)
    return ChannelCosts(np.ones(len(shapes), np.int64), np.array(rows, np.int64), np.array(outputs, np.int64),
                        renumbered, (None,) * len(shapes), np.zeros(labels.size, bool))


def _ops(nodes: Sequence[Node]) -> list[Op]:
    """:func:`~tfimp.core.channel_graph.channel_ops`, with a Flatten's units mapped to its input's channels."""
    by_name = {node.name: node for node in nodes}
    ops = channel_ops(nodes)
    for index, node in enumerate(nodes):
        if node.class_name != "Flatten" or len(node.inputs) != 1:
            continue
        source = by_name.get(node.inputs[0])
        if source is None or node.channels % source.channels:
            continue
        positions = node.channels // source.channels
        ops[index] = Op(node.name, node.inputs, FLATTEN if positions > 1 else SAME, factor=positions)
    return ops


def channel_costs(kernels: Sequence[KernelInfo], nodes: Sequence[Node] | None) -> ChannelCosts:
    """The costs of the prunable ``kernels`` (in model order) in a model whose graph is ``nodes``.

    ``nodes`` None (a subclassed model), or a graph that cannot be read: each
    channel costs its own filter (:func:`own_costs`).
    """
    shapes = [kernel.shape for kernel in kernels]
    if nodes is None:
        return own_costs(shapes)
    try:
        groups = group_channels(_ops(nodes))
    except (ValueError, KeyError):
        return own_costs(shapes)
    by_name = {node.name: node for node in nodes}
    spatial, inputs, outputs, out_groups, in_groups = [], [], [], [], []
    producer_layers = set()
    for kernel in kernels:
        node = by_name.get(kernel.layer)
        own = own_costs([kernel.shape])
        follows = node is not None and kernel.alone and len(kernel.shape) >= 2
        reads = follows and kernel.class_name in READERS and len(node.inputs) == 1 and \
            groups.channels[node.inputs[0]] == int(kernel.shape[-2])
        makes = follows and kernel.class_name in OUTPUT_LAST and groups.channels[node.name] == int(kernel.shape[-1])
        if reads:
            sizes = _flat(kernel.shape)
        else:
            sizes = (1, int(own.inputs[0]), int(own.outputs[0]))
        spatial.append(sizes[0])
        inputs.append(sizes[1])
        outputs.append(sizes[2])
        in_groups.append(np.asarray(groups.of[node.inputs[0]]) if reads else None)
        out_groups.append(np.asarray(groups.of[node.name]) if makes else np.full(sizes[2], -1, np.int64))
        if makes:
            producer_layers.add(node.name)
    blocked = np.zeros(groups.count, bool)
    read = {name for node in nodes for name in node.inputs}
    for op in groups.ops:
        if op.mapping in (SOURCE, FRESH) and op.name not in producer_layers:
            blocked[groups.of[op.name]] = True  # made by a model input or a layer that is not a prunable filter
        if op.name not in read:
            blocked[groups.of[op.name]] = True  # a model output
        if by_name[op.name].class_name in MIXING:
            for name in op.inputs:
                blocked[groups.of[name]] = True
    return ChannelCosts(np.array(spatial, np.int64), np.array(inputs, np.int64), np.array(outputs, np.int64),
                        tuple(out_groups), tuple(in_groups), blocked)


def dead_columns(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per kernel (mask or values: non-zero = alive), which output channels (columns of its 2-D view) are all zero."""
    out = []
    for array in arrays:
        array = np.asarray(array)
        columns = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
        out.append(~(columns != 0).any(axis=0))
    return out


def removed_weights(costs: ChannelCosts, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(per kernel, the weights the slimmed model no longer has; per kernel, its weights) for masks or values."""
    return costs.removed(dead_columns(arrays)), costs.sizes


def kernel_infos(entries: Sequence[tuple[str, str, Sequence[int]]]) -> list[KernelInfo]:
    """:class:`KernelInfo` records from ``(layer name, class name, shape)`` per kernel, in model order."""
    per_layer = collections.Counter(layer for layer, _, _ in entries)
    return [KernelInfo(layer, class_name, tuple(int(d) for d in shape), per_layer[layer] == 1)
            for layer, class_name, shape in entries]


def kernel_entries(kernels: Sequence) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(layer name, class name, shape)`` of a front end's wrapped kernels (each with its ``wrapper``, whose
    ``layer`` is the wrapped layer, and its ``weight``)."""
    return [(k.wrapper.name, type(k.wrapper.layer).__name__, tuple(int(d) for d in k.weight.shape)) for k in kernels]


def read_graph(nodes: Callable[[], list[Node]] | None) -> list[Node] | None:
    """``nodes()``, or None where there is no graph or it cannot be read (a shared layer, a nested model)."""
    if nodes is None:
        return None
    try:
        return nodes()
    except (ValueError, KeyError, AttributeError, TypeError):
        return None


def costs_of(entries: Sequence[tuple[str, str, Sequence[int]]], nodes: Callable[[], list[Node]] | None
             ) -> ChannelCosts:
    """:func:`channel_costs` of kernels given as ``(layer name, class name, shape)``; ``nodes`` reads the graph."""
    return channel_costs(kernel_infos(entries), read_graph(nodes))


def count(entries: Sequence[tuple[str, np.ndarray, str, str]], nodes: Callable[[], list[Node]] | None
          ) -> dict[str, tuple[int, int]]:
    """Per kernel name, (weights the slimmed model no longer has, weights), from ``(name, mask or values, layer
    name, class name)`` per prunable kernel in model order: what ``sparsity(model, structure="channels")``,
    ``layer_sparsity`` and the report count."""
    costs = costs_of([(layer, class_name, np.shape(array)) for _, array, layer, class_name in entries], nodes)
    removed, sizes = removed_weights(costs, [array for _, array, _, _ in entries])
    return {name: (int(r), int(s)) for (name, _, _, _), r, s in zip(entries, removed, sizes)}
