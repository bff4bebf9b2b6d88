"""Physical slimming, framework-free: which channels of a network must be kept or removed together, and which can go.

A network is a list of :class:`Op` (one output tensor each, named like the
op). How an op's output channels relate to its input channels is its
*mapping*:

- ``SOURCE``: a model input; its channels are fresh.
- ``FRESH``: the op makes new channels from all of its input channels with
  its own filters (a convolution, a dense layer); input and output channels
  are independent.
- ``SAME``: output channel ``c`` is channel ``c`` of every input
  (activations, BatchNormalization, pooling, padding, Add and the other
  merges): they must be kept or removed together.
- ``CONCAT``: the inputs' channels one after the other (Concatenate on the
  channel axis): output channel ``offset_k + c`` is channel ``c`` of input
  ``k``.
- ``REPEAT``: output channels ``c * factor ... c * factor + factor - 1``
  come from input channel ``c`` (a depthwise convolution with a depth
  multiplier; ``factor=1`` is ``SAME`` for one input).
- ``FLATTEN``: output unit ``s * C + c`` is channel ``c`` at spatial
  position ``s`` (``factor`` positions; a channels-last Flatten).

:func:`group_channels` joins every channel that must agree into one *group*
(union-find over all channels of all tensors). A group is removed whole: from
every tensor it appears in, from the filters that make it and from the
kernels that read it. :func:`keep_masks` decides which groups stay, given the
channels some reader *needs* (a layer that reads a varying value, a model
input or output): every group holding a needed channel stays, every tensor
keeps at least one channel, and the rest go.

What a channel holds is followed by :class:`Signal` (per channel: constant
over every input of the network, and which constant), through each op's own
rule (:func:`propagate`); :mod:`tfimp.core.slim_layers` has the rules of
Keras layers. The ``channels`` pruning structure reads the same ops
(:mod:`tfimp.core.channel_graph`) to find the BatchNormalization channels a
pruned filter reaches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

SOURCE = "source"
FRESH = "fresh"
SAME = "same"
CONCAT = "concat"
REPEAT = "repeat"
FLATTEN = "flatten"
#: Every mapping an :class:`Op` can have.
MAPPINGS = (SOURCE, FRESH, SAME, CONCAT, REPEAT, FLATTEN)


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation of the graph as the channel grouping sees it; its output tensor has the op's name.

    Attributes:
      name: the op's (and its output tensor's) name.
      inputs: the names of the ops whose outputs it takes, in order.
      mapping: how its output channels relate to its input channels (one of :data:`MAPPINGS`).
      channels: the output's channel count; required for ``SOURCE`` and ``FRESH``, derived otherwise.
      factor: ``REPEAT``'s multiplier or ``FLATTEN``'s number of spatial positions.
    """

    name: str
    inputs: tuple[str, ...] = ()
    mapping: str = SAME
    channels: int | None = None
    factor: int = 1

    def __post_init__(self):
        if self.mapping not in MAPPINGS:
            raise ValueError(f"op {self.name!r}: mapping {self.mapping!r} is not one of {list(MAPPINGS)}")
        if self.mapping in (SOURCE, FRESH) and (self.channels is None or self.channels < 1):
            raise ValueError(f"op {self.name!r} ({self.mapping}) needs a channel count >= 1, got {self.channels!r}")
        if (self.mapping == SOURCE) != (not self.inputs):
            raise ValueError(f"op {self.name!r}: a {self.mapping} op with inputs {list(self.inputs)}; only "
                             "SOURCE ops have none")
        if self.factor < 1:
            raise ValueError(f"op {self.name!r}: factor must be >= 1, got {self.factor!r}")


def topological_order(ops: Sequence[Op]) -> list[Op]:
    """``ops`` ordered so that every op follows its inputs (stable); refuses unknown inputs and cycles."""
    by_name: dict[str, Op] = {}
    for op in ops:
        if op.name in by_name:
            raise ValueError(f"two ops are named {op.name!r}")
        by_name[op.name] = op
    for op in ops:
        unknown = [name for name in op.inputs if name not in by_name]
        if unknown:
            raise ValueError(f"op {op.name!r} takes {unknown}, which no op makes")
    ordered: list[Op] = []
    placed: set[str] = set()
    pending = list(ops)
    while pending:
        ready = [op for op in pending if all(name in placed for name in op.inputs)]
        if not ready:
            raise ValueError(f"the ops {[op.name for op in pending]} form a cycle")
        ordered.extend(ready)
        placed.update(op.name for op in ready)
        pending = [op for op in pending if op.name not in placed]
    return ordered


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        a, b = self.find(first), self.find(second)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


