"""``structure="channels"`` counts weights: a pruned channel takes its filter and the weights that read it.

Hand-checked small graphs (framework-free): the counts of
:mod:`tfimp.core.channel_weights` and the channels the selection prunes.
"""

import numpy as np
import pytest

from tfimp.core import masking
from tfimp.core.channel_graph import Node
from tfimp.core.channel_weights import KernelInfo, channel_costs, count, own_costs


def _dense_chain():
    """in (4) -> d1 Dense 3 -> d2 Dense 2 (the output)."""
    nodes = [Node("in", "InputLayer", {}, (), 4, 2), Node("d1", "Dense", {}, ("in",), 3, 2),
             Node("d2", "Dense", {}, ("d1",), 2, 2)]
    return nodes, [KernelInfo("d1", "Dense", (4, 3)), KernelInfo("d2", "Dense", (3, 2))]


def _dead(*columns):
    return [np.array(c, bool) for c in columns]


def _pruned_columns(keep):
    columns = np.reshape(keep, (-1, np.shape(keep)[-1]))
    dead = (columns == 0).all(axis=0)
    assert np.all(dead | (columns != 0).all(axis=0))  # whole channels
    return dead


def test_a_channel_costs_its_filter_and_the_next_layers_weights_that_read_it():
    nodes, kernels = _dense_chain()
    costs = channel_costs(kernels, nodes)
    # d1's channel 1: its filter (4 weights) and d2's row 1 (2 weights)
    assert costs.removed(_dead([0, 1, 0], [0, 0])).tolist() == [4, 2]
    # two channels: d1 keeps 4 x 1 of 12, d2 1 x 2 of 6 (a weight read twice counts once)
    assert costs.removed(_dead([1, 1, 0], [0, 0])).tolist() == [8, 4]
    # d2 makes the model's output: slimming keeps its channels, so its pruned filter is not counted
    assert costs.removed(_dead([0, 0, 0], [1, 0])).tolist() == [0, 0]
    assert [p.tolist() for p in costs.prunable()] == [[True] * 3, [False, False]]
    # without the graph (a subclassed model) a channel costs its filter only
    assert channel_costs(kernels, None).removed(_dead([0, 1, 0], [1, 0])).tolist() == [4, 3]


def test_global_prunes_the_lowest_channels_until_enough_weights_go():
    nodes, kernels = _dense_chain()
    costs = channel_costs(kernels, nodes)
    weights = [np.array([[3.0, 1.0, 2.0]] * 4, np.float32), np.full((3, 2), 0.01, np.float32)]
    masks = [np.ones_like(w) for w in weights]
    # 18 weights; 0.3 -> 5: one channel (6 weights) is enough; d2's small columns are outputs, never pruned
    step = masking.select_masks(["d1", "d2"], weights, masks, 0.3, structure="channels", channel_costs=costs)
    assert _pruned_columns(step.keep[0]).tolist() == [False, True, False]
    assert not _pruned_columns(step.keep[1]).any()
    assert step.layer_sparsities == {"d1": 4 / 12, "d2": 2 / 6}
    # 0.5 -> 9: the next lowest channel too (12 weights); the one pruned before stays
    later = masking.select_masks(["d1", "d2"], weights, step.keep, 0.5, structure="channels", channel_costs=costs)
    assert _pruned_columns(later.keep[0]).tolist() == [False, True, True]
    assert later.layer_sparsities == {"d1": 8 / 12, "d2": 4 / 6}
    # 0.6 -> 11 of 18: already passed (12 gone; a channel step overshoots by up to a channel's cost): nothing more
    # goes and nothing comes back, for the global and the layer-wise path alike
    for criterion in ("global", "uniform"):
        again = masking.select_masks(["d1", "d2"], weights, later.keep, 0.6, criterion, structure="channels",
                                     channel_costs=costs)
        assert [k.tolist() for k in again.keep] == [k.tolist() for k in later.keep], criterion
        assert again.layer_sparsities == later.layer_sparsities
    # 0.9 -> 16: d1 keeping a channel, at most 12 of the 18 weights go
    with pytest.raises(ValueError, match=r"cannot reach sparsity 0.9.*min_kept_per_layer=1.*removes 12 of the 18"):
        masking.select_masks(["d1", "d2"], weights, later.keep, 0.9, structure="channels", channel_costs=costs,
                             min_kept_per_layer=1)


