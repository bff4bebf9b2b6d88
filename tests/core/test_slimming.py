"""The framework-free part of slimming: channel groups over an abstract graph, the keep decision, and the Keras
layer rules on plain configs and numpy weights (checked against a numpy forward pass)."""

import numpy as np
import pytest

from tfimp.core import slim_layers
from tfimp.core.slimming import (CONCAT, FLATTEN, FRESH, REPEAT, SAME, SOURCE, Op, Signal, group_channels,
                                 keep_masks, propagate, relative_difference)


def _graph():
    return [Op("image", (), SOURCE, channels=4),
            Op("a", ("image",), FRESH, channels=6), Op("a_bn", ("a",), SAME),
            Op("c", ("image",), FRESH, channels=6),
            Op("add", ("a_bn", "c"), SAME),
            Op("cat", ("add", "a"), CONCAT),
            Op("dw", ("add",), REPEAT, factor=2),
            Op("flat", ("add",), FLATTEN, factor=3),
            Op("fc", ("flat",), FRESH, channels=5)]


def test_channels_joined_by_add_concatenate_depthwise_and_flatten_share_a_group():
    groups = group_channels(_graph())
    of = groups.of
    assert groups.channels == {"image": 4, "a": 6, "a_bn": 6, "c": 6, "add": 6, "cat": 12, "dw": 12, "flat": 18,
                               "fc": 5}
    np.testing.assert_array_equal(of["a"], of["c"])  # both producers of the Add
    np.testing.assert_array_equal(of["add"], of["a_bn"])
    np.testing.assert_array_equal(of["cat"][:6], of["add"])
    np.testing.assert_array_equal(of["cat"][6:], of["a"])  # the second input, at offset 6
    np.testing.assert_array_equal(of["dw"], np.repeat(of["add"], 2))  # channel c makes 2c and 2c + 1
    np.testing.assert_array_equal(of["flat"], np.tile(of["add"], 3))  # unit s * 6 + c is channel c
    assert len(set(of["add"])) == 6 and len(set(of["image"]) | set(of["fc"]) | set(of["add"])) == 15
    assert groups.count == 15  # the input's 4, the residual's 6, fc's 5: a FRESH op starts new groups
    members = groups.members(int(of["add"][2]))
    assert ("a", 2) in members and ("c", 2) in members and ("cat", 8) in members and ("dw", 5) in members
    assert ("flat", 14) in members and len(members) == 4 + 2 + 2 + 3  # a c a_bn add, cat twice, dw twice, flat 3x


def test_a_graph_that_cannot_be_grouped_is_refused_by_name():
    with pytest.raises(ValueError, match="'sum'.*different channel counts"):
        group_channels([Op("x", (), SOURCE, channels=3), Op("y", ("x",), FRESH, channels=4),
                        Op("sum", ("x", "y"), SAME)])
    with pytest.raises(ValueError, match="'y' takes \\['nowhere'\\]"):
        group_channels([Op("x", (), SOURCE, channels=3), Op("y", ("nowhere",), SAME)])
    with pytest.raises(ValueError, match="cycle"):
        group_channels([Op("x", (), SOURCE, channels=3), Op("y", ("x", "z"), SAME), Op("z", ("y",), SAME)])
    with pytest.raises(ValueError, match="mapping 'sideways'"):
        Op("y", ("x",), "sideways")