@dataclasses.dataclass(frozen=True)
class ChannelGroups:
    """Every channel of every tensor, by group: the channels that are kept or removed together.

    Attributes:
      ops: the ops, in topological order.
      channels: each tensor's channel count.
      of: each tensor's group ids, one per channel (``of[name][c]``).
      count: the number of groups (ids are ``0 .. count - 1``, numbered in order of first appearance).
    """

    ops: tuple[Op, ...]
    channels: Mapping[str, int]
    of: Mapping[str, np.ndarray]
    count: int

    def members(self, group: int) -> list[tuple[str, int]]:
        """The (tensor, channel) pairs of ``group``, in op order."""
        return [(op.name, int(c)) for op in self.ops for c in np.flatnonzero(self.of[op.name] == group)]


def _output_channels(op: Op, channels: Mapping[str, int]) -> int:
    inputs = [channels[name] for name in op.inputs]
    if op.mapping in (SOURCE, FRESH):
        return int(op.channels)
    if op.mapping == CONCAT:
        return sum(inputs)
    if op.mapping == SAME:
        if len(set(inputs)) != 1:
            raise ValueError(f"op {op.name!r} joins channel by channel tensors of different channel counts "
                             f"{dict(zip(op.inputs, inputs))}; a broadcast across channels cannot be slimmed")
        return inputs[0]
    if len(inputs) != 1:
        raise ValueError(f"a {op.mapping} op takes one input; {op.name!r} takes {list(op.inputs)}")
    return inputs[0] * op.factor


