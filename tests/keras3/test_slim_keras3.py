"""tfimp.keras3.slim (run on the JAX and TensorFlow backends): channel-pruned models rebuilt without their pruned
channels, predictions unchanged."""

import keras
import numpy as np
import pytest

import tfimp
from tfimp.keras3 import masks, slimming

import slim_models

X = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")


def _predict(model, x):
    return np.asarray(model.predict_on_batch(x))


def test_a_pruned_cnn_loses_exactly_the_channels_nothing_needs(tmp_path):
    model = slim_models.pruned_residual_cnn(keras)
    slimmed, report = slimming.slim_with_report(model)
    channels = slim_models.output_channels(slimmed)
    assert {name: channels[name] for name in slim_models.RESIDUAL_CNN_KEPT} == slim_models.RESIDUAL_CNN_KEPT
    assert slim_models.relative_difference(_predict(model, X), _predict(slimmed, X)) <= 1e-4
    assert report.parameters_removed == model.count_params() - slimmed.count_params() > 0
    # The saved file is an ordinary Keras 3 model, its config naming the layers' own initializers.
    path = str(tmp_path / "slim.keras")
    slimmed.save(path)
    loaded = keras.saving.load_model(path)
    assert slim_models.output_channels(loaded) == channels
    assert slim_models.relative_difference(_predict(model, X), _predict(loaded, X)) <= 1e-4
    assert loaded.get_layer("conv2").get_config()["kernel_initializer"] == \
        model.get_layer("conv2").get_config()["kernel_initializer"]


def test_a_wrapped_model_is_stripped_then_slimmed():
    model = slim_models.pruned_residual_cnn(keras)
    slimmed = tfimp.slim(tfimp.wrap(model))
    assert not masks.wrappers(slimmed)
    channels = slim_models.output_channels(slimmed)
    assert {name: channels[name] for name in slim_models.RESIDUAL_CNN_KEPT} == slim_models.RESIDUAL_CNN_KEPT
    assert slim_models.relative_difference(_predict(model, X), _predict(slimmed, X)) <= 1e-4


def test_a_sequential_model_is_slimmed_as_a_sequential_model():
    model, x = slim_models.pruned_mlp(keras)
    slimmed = tfimp.keras3.slim(model)
    assert isinstance(slimmed, keras.Sequential) and slimmed.get_layer("a").units == 5
    assert slimmed.get_layer("b").use_bias  # the folded relu(0.5) needs a bias b did not have
    assert slim_models.relative_difference(_predict(model, x), _predict(slimmed, x)) <= 1e-4


def test_a_squeeze_and_excitation_block_loses_the_channels_its_input_zeroes():
    slim_models.check_squeeze_excite(keras, tfimp.slim, _predict)


def test_a_conv1d_model_loses_a_zero_channel_through_same_average_pooling():
    slim_models.check_conv1d(keras, tfimp.slim, _predict)


def test_mobilenet_v2_loses_the_channels_of_a_dead_batchnorm_and_of_a_residual():
    slim_models.check_mobilenet(keras, tfimp.slim, _predict)


def test_what_cannot_be_slimmed_is_refused_by_name():
    inputs = keras.Input((4, 4, 3))
    conv = keras.layers.Conv2D(3, 1, name="shared")
    with pytest.raises(ValueError, match="'shared'.*shared layer"):
        tfimp.slim(keras.Model(inputs, conv(conv(inputs))))
    with pytest.raises(ValueError, match="built on a keras.Input"):
        tfimp.slim(keras.Sequential([keras.layers.Dense(2)]))
    upsampled = keras.layers.Conv2DTranspose(4, 2, name="up")(inputs)
    with pytest.raises(ValueError, match=r"'up' \(Conv2DTranspose\).*does not know"):
        tfimp.slim(keras.Model(inputs, upsampled))
    norm = keras.layers.BatchNormalization(axis=1, name="rows")(inputs)
    with pytest.raises(ValueError, match="'rows'.*not the channel"):
        tfimp.slim(keras.Model(inputs, norm))
    with pytest.raises(ValueError, match="'add'.*operation keras.ops.Add"):
        tfimp.slim(keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs) + 3.0))
    lora = keras.layers.Dense(2, name="lora")
    model = keras.Model(inputs, lora(inputs))
    lora.enable_lora(1)
    with pytest.raises(ValueError, match="'lora'.*holds 4 weights"):
        tfimp.slim(model)
