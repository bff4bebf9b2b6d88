"""The channels structure's graph reading, framework-free: which BatchNormalization channels a pruned filter reaches."""

import numpy as np

from tfimp.core import channel_graph
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