def test_a_flattened_channel_costs_its_filter_and_the_dense_rows_at_every_position():
    nodes = [Node("in", "InputLayer", {}, (), 2, 4), Node("conv", "Conv2D", {}, ("in",), 3, 4),
             Node("flat", "Flatten", {}, ("conv",), 12, 2), Node("fc", "Dense", {}, ("flat",), 5, 2),
             Node("out", "Dense", {}, ("fc",), 2, 2)]
    kernels = [KernelInfo("conv", "Conv2D", (3, 3, 2, 3)), KernelInfo("fc", "Dense", (12, 5)),
               KernelInfo("out", "Dense", (5, 2))]
    costs = channel_costs(kernels, nodes)
    # conv's channel 1: its 3 x 3 x 2 filter, and fc's rows 1, 4, 7, 10 (the channel at 4 positions) x 5 units
    assert costs.removed(_dead([0, 1, 0], [0] * 5, [0, 0])).tolist() == [18, 20, 0]
    # and fc's channel 0: fc keeps 8 x 4 of 60 weights, out 4 x 2 of 10
    assert costs.removed(_dead([0, 1, 0], [1, 0, 0, 0, 0], [0, 0])).tolist() == [18, 28, 2]
    entries = [(k.layer, np.ones(k.shape), k.layer, k.class_name) for k in kernels]
    entries[0][1][..., 1] = 0
    assert count(entries, lambda: nodes) == {"conv": (18, 54), "fc": (20, 60), "out": (0, 10)}


def test_channels_an_add_joins_go_together_and_only_together():
    nodes = [Node("in", "InputLayer", {}, (), 4, 2), Node("a", "Dense", {}, ("in",), 3, 2),
             Node("b", "Dense", {}, ("in",), 3, 2), Node("add", "Add", {}, ("a", "b"), 3, 2),
             Node("c", "Dense", {}, ("add",), 2, 2)]
    kernels = [KernelInfo("a", "Dense", (4, 3)), KernelInfo("b", "Dense", (4, 3)), KernelInfo("c", "Dense", (3, 2))]
    costs = channel_costs(kernels, nodes)
    assert costs.removed(_dead([1, 0, 0], [0, 0, 0], [0, 0])).tolist() == [0, 0, 0]  # b still makes the channel
    assert costs.removed(_dead([1, 0, 0], [1, 0, 0], [0, 0])).tolist() == [4, 4, 2]
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=k.shape).astype("float32") for k in kernels]
    # 30 weights, 0.3 -> 9: one joined pair (10 weights), the one of lowest joint L2 norm
    step = masking.select_masks(["a", "b", "c"], weights, [np.ones_like(w) for w in weights], 0.3,
                                structure="channels", channel_costs=costs)
    dead = [_pruned_columns(k) for k in step.keep]
    joint = np.sqrt(np.square(weights[0]).sum(0) + np.square(weights[1]).sum(0))
    assert dead[0].tolist() == dead[1].tolist() == (joint == joint.min()).tolist()
    assert step.layer_sparsities == {"a": 4 / 12, "b": 4 / 12, "c": 2 / 6}


def test_layer_wise_criteria_scale_their_channel_shares_to_the_weight_target():
    # conv 4 -> 10 (3x3: 36 a filter) and fc 40 -> 6 without a graph: uniform allots half of each layer's
    # channels at s = 0.5 (180 + 120 = 300 of 600 weights); at s = 0.3 (180 weights) it scales both shares down
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(3, 3, 4, 10)).astype("float32"), rng.normal(size=(40, 6)).astype("float32")]
    step = masking.select_masks(["conv", "fc"], weights, [np.ones_like(w) for w in weights], 0.3, "uniform",
                                structure="channels", channel_costs=own_costs([w.shape for w in weights]))
    dead = [_pruned_columns(k) for k in step.keep]
    # uniform allots 3 of 10 and 2 of 6 at 0.3; the smallest factor with 36 * n1 + 40 * n2 >= 180 keeps the
    # shares 0.3 and 1/3 in proportion: factor 5/6 gives 2.5 -> 3 and 1.67 -> 2 channels (188 weights)
    assert [int(d.sum()) for d in dead] == [3, 2]
    removed = 36 * 3 + 40 * 2
    assert sum(step.layer_sparsities[n] * s for n, s in (("conv", 360), ("fc", 240))) == pytest.approx(removed)
