"""The ``channels`` structure on both front ends: whole output channels pruned, their bias and BatchNormalization
zeroed, and ``tfimp.slim`` removing them with the predictions unchanged."""

import numpy as np
import pytest
from front_end_files import StopAfter as _StopAfter

import tfimp


def _residual_cnn(keras):
    """conv1 -> bn1 -> relu, + conv2 (Add), conv3 -> bn3 -> global pooling -> fc."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 1, name="conv2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(6, 3, name="conv3")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, name="fc")(x)
    model = keras.Model(inputs, outputs, name="residual")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights and not layer.name.startswith("conv"):
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in layer.get_weights()])
        elif layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(0.5, 1.5, size=bias.shape).astype("float32")])
    return model


def _inputs(n=8):
    return np.random.default_rng(1).normal(size=(n, 6, 6, 3)).astype("float32")


def _dead(kernel):
    columns = np.reshape(kernel, (-1, np.shape(kernel)[-1]))
    dead, alive = (columns == 0).all(axis=0), (columns != 0).any(axis=0)
    assert np.all(dead != alive)
    return dead


def _weights(model, name):
    return {w.name.split("/")[-1].split(":")[0]: np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            for w in model.get_layer(name).weights}


@pytest.mark.parametrize("structure", ["channels", "channels:l1"])
def test_channels_are_whole_exact_and_output_zero(front_end, structure):
    keras = front_end.keras
    model = tfimp.wrap(_residual_cnn(keras))
    model(_inputs(2))
    per_layer = tfimp.prune(model, 0.5, "uniform", structure=structure)
    assert per_layer == tfimp.layer_sparsity(model, structure="channels")  # the share of each kernel's weights
    assert 0.5 <= tfimp.sparsity(model, structure="channels") < 0.6
    plain = tfimp.strip(model)
    dead = {name: _dead(plain.get_layer(name).get_weights()[0]) for name in ("conv1", "conv2", "conv3", "fc")}
    assert not dead["fc"].any()  # fc's channels are the model's outputs: slimming keeps them, so they stay
    assert all(0 < dead[name].sum() < dead[name].size for name in ("conv1", "conv2", "conv3"))
    for name, channels in dead.items():
        np.testing.assert_array_equal(plain.get_layer(name).get_weights()[1][channels], 0)  # the bias
    # bn1 reads conv1, bn3 reads conv3; after the Add (conv1's channels + conv2's) zero where both are pruned
    for bn, channels in (("bn3", dead["conv3"]), ("bn1", dead["conv1"])):
        gamma, beta = plain.get_layer(bn).get_weights()[:2]
        np.testing.assert_array_equal(gamma == 0, channels)
        np.testing.assert_array_equal(beta == 0, channels)
    copy = keras.models.clone_model(plain)  # layers of their own: the stripped model's may be shared
    copy.set_weights(plain.get_weights())
    probe = keras.Model(copy.inputs[0], [copy.get_layer("bn3").output, copy.get_layer("add").output])
    bn3, add = [front_end.numpy(out) for out in probe(_inputs(), training=False)]
    assert np.all(bn3[..., dead["conv3"]] == 0) and np.all(bn3[..., ~dead["conv3"]] != 0)
    assert np.all(add[..., dead["conv1"] & dead["conv2"]] == 0)


def test_prune_then_slim_keeps_the_predictions_and_loses_the_pruned_weights(front_end):
    keras = front_end.keras
    model = tfimp.wrap(_residual_cnn(keras))
    model(_inputs(2))
    tfimp.prune(model, 0.5, "uniform", structure="channels")
    plain = tfimp.strip(model)
    slim = tfimp.slim(model)
    x = _inputs()
    np.testing.assert_allclose(front_end.numpy(slim(x, training=False)), front_end.numpy(plain(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    dead = {name: _dead(plain.get_layer(name).get_weights()[0]) for name in ("conv1", "conv2", "conv3", "fc")}
    joined = dead["conv1"] & dead["conv2"]  # the Add's channels go only where both filters are pruned
    kept = {"conv1": (3, (~joined).sum()), "conv2": ((~joined).sum(), (~joined).sum()),
            "conv3": ((~joined).sum(), (~dead["conv3"]).sum()), "fc": ((~dead["conv3"]).sum(), 4)}
    spatial = {"conv1": 9, "conv2": 1, "conv3": 9, "fc": 1}
    for name, (inputs, outputs) in kept.items():
        assert slim.get_layer(name).get_weights()[0].size == spatial[name] * inputs * outputs, name
    before = sum(plain.get_layer(name).get_weights()[0].size for name in kept)
    after = sum(slim.get_layer(name).get_weights()[0].size for name in kept)
    # at least the pruned filters of conv3 and fc go, and fc's inputs that read conv3's pruned channels
    fc_kept = (6 - dead["conv3"].sum()) * (4 - dead["fc"].sum())
    assert after <= before - dead["conv3"].sum() * 9 * 8 - (6 * 4 - fc_kept)


def test_gmp_prunes_whole_channels_during_training_and_the_result_slims(front_end):
    keras = front_end.keras
    x = _inputs(96)
    y = x.reshape(96, -1)[:, :4].argmax(1).astype("int32")
    keras.utils.set_random_seed(0)
    runner = tfimp.DuringTraining("gmp", 0.5, 2, criterion="uniform", structure="channels", frequency=1, batch_size=32,
                                  learning_rate=0.05, chance_guard=False)
    rows = runner.run(_residual_cnn(keras), (x, y), verbose=0)
    dead = [_dead(mask) for _, mask in front_end.kernels(runner.model)]
    assert [0 < d.sum() < d.size for d in dead] == [True, True, True, False]  # fc: the outputs stay
    assert rows[-1]["structure"] == "channels" and 0.5 <= rows[-1]["unit_sparsity"] < 0.6
    assert rows[-1]["unit_sparsity"] == tfimp.sparsity(runner.model, structure="channels")
    plain = tfimp.strip(runner.model)
    slim = tfimp.slim(runner.model)  # checks its predictions against the model's itself; here on our inputs too
    np.testing.assert_allclose(front_end.numpy(slim(x[:8], training=False)),
                               front_end.numpy(plain(x[:8], training=False)), rtol=1e-4, atol=1e-5)
    assert slim.count_params() < plain.count_params()


def test_channels_joined_by_an_add_are_pruned_together_and_slim_removes_them(front_end):
    keras = front_end.keras
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(_residual_cnn(keras))
    model(_inputs(2))
    tfimp.prune(model, 0.4, "global", structure="channels", min_kept_per_layer=0.5)  # no layer emptied
    plain = tfimp.strip(model)
    dead = {name: _dead(plain.get_layer(name).get_weights()[0]) for name in ("conv1", "conv2", "conv3", "fc")}
    np.testing.assert_array_equal(dead["conv1"], dead["conv2"])  # the Add ties conv1's channels to conv2's
    assert dead["conv1"].any() and not dead["conv1"].all()
    # round(0.4 * 736) weights, passed by less than the last unit's cost (a joined pair costs at most
    # 27 + 15 + 54 weights: conv1's filter, conv2's column and row, conv3's row)
    assert 0.4 <= tfimp.sparsity(model, structure="channels") < 0.4 + 96 / 736
    slim = tfimp.slim(model)
    kept = int((~dead["conv1"]).sum())
    assert slim.get_layer("conv1").get_weights()[0].shape[-1] == kept  # every pruned pair removed
    assert slim.get_layer("conv2").get_weights()[0].shape[-2:] == (kept, kept)
    x = _inputs()
    np.testing.assert_allclose(front_end.numpy(slim(x, training=False)), front_end.numpy(plain(x, training=False)),
                               rtol=1e-5, atol=1e-5)


def _kernel_weights(model):
    return sum(int(np.size(model.get_layer(name).get_weights()[0])) for name in ("conv1", "conv2", "conv3", "fc"))


def test_half_the_weights_by_channels_leaves_the_slimmed_model_half_the_prunable_weights(front_end):
    keras = front_end.keras
    model = _residual_cnn(keras)
    original = _kernel_weights(model)  # 216 + 64 + 432 + 24
    model = tfimp.wrap(model)
    model(_inputs(2))
    tfimp.prune(model, 0.5, structure="channels")
    counted = tfimp.sparsity(model, structure="channels")
    slim = tfimp.slim(model)
    assert not any("tfimp" in type(layer).__module__ for layer in slim.layers)  # a plain model
    kept = _kernel_weights(slim)
    assert counted == 1 - kept / original  # the count is what slimming removes
    assert tfimp.sparsity(tfimp.strip(model), structure="channels") == counted  # on the stripped model's zeros too
    # about half is left: short of half by less than one channel's cost (a pair joined by the Add: at most 96)
    assert original / 2 - 96 < kept <= original / 2
    report = tfimp.report.model_report(model, structure="channels")
    assert report.unit_sparsity == counted
    assert {layer.name: layer.unit_sparsity for layer in report.layers} == tfimp.layer_sparsity(
        model, structure="channels")


def test_imp_to_075_by_channels_ends_with_a_quarter_of_the_prunable_weights(front_end):
    keras = front_end.keras
    x = _inputs(64)
    y = x.reshape(64, -1)[:, :4].argmax(1).astype("int32")
    keras.utils.set_random_seed(0)
    runner = tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, structure="channels",
                       batch_size=32, learning_rate=0.05, chance_guard=False)
    rows = runner.run(_residual_cnn(keras), (x, y), verbose=0)
    assert [row["cycle"] for row in rows] == [0, 1, 2]
    assert 0.5 <= rows[1]["unit_sparsity"] < 0.5 + 96 / 736  # cycle 1's target: 1 - 0.25 ** 0.5
    kept = _kernel_weights(tfimp.slim(runner.model))
    assert rows[2]["unit_sparsity"] == 1 - kept / 736
    assert 736 / 4 - 96 < kept <= 736 / 4  # a quarter, within one channel's cost


def _fit(front_end, model, epochs=1):
    keras = front_end.keras
    x = _inputs(32)
    y = x.reshape(32, -1)[:, :4].argmax(1).astype("int32")
    if getattr(model, "optimizer", None) is None:
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0)


def _assert_pruned_channels_zero(front_end, plain):
    """The biases and BatchNormalization of the pruned channels exactly zero (the live ones trained), and so the
    pruned channels' outputs."""
    keras = front_end.keras
    dead = {name: _dead(plain.get_layer(name).get_weights()[0]) for name in ("conv1", "conv2", "conv3", "fc")}
    assert dead["conv1"].any() and dead["conv3"].any() and not any(d.all() for d in dead.values())
    for name, channels in dead.items():
        bias = plain.get_layer(name).get_weights()[1]
        assert np.all(bias[channels] == 0) and np.all(bias[~channels] != 0), name
    for bn, channels in (("bn1", dead["conv1"]), ("bn3", dead["conv3"])):
        gamma, beta = plain.get_layer(bn).get_weights()[:2]
        np.testing.assert_array_equal(gamma == 0, channels)
        np.testing.assert_array_equal(beta == 0, channels)
    copy = keras.models.clone_model(plain)
    copy.set_weights(plain.get_weights())
    probe = keras.Model(copy.inputs[0], [copy.get_layer(name).output for name in ("bn1", "add", "bn3", "fc")])
    for training in (False, True):
        bn1, add, bn3, fc = [front_end.numpy(out) for out in probe(_inputs(), training=training)]
        assert np.all(bn1[..., dead["conv1"]] == 0) and np.all(bn3[..., dead["conv3"]] == 0)
        assert np.all(add[..., dead["conv1"] & dead["conv2"]] == 0) and np.all(fc[..., dead["fc"]] == 0)