def test_a_needed_channel_keeps_its_whole_group_and_every_tensor_keeps_one():
    groups = group_channels(_graph())
    needed = {"c": np.array([0, 0, 1, 0, 0, 0], bool), "fc": np.ones(5, bool), "image": np.ones(4, bool)}
    keep = keep_masks(groups, needed)
    np.testing.assert_array_equal(keep["a"], [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(keep["cat"], np.tile(keep["a"], 2))
    np.testing.assert_array_equal(keep["flat"], np.tile(keep["a"], 3))
    assert keep["fc"].all() and keep["image"].all()
    del needed["c"]  # nothing needs the residual: its first channel stays, so that no layer is left empty
    np.testing.assert_array_equal(keep_masks(groups, needed)["a"], [1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        keep_masks(groups, {"c": np.ones(5, bool)})


def test_signals_follow_the_rules_in_graph_order():
    groups = group_channels([Op("x", (), SOURCE, channels=2), Op("y", ("x",), SAME)])
    signals = propagate(groups, {"x": lambda inputs: Signal.of([True, False], [3.0, 9.0]),
                                 "y": lambda inputs: Signal.of(inputs[0].constant, inputs[0].value * 2)})
    np.testing.assert_array_equal(signals["y"].value, [6.0, 0.0])
    with pytest.raises(ValueError, match="rule of op 'y' gave 3 channels"):
        propagate(groups, {"x": lambda inputs: Signal.varying(2), "y": lambda inputs: Signal.varying(3)})
    assert relative_difference([2.0, -4.0], [2.0, -4.0002]) == pytest.approx(5e-5)


# --- the Keras layer rules, on configs and numpy weights --------------------------------------------------------


def _relu(name, activation, values):
    assert activation in ("relu", None), activation
    return np.maximum(values, 0.0)


def _mlp_calls(rng):
    """input(6) -> Dense(8, relu) -> BatchNormalization -> Dense(5, no bias) -> Dense(3): as a front end reads it."""
    def dense(name, source, units, inputs, activation="linear", use_bias=True):
        weights = [rng.normal(size=(inputs, units)).astype("float32")]
        if use_bias:
            weights.append(rng.normal(size=units).astype("float32"))
        config = {"name": name, "units": units, "activation": activation, "use_bias": use_bias}
        return slim_layers.LayerCall(name, "Dense", config, (source,), weights, ((None, inputs),), (None, units))

    bn_weights = [rng.normal(size=8).astype("float32") for _ in range(3)] + [rng.uniform(0.5, 2, 8).astype("float32")]
    return [slim_layers.LayerCall("x", "InputLayer", {"name": "x", "batch_shape": [None, 6]}, (), [], (), (None, 6)),
            dense("h", "x", 8, 6, activation="relu"),
            slim_layers.LayerCall("bn", "BatchNormalization", {"name": "bn", "axis": -1, "epsilon": 1e-3}, ("h",),
                                  bn_weights, ((None, 8),), (None, 8)),
            dense("g", "bn", 5, 8, use_bias=False), dense("y", "g", 3, 5)]


def _forward(configs, weights, x):
    h = x
    for name in ("h", "bn", "g", "y"):
        w = weights[name]
        if name == "bn":
            gamma, beta, mean, variance = w
            h = gamma * (h - mean) / np.sqrt(variance + 1e-3) + beta
            continue
        h = h @ w[0] + (w[1] if configs[name]["use_bias"] else 0.0)
        if configs[name]["activation"] == "relu":
            h = np.maximum(h, 0.0)
    return h


def test_slim_graph_removes_dead_units_folds_their_constants_and_keeps_predictions():
    calls = _mlp_calls(np.random.default_rng(0))
    h, bn, g = calls[1], calls[2], calls[3]
    h.weights[0][:, [0, 1, 2]] = 0.0
    h.weights[1][[0, 1, 2]] = [0.0, 0.4, -0.4]  # relu: 0, 0.4 and 0: constants; BatchNorm makes them nonzero
    bn.weights[0][6] = 0.0  # gamma 0: unit 6 is beta after the BatchNorm, whatever h makes
    g.weights[0][:, 4] = 0.0  # g's unit 4 is 0 (no bias): y reads it as 0
    slimmed = slim_layers.slim_graph(calls, ["y"], _relu)
    np.testing.assert_array_equal(slimmed.keep["h"], [0, 0, 0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(slimmed.keep["g"], [1, 1, 1, 1, 0])
    assert slimmed.configs["h"]["units"] == 4 and slimmed.configs["g"]["units"] == 4
    assert slimmed.configs["g"]["use_bias"] is True  # the folded constants need a bias g did not have
    assert [w.shape for w in slimmed.weights["g"]] == [(4, 4), (4,)]
    x = np.random.default_rng(1).normal(size=(7, 6))
    before = _forward({c.name: c.config for c in calls}, {c.name: c.weights for c in calls}, x)
    after = _forward(slimmed.configs, slimmed.weights, x)
    assert relative_difference(before, after) < 1e-6
    report = slimmed.report
    assert report.parameters_removed == sum(w.size for c in calls for w in c.weights) - \
        sum(w.size for ws in slimmed.weights.values() for w in ws)
    assert [change.name for change in report.changed] == ["h", "bn", "g", "y"]
    assert "h 8->4" in report.summary()


def test_a_unit_read_by_a_layer_that_needs_it_stays():
    calls = _mlp_calls(np.random.default_rng(0))
    calls[1].weights[0][:, 0] = 0.0  # h's unit 0 is constant relu(bias) ...
    calls[3] = slim_layers.LayerCall("g", "Softmax", {"name": "g"}, ("bn",), [], ((None, 8),), (None, 8))
    calls[4] = slim_layers.LayerCall("y", "Dense", {"name": "y", "units": 3, "activation": "linear"}, ("g",),
                                     [np.ones((8, 3), "float32"), np.zeros(3, "float32")], ((None, 8),), (None, 3))
    slimmed = slim_layers.slim_graph(calls, ["y"], _relu)  # ... but a softmax mixes every unit: all stay
    assert slimmed.keep["h"].all() and slimmed.report.parameters_removed == 0


def test_a_layer_the_rules_do_not_know_is_refused_by_name():
    calls = _mlp_calls(np.random.default_rng(0))
    calls[2] = slim_layers.LayerCall("bn", "Lambda", {"name": "bn"}, ("h",), [], ((None, 8),), (None, 8))
    with pytest.raises(ValueError, match=r"layer 'bn' \(Lambda\).*does not know"):
        slim_layers.slim_graph(calls, ["y"], _relu)
    calls[2] = slim_layers.LayerCall("bn", "Conv2D", {"name": "bn", "data_format": "channels_first"}, ("h",), [],
                                     ((None, 8),), (None, 8))
    with pytest.raises(ValueError, match="'bn'.*channels_first"):
        slim_layers.slim_graph(calls, ["y"], _relu)
