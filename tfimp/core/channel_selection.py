"""The ``channels`` selection with depthwise kernels: they follow the channels they read, not ranked on their own.

A depthwise kernel (a DepthwiseConv's, a SeparableConv's depthwise kernel)
has no channels of its own: each of its channels reads one input channel.
So :func:`select_channels` leaves its columns out of the ranking (their
channel group is blocked in the costs) while the selection still counts the
weights of it that read a removed channel (:mod:`tfimp.core.channel_weights`),
and then masks its slices of the channels that only pruned filters make
(:func:`tfimp.core.channel_graph.depthwise_keeps`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.core import channel_weights as _channel_weights
from tfimp.core import masking as _masking


def _block(costs: _channel_weights.ChannelCosts, flags: Sequence[bool]) -> _channel_weights.ChannelCosts:
    """``costs`` with the flagged kernels' own output channels in one more group, blocked: never selected."""
    if not any(flags):
        return costs
    group = costs.blocked.size
    out_groups = tuple(np.full(np.size(groups), group, np.int64) if flag else groups
                       for groups, flag in zip(costs.out_groups, flags))
    return dataclasses.replace(costs, out_groups=out_groups, blocked=np.append(costs.blocked, True))


def select_channels(kernels: Sequence, weights: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                    nodes: Callable[[], list[_graph.Node]] | None, sparsity: float, criterion: str, structure: str,
                    **options) -> _masking.MaskStep:
    """:func:`tfimp.core.masking.select_masks` for ``structure="channels"`` on a front end's ``kernels`` (each with
    its ``wrapper``), with their current ``masks``; ``nodes`` reads the model's graph (None: no graph).

    The channels' costs come from the graph (:func:`tfimp.core.channel_weights.costs_of`); depthwise kernels
    are not ranked and are masked after the channels they read (see the module docstring). ``options``:
    ``select_masks``' keyword arguments (``allow_revival``, ``min_kept_per_layer``).
    """
    depthwise = _graph.depthwise_kernels(kernels)
    costs = _block(_channel_weights.costs_of(_channel_weights.kernel_entries(kernels), nodes), depthwise)
    # A depthwise mask prunes parts of columns (the slices); the selection sees its columns, all of them alive.
    columns = [np.ones_like(mask) if flag else mask for mask, flag in zip(masks, depthwise)]
    step = _masking.select_masks([kernel.name for kernel in kernels], weights, columns, sparsity, criterion,
                                 structure=structure, channel_costs=costs, **options)
    if not any(depthwise):
        return step
    keeps = _graph.depthwise_keeps(kernels, [None if flag else keep for keep, flag in zip(step.keep, depthwise)],
                                   masks, nodes)
    return dataclasses.replace(step, keep=keeps)