def test_pruned_channels_bias_and_batch_norm_stay_zero_while_training_and_after_a_reload(front_end, tmp_path):
    model = tfimp.wrap(_residual_cnn(front_end.keras))
    model(_inputs(2))
    _fit(front_end, model)  # a train function traced before the prune: the hold must reach it
    tfimp.prune(model, 0.5, "uniform", structure="channels")
    _fit(front_end, model)
    path = str(tmp_path / "wrapped.keras")
    model.save(path)
    _assert_pruned_channels_zero(front_end, tfimp.strip(model))
    loaded = tfimp.load_model(path)
    _fit(front_end, loaded)  # trained on after loading, without another prune
    _assert_pruned_channels_zero(front_end, tfimp.strip(loaded))


def _depthwise_cnn(keras):
    """conv1 -> depthwise -> bn -> relu -> conv2 -> pooling -> fc."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 1, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, name="fc")(x)
    model = keras.Model(inputs, outputs, name="depthwise_cnn")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # biases and BatchNormalization away from zero, so a pruned channel is seen
        if layer.weights:
            layer.set_weights([w if i == 0 and layer.name != "bn" else rng.uniform(0.5, 1.5, size=w.shape)
                               .astype("float32") for i, w in enumerate(layer.get_weights())])
    return model


def test_a_depthwise_channel_goes_with_the_channel_it_reads_and_slim_removes_both(front_end):
    keras = front_end.keras
    model = tfimp.wrap(_depthwise_cnn(keras))
    model(_inputs(2))
    tfimp.prune(model, 0.5, "uniform", structure="channels")
    _fit(front_end, model)
    plain = tfimp.strip(model)
    dead = _dead(plain.get_layer("conv1").get_weights()[0])
    assert 0 < dead.sum() < 8
    depthwise, depthwise_bias = plain.get_layer("depthwise").get_weights()
    np.testing.assert_array_equal((depthwise == 0).all(axis=(0, 1, 3)), dead)  # its slices of the pruned channels
    np.testing.assert_array_equal(depthwise_bias == 0, dead)
    gamma, beta = plain.get_layer("bn").get_weights()[:2]
    np.testing.assert_array_equal(gamma == 0, dead)
    np.testing.assert_array_equal(beta == 0, dead)
    slim = tfimp.slim(model)
    assert slim.get_layer("depthwise").get_weights()[0].shape[-2] == 8 - dead.sum()
    assert slim.get_layer("conv2").get_weights()[0].shape[-2] == 8 - dead.sum()
    x = _inputs()
    expected = front_end.numpy(plain(x, training=False))
    np.testing.assert_allclose(front_end.numpy(slim(x, training=False)), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_a_resumed_channels_run_holds_its_pruned_channels_without_pruning_again(front_end, tmp_path):
    x = _inputs(32)
    y = x.reshape(32, -1)[:, :4].argmax(1).astype("int32")

    def run(callbacks=()):
        front_end.keras.utils.set_random_seed(0)
        runner = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=2, criterion="uniform",
                           structure="channels", batch_size=8, learning_rate=0.1, chance_guard=False)
        runner.run(_residual_cnn(front_end.keras), (x, y), workdir=str(tmp_path / "run"), verbose=0,
                   callbacks=list(callbacks))
        return runner.model

    with pytest.raises(KeyboardInterrupt):
        run([_StopAfter(front_end.keras, 1)])  # stopped after the first retraining epoch, the prune behind it
    _assert_pruned_channels_zero(front_end, tfimp.strip(run()))  # a new model, restored, trains a retraining epoch
