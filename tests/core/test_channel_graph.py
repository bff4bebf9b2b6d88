"""The channels structure's graph reading, framework-free: which BatchNormalization channels a pruned filter reaches."""

import types

import numpy as np

from tfimp.core import channel_graph, channel_selection
from tfimp.core.channel_graph import Node


def _graph():
    """input -> conv1 -> bn1 -> relu -+-> add -> bn2 -> flatten -> bn3;  relu -> conv2 -+"""
    return [Node("input", "InputLayer", {}, (), 3, 4),
            Node("conv1", "Conv2D", {}, ("input",), 4, 4),
            Node("bn1", "BatchNormalization", {"axis": [3]}, ("conv1",), 4, 4),
            Node("relu", "ReLU", {}, ("bn1",), 4, 4),
            Node("conv2", "Conv2D", {}, ("relu",), 4, 4),
            Node("add", "Add", {}, ("relu", "conv2"), 4, 4),
            Node("bn2", "BatchNormalization", {"axis": -1}, ("add",), 4, 4),
            Node("flatten", "Flatten", {}, ("bn2",), 64, 2),
            Node("bn3", "BatchNormalization", {"axis": -1}, ("flatten",), 64, 2)]


def test_a_batch_norm_is_zeroed_where_every_filter_making_its_channel_is_pruned():
    dead = {"conv1": np.array([True, True, False, False]), "conv2": np.array([True, False, True, False])}
    zeroed = channel_graph.dead_batch_norm_channels(_graph(), dead)
    np.testing.assert_array_equal(zeroed["bn1"], [True, True, False, False])  # bn1 reads conv1 alone
    np.testing.assert_array_equal(zeroed["bn2"], [True, False, False, False])  # the Add joins conv1 and conv2
    assert "bn3" not in zeroed  # past an unknown (here: Flatten) layer nothing is zeroed


def test_a_batch_norm_on_another_axis_or_nothing_pruned_is_left_alone():
    nodes = _graph()
    nodes[2] = Node("bn1", "BatchNormalization", {"axis": 1}, ("conv1",), 4, 4)
    assert channel_graph.dead_batch_norm_channels(nodes, {"conv1": np.ones(4, bool)}) == {}
    assert channel_graph.dead_batch_norm_channels(_graph(), {}) == {}


def test_dead_filters_read_whole_columns_of_single_kernel_layers_only():
    keep = np.ones((3, 3, 2, 4), np.float32)
    keep[..., 1] = 0
    found = channel_graph.dead_filters([("conv", "Conv2D", 1, keep), ("lstm", "LSTM", 2, keep),
                                        ("up", "Conv2DTranspose", 1, keep)])
    assert list(found) == ["conv"]
    np.testing.assert_array_equal(found["conv"], [False, True, False, False])


def test_read_nodes_follows_a_sequential_and_a_functional_config():
    config = {"layers": [{"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 5]}},
                         {"class_name": "Dense", "config": {"name": "fc"}, "name": "fc",
                          "inbound_nodes": [([["in", 0, 0]], [])]}]}
    describe = {"fc": ("Dense", {"units": 2}, (None, 2))}.__getitem__
    sequential = channel_graph.read_nodes(config, True, lambda entry: [], describe)
    functional = channel_graph.read_nodes(config, False, lambda entry: entry["inbound_nodes"], describe)
    for nodes in (sequential, functional):
        assert [(n.name, n.class_name, n.inputs, n.channels, n.rank) for n in nodes] == [
            ("in", "InputLayer", (), 5, 2), ("fc", "Dense", ("in",), 2, 2)]


def _kernel(name, kind, shape):
    """A front end's prunable kernel as the graph functions read it: its wrapper's name and wrapped layer's class."""
    wrapper = types.SimpleNamespace(name=name, layer=type(kind, (), {})())
    return types.SimpleNamespace(name=f"{name}/kernel", wrapper=wrapper, weight=np.zeros(shape), shape=shape)


def _multiply_and_depthwise():
    """input -> conv1 -+-> multiply -> depthwise -> bn -> conv3;  input -> conv2 -+"""
    nodes = [Node("input", "InputLayer", {}, (), 2, 4),
             Node("conv1", "Conv2D", {}, ("input",), 4, 4),
             Node("conv2", "Conv2D", {}, ("input",), 4, 4),
             Node("multiply", "Multiply", {}, ("conv1", "conv2"), 4, 4),
             Node("depthwise", "DepthwiseConv2D", {"depth_multiplier": 2}, ("multiply",), 8, 4),
             Node("bn", "BatchNormalization", {"axis": -1}, ("depthwise",), 8, 4),
             Node("conv3", "Conv2D", {}, ("bn",), 3, 4)]
    kernels = [_kernel("conv1", "Conv2D", (1, 1, 2, 4)), _kernel("conv2", "Conv2D", (1, 1, 2, 4)),
               _kernel("depthwise", "DepthwiseConv2D", (3, 3, 4, 2)), _kernel("conv3", "Conv2D", (1, 1, 8, 3))]
    return nodes, kernels


def test_channels_joined_by_a_multiply_are_pruned_together_and_a_depthwise_kernel_follows_them():
    nodes, kernels = _multiply_and_depthwise()
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=k.shape).astype(np.float32) for k in kernels]
    weights[2] *= 0.001  # the depthwise kernel's own columns are weakest of all, and still not ranked
    masks = [np.ones(k.shape, np.float32) for k in kernels]
    step = channel_selection.select_channels(kernels, weights, masks, lambda: nodes, 0.25, "global", "channels")
    dead = [(keep.reshape(-1, keep.shape[-1]) == 0).all(axis=0) for keep in step.keep]
    np.testing.assert_array_equal(dead[0], dead[1])  # the Multiply ties conv1's channels to conv2's
    assert dead[0].sum() == 1 and not dead[3].any()  # one pair (a quarter of 8 + 8 + 72 + 24 weights); conv3
    # makes the model's output: kept
    sliced = (step.keep[2] == 0).all(axis=(0, 1, 3))
    np.testing.assert_array_equal(sliced, dead[0])  # the depthwise kernel: its slices of the pruned channels
    np.testing.assert_array_equal((step.keep[2] == 0).any(axis=(0, 1, 3)), dead[0])  # and nothing else of it
    assert step.layer_sparsities["depthwise/kernel"] == sliced.mean()  # its weights reading them count as removed
    every = {"conv1": np.ones(4, bool), "conv2": np.ones(4, bool)}
    assert "bn" in channel_graph.dead_batch_norm_channels(nodes, every)  # through the depthwise (repeated)
    np.testing.assert_array_equal(channel_graph.dead_batch_norm_channels(nodes, {"conv1": dead[0], "conv2": dead[1]})
                                  ["bn"], np.repeat(dead[0], 2))
    later = channel_selection.select_channels(kernels, weights, step.keep, lambda: nodes, 0.5, "global", "channels")
    assert np.all(later.keep[2] <= step.keep[2])  # a later step starts from the sliced mask: nothing revived


def test_masks_read_back_tell_a_channels_pruned_model():
    whole = np.ones((3, 3, 2, 4), np.float32)
    whole[..., 1] = 0
    partial = np.ones((3, 3, 2, 4), np.float32)
    partial[0, 0, 0, :] = 0
    assert channel_graph.pruned_by_channels([whole, np.ones((4, 2))])
    assert not channel_graph.pruned_by_channels([whole, partial])  # an unstructured mask prunes parts of columns
    assert not channel_graph.pruned_by_channels([np.ones((4, 2))])  # nothing pruned: nothing to hold
    assert not channel_graph.pruned_by_channels([])
