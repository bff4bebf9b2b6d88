"""BatchNorm re-estimation: the cumulative average of the batch statistics, on one device and mirrored."""

import numpy as np
import pytest

import tfimp
from tfimp import batchnorm, keras, tf

import helpers


def _bn_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3, name="fc")(x)
    x = keras.layers.BatchNormalization(name="bn_dense")(x)  # a non-fused (2-D) BatchNorm too
    return keras.Model(inputs, x)


def _expected_statistics(model, batches):
    """Per batch: the conv output's channel mean and unbiased variance (as PyTorch), then their plain average."""
    conv = model.get_layer("conv") if "conv" in [layer.name for layer in model.layers] else None
    kernel = (conv or model.layers[1]).get_weights()[0]
    means, variances = [], []
    for x in batches:
        out = tf.nn.conv2d(x, kernel, 1, "SAME").numpy().astype(np.float64)
        means.append(out.mean(axis=(0, 1, 2)))
        variances.append(out.var(axis=(0, 1, 2), ddof=1))
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def test_statistics_are_the_plain_average_over_one_pass():
    model = _bn_model()
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, size=(8, 6, 6, 2)).astype(np.float32) for i in range(5)]
    count = batchnorm.reestimate(model, tf.data.Dataset.from_tensor_slices(np.stack(batches)))
    assert count == 5
    mean, variance = _expected_statistics(model, batches)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.99 and model.get_layer("bn_dense").momentum == 0.99  # restored
    # One pass of Keras' own moving average would be far from it.
    fresh = _bn_model()
    fresh.set_weights(model.get_weights())
    fresh.get_layer("bn").moving_mean.assign(np.zeros(4, np.float32))
    for x in batches:
        fresh(x, training=True)
    assert np.max(np.abs(fresh.get_layer("bn").moving_mean.numpy() - mean)) > 0.5 * np.max(np.abs(mean))


def test_weights_are_unchanged_and_steps_limit_the_pass():
    model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.5)
    before = [w.numpy().copy() for w in model.trainable_variables]
    x, _ = helpers.random_data(64)
    assert batchnorm.reestimate(model, tf.data.Dataset.from_tensor_slices(x).batch(16), steps=2) == 2
    for a, b in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())


def test_mirrored_strategy_gives_the_same_statistics_on_every_replica():
    rng = np.random.default_rng(1)
    data = rng.normal(loc=2.0, size=(32, 6, 6, 2)).astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _bn_model()
    batchnorm.reestimate(model, tf.data.Dataset.from_tensor_slices(data).batch(8))
    # The pass sees the 4 global batches of 8 whole: the average of their statistics.
    mean, variance = _expected_statistics(model, [data[i:i + 8] for i in range(0, 32, 8)])
    bn = model.get_layer("bn")
    for component in bn.moving_mean.values:
        np.testing.assert_allclose(component.numpy(), mean, rtol=1e-4, atol=1e-5)
    for component in bn.moving_variance.values:
        np.testing.assert_allclose(component.numpy(), variance, rtol=1e-4, atol=1e-5)


def test_model_without_batch_norm_and_empty_data():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert batchnorm.reestimate(model, tf.data.Dataset.from_tensor_slices(np.zeros((4, 3), np.float32)).batch(2)) == 0
    with pytest.raises(ValueError, match="no batch"):
        batchnorm.reestimate(_bn_model(), tf.data.Dataset.from_tensor_slices(np.zeros((0, 6, 6, 2), np.float32)))