def _channel_links(op: Op, channels: Mapping[str, int]) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """(input, input channel, output channel) arrays that must agree; none for SOURCE and FRESH ops."""
    if op.mapping == SAME:
        for name in op.inputs:
            index = np.arange(channels[name])
            yield name, index, index
    elif op.mapping == CONCAT:
        offset = 0
        for name in op.inputs:
            index = np.arange(channels[name])
            yield name, index, index + offset
            offset += channels[name]
    elif op.mapping in (REPEAT, FLATTEN):
        (name,) = op.inputs
        size = channels[name]
        out = np.arange(size * op.factor)
        yield name, (out // op.factor if op.mapping == REPEAT else out % size), out


def group_channels(ops: Sequence[Op]) -> ChannelGroups:
    """Joins the channels that must agree (see the module docstring) into groups.

    Raises:
      ValueError: an op takes a tensor no op makes, the ops form a cycle, or a
        ``SAME`` op joins tensors of different channel counts (naming the op).
    """
    ordered = topological_order(ops)
    channels: dict[str, int] = {}
    for op in ordered:
        channels[op.name] = _output_channels(op, channels)
    offsets = dict(zip(channels, np.cumsum([0, *channels.values()])[:-1].tolist()))
    union = _UnionFind(sum(channels.values()))
    for op in ordered:
        for name, source, target in _channel_links(op, channels):
            for a, b in zip((source + offsets[name]).tolist(), (target + offsets[op.name]).tolist()):
                union.union(a, b)
    roots = np.array([union.find(i) for i in range(len(union.parent))], dtype=np.int64)
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    renumber = np.empty(first.size, dtype=np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(first.size)
    labels = renumber[labels.ravel()]
    of = {name: labels[offsets[name]:offsets[name] + size] for name, size in channels.items()}
    return ChannelGroups(tuple(ordered), channels, of, int(first.size))


@dataclasses.dataclass(frozen=True)
class Signal:
    """What each channel of a tensor holds over every input of the network.

    Attributes:
      constant: ``constant[c]`` is True where channel ``c`` holds the same value everywhere, for every input.
      value: that value where constant, else 0.
    """

    constant: np.ndarray
    value: np.ndarray

    @classmethod
    def varying(cls, channels: int) -> "Signal":
        """A tensor none of whose channels is known to be constant."""
        return cls(np.zeros(channels, dtype=bool), np.zeros(channels))

    @classmethod
    def of(cls, constant, value) -> "Signal":
        """A signal from masks and values (values outside ``constant`` are set to 0)."""
        constant = np.asarray(constant, dtype=bool)
        return cls(constant, np.where(constant, np.asarray(value, dtype=np.float64), 0.0))

    @property
    def zero(self) -> np.ndarray:
        """Where the channel is exactly zero everywhere."""
        return self.constant & (self.value == 0)


#: An op's rule: its input signals -> its output signal.
Rule = Callable[[Sequence[Signal]], Signal]


def propagate(groups: ChannelGroups, rules: Mapping[str, Rule]) -> dict[str, Signal]:
    """Each tensor's :class:`Signal`, computed op by op in topological order by ``rules[op.name]``.

    Raises:
      ValueError: a rule returns a signal of the wrong channel count (naming the op).
    """
    signals: dict[str, Signal] = {}
    for op in groups.ops:
        signal = rules[op.name]([signals[name] for name in op.inputs])
        if signal.constant.shape != (groups.channels[op.name],):
            raise ValueError(f"the rule of op {op.name!r} gave {signal.constant.shape[0]} channels, its output has "
                             f"{groups.channels[op.name]}")
        signals[op.name] = signal
    return signals


def keep_masks(groups: ChannelGroups, needed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Which channels of each tensor stay: those whose group holds a needed channel, and at least one per tensor.

    Args:
      groups: the channel groups.
      needed: tensor name -> boolean mask of its channels that a reader needs
        (a model input or output, or a layer that cannot do without the
        channel's value). Tensors not named need nothing.

    Returns:
      Tensor name -> boolean keep mask, one entry per channel. A tensor whose
      every group could go keeps the group of its first channel (a layer
      needs at least one channel); keeping a group never changes what the
      network computes, so this never costs exactness.
    """
    blocked = np.zeros(groups.count, dtype=bool)
    for name, mask in needed.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (groups.channels[name],):
            raise ValueError(f"the needed channels of {name!r} have shape {mask.shape}; the tensor has "
                             f"{groups.channels[name]} channels")
        blocked[groups.of[name][mask]] = True
    for op in groups.ops:
        if not blocked[groups.of[op.name]].any():
            blocked[groups.of[op.name][0]] = True
    return {op.name: blocked[groups.of[op.name]] for op in groups.ops}


@dataclasses.dataclass(frozen=True)
class LayerChange:
    """One layer before and after slimming: its output channels and its parameters."""

    name: str
    channels_before: int
    channels_after: int
    parameters_before: int
    parameters_after: int


@dataclasses.dataclass(frozen=True)
class SlimReport:
    """What slimming removed, layer by layer (every layer of the model, in graph order)."""

    layers: tuple[LayerChange, ...]

    @property
    def parameters_before(self) -> int:
        """All parameters of the pruned model (trainable or not: BatchNormalization's statistics count)."""
        return sum(layer.parameters_before for layer in self.layers)

    @property
    def parameters_after(self) -> int:
        """All parameters of the slimmed model."""
        return sum(layer.parameters_after for layer in self.layers)

    @property
    def parameters_removed(self) -> int:
        """How many parameters slimming removed (negative if folding a constant added more biases than it removed)."""
        return self.parameters_before - self.parameters_after

    @property
    def changed(self) -> list[LayerChange]:
        """The layers that lost channels or parameters."""
        return [layer for layer in self.layers if (layer.channels_before, layer.parameters_before)
                != (layer.channels_after, layer.parameters_after)]

    def summary(self) -> str:
        """One line: the parameters removed, and the channels of the layers that lost some."""
        before = self.parameters_before
        share = self.parameters_removed / before if before else 0.0
        lost = [f"{layer.name} {layer.channels_before}->{layer.channels_after}" for layer in self.changed
                if layer.channels_after != layer.channels_before]
        shown = ", ".join(lost[:8]) + (f", ... ({len(lost)} layers)" if len(lost) > 8 else "")
        return (f"tfimp.slim: removed {self.parameters_removed:,} of {before:,} parameters ({share:.1%}); "
                f"output channels: {shown or 'none removed'}")


def relative_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """``max |expected - actual| / max |expected|`` (0 when both are all zero): how :func:`slim` checks itself."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"the outputs have shapes {expected.shape} and {actual.shape}")
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    error = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if scale == 0.0:
        return 0.0 if error == 0.0 else float("inf")
    return error / scale
