"""tfimp.slim on tf_keras: channel-pruned models rebuilt without their pruned channels, predictions unchanged."""

import numpy as np
import pytest

import tfimp
from tfimp import keras
from tfimp.tf_keras import slimming

import slim_models

X = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")


def test_a_pruned_cnn_loses_exactly_the_channels_nothing_needs():
    model = slim_models.pruned_residual_cnn(keras)
    slimmed, report = slimming.slim_with_report(model)
    channels = slim_models.output_channels(slimmed)
    assert {name: channels[name] for name in slim_models.RESIDUAL_CNN_KEPT} == slim_models.RESIDUAL_CNN_KEPT
    assert slim_models.relative_difference(model(X), slimmed(X)) <= 1e-4
    assert report.parameters_removed == model.count_params() - slimmed.count_params() > 0
    assert report.parameters_before == model.count_params()
    assert slimming.slim_with_report(slimmed)[1].parameters_removed == 0  # nothing left to remove


def test_the_slimmed_model_saves_and_loads_as_keras_and_h5(tmp_path):
    model = slim_models.pruned_residual_cnn(keras)
    slimmed = tfimp.slim(model)
    for name in ("slim.keras", "slim.h5"):
        path = str(tmp_path / name)
        slimmed.save(path)
        loaded = keras.models.load_model(path)
        assert slim_models.output_channels(loaded) == slim_models.output_channels(slimmed)
        assert slim_models.relative_difference(model(X), loaded(X)) <= 1e-4


def test_a_wrapped_model_is_stripped_then_slimmed():
    model = slim_models.pruned_residual_cnn(keras)
    slimmed = tfimp.slim(tfimp.wrap(model))
    assert not tfimp.tf_keras.wrapping.wrappers(slimmed)
    channels = slim_models.output_channels(slimmed)
    assert {name: channels[name] for name in slim_models.RESIDUAL_CNN_KEPT} == slim_models.RESIDUAL_CNN_KEPT
    assert slim_models.relative_difference(model(X), slimmed(X)) <= 1e-4


def test_a_dense_layer_folds_a_constant_unit_and_gains_a_bias():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(4, activation="sigmoid", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, use_bias=False, name="head")(hidden))
    slim_models.randomize(model)
    slim_models.zero_filters(model, "hidden", [1, 2], bias=0.7)  # sigmoid(0.7), a constant the head folds
    slimmed = tfimp.slim(model)
    head = slimmed.get_layer("head")
    assert head.use_bias and head.kernel.shape == (2, 3)
    sigmoid = 1 / (1 + np.exp(-0.7))
    kernel = model.get_layer("head").get_weights()[0]
    np.testing.assert_allclose(head.bias.numpy(), sigmoid * kernel[[1, 2]].sum(0), rtol=1e-6)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    assert slim_models.relative_difference(model(x), slimmed(x)) <= 1e-4


def test_a_sequential_model_is_slimmed_as_a_sequential_model():
    model, x = slim_models.pruned_mlp(keras)
    slimmed = tfimp.tf_keras.slim(model)
    assert isinstance(slimmed, keras.Sequential) and slimmed.get_layer("a").units == 5
    assert slimmed.get_layer("b").use_bias
    assert slim_models.relative_difference(model(x), slimmed(x)) <= 1e-4


def test_a_squeeze_and_excitation_block_loses_the_channels_its_input_zeroes():
    slim_models.check_squeeze_excite(keras, tfimp.slim, lambda model, x: model(x))


def test_a_conv1d_model_loses_a_zero_channel_through_same_average_pooling():
    slim_models.check_conv1d(keras, tfimp.slim, lambda model, x: model(x))


def test_mobilenet_v2_loses_the_channels_of_a_dead_batchnorm_and_of_a_residual():
    slim_models.check_mobilenet(keras, tfimp.slim, lambda model, x: model(x))


def test_resnet50_loses_bottleneck_channels_and_a_residual_channel_of_a_stage():
    model = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=4)
    # weights=None: BatchNorm's beta and moving mean are 0, so a zero filter with a zero bias gives 0 after it.
    slim_models.zero_filters(model, "conv2_block1_1_conv", [0, 1, 2])  # read by a 3x3 conv as zeros: removed
    for name in ("conv2_block1_0_conv", "conv2_block1_3_conv", "conv2_block2_3_conv", "conv2_block3_3_conv"):
        slim_models.zero_filters(model, name, [7])  # every producer of stage 2's residual channel 7: removed
    slim_models.zero_filters(model, "conv3_block1_0_conv", [9])  # one producer of stage 3's channel 9: kept
    slimmed = tfimp.slim(model)
    channels = slim_models.output_channels(slimmed)
    assert channels["conv2_block1_1_conv"] == 61
    assert [channels[f"conv2_block{i}_out"] for i in (1, 2, 3)] == [255] * 3
    assert channels["conv3_block1_out"] == 512
    assert slimmed.get_layer("conv3_block1_1_conv").kernel.shape[-2] == 255
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert slim_models.relative_difference(model(x), slimmed(x)) <= 1e-4


def test_efficientnet_b0_with_half_of_every_convolution_pruned_slims_and_predicts_the_same():
    model = keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=4)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D":
            filters = layer.filters
            slim_models.zero_filters(model, layer.name, rng.choice(filters, filters // 2, replace=False))
    slimmed, report = slimming.slim_with_report(model)
    assert report.parameters_removed == model.count_params() - slimmed.count_params() > model.count_params() // 3
    reshape = slimmed.get_layer("block2a_se_reshape")  # squeeze-and-excitation: (C,) -> (1, 1, C), C slimmed
    assert reshape.target_shape[-1] == slimmed.get_layer("block2a_activation").output.shape[-1] < 96
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    assert slim_models.relative_difference(model(x), slimmed(x)) <= 1e-4


def test_what_cannot_be_slimmed_is_refused_by_name():
    inputs = keras.Input((4, 4, 3))
    conv = keras.layers.Conv2D(3, 1, name="shared")
    model = keras.Model(inputs, conv(conv(inputs)))
    with pytest.raises(ValueError, match="'shared'.*shared layer"):
        tfimp.slim(model)
    with pytest.raises(ValueError, match="built on a keras.Input"):
        tfimp.slim(keras.Sequential([keras.layers.Dense(2)]))
    upsampled = keras.layers.Conv2DTranspose(4, 2, name="up")(inputs)
    with pytest.raises(ValueError, match=r"'up' \(Conv2DTranspose\).*does not know"):
        tfimp.slim(keras.Model(inputs, upsampled))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        tfimp.slim(Subclassed())
