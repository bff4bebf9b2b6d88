"""Contract tests: every private attribute of TensorFlow/tf_keras/tfmot tfimp reads still means what tfimp needs.

`benchmarks/install_check.py` runs this file on the oldest and newest TensorFlow allowed.
"""

import numpy as np
import pytest

import tfimp
from tfimp import keras, tf, wrapping
from tfimp.tf_keras import _private, tfmot_glue

import helpers


def test_a_missing_attribute_fails_loudly_naming_the_versions():
    with pytest.raises(_private.UpstreamChanged, match=r"object\._gone \(testing\).*tensorflow 2\.\d+.*tf-keras.*tfmot"):
        _private.attribute(object(), "_gone", what="testing")
    with pytest.raises(_private.UpstreamChanged):
        _private.set_attribute(object(), "_gone", 1, what="testing")


def test_sublayers_and_graph_networks():
    model = helpers.small_cnn()
    direct = _private.flatten_layers(model, recursive=False)
    assert [layer.name for layer in direct] == [layer.name for layer in model.layers]
    assert _private.is_graph_network(model)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    assert not _private.is_graph_network(sub) and _private.save_spec(sub) is None
    sub(np.zeros((1, 3), "float32"))
    spec = _private.save_spec(sub)
    spec = spec[0][0] if isinstance(spec, tuple) else spec
    assert tuple(spec.shape)[1:] == (3,)


def test_autocast_variable_inner_and_the_constraint_hook():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert _private.is_autocast_variable(layer.kernel)
    inner = _private.autocast_inner(layer.kernel)
    assert inner.dtype == tf.float32 and not _private.is_autocast_variable(inner)
    # the mask constraint is what every optimizer applies after its update
    model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.8)
    kernel = wrapping.prunable_kernels(model)[0]
    assert isinstance(kernel.weight.constraint, tfmot_glue.KeepPrunedConstraint)
    x, y = helpers.random_data(16)
    for optimizer in (keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.Adam(0.01)):
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(True))
        model.train_on_batch(x, y)
        assert not np.any(kernel.weight.numpy()[kernel.mask.numpy() == 0])


def test_optimizer_learning_rate_and_slots():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    assert float(keras.backend.get_value(_private.optimizer_learning_rate(optimizer))) == pytest.approx(0.1)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.5, 0.25])
    _private.set_optimizer_schedule(optimizer, schedule)
    assert _private.optimizer_learning_rate(optimizer) is schedule
    variables = [tf.Variable(np.ones(3, "float32")), tf.Variable(np.ones(2, "float32"))]
    optimizer.build(variables)
    assert [_private.slot_index(optimizer, v) for v in variables] == [0, 1]
    assert optimizer.momentums[1].shape == (2,)


def test_multi_worker_mode_and_tfmot_structures():
    assert _private.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert _private.in_multi_worker_mode(tf.distribute.MirroredStrategy(["/cpu:0"])) is False
    dense = keras.layers.Dense(2)
    assert tfmot_glue._tfmot_weight_names(dense) == ["kernel"]


def test_the_callbacks_of_a_running_fit_are_found_and_none_outside_one():
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["running"] = _private.running_callbacks(self)

    probe, other = Probe(), keras.callbacks.TerminateOnNaN()
    model = helpers.small_cnn()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    x, y = helpers.random_data(8)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[probe, other])
    assert probe in seen["running"] and other in seen["running"]
    assert _private.running_callbacks(probe) is None


def test_a_variable_momentum_is_read_by_batchnorm_at_every_call():
    layer = keras.layers.BatchNormalization()
    x = np.random.default_rng(0).normal(3.0, 2.0, (64, 5)).astype("float32")
    layer(x)  # build
    momentum = tf.Variable(0.0, trainable=False)
    original = _private.swap_batchnorm_momentum(layer, momentum)
    assert original == pytest.approx(0.99)
    step = tf.function(lambda inputs: layer(inputs, training=True))
    step(x)  # momentum 0: the moving mean becomes this batch's mean
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(0), rtol=1e-5)
    momentum.assign(1.0)  # momentum 1: the traced pass must read the new value and keep the mean
    step(x + 10.0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.mean(0), rtol=1e-5)
    assert _private.swap_batchnorm_momentum(layer, original) is momentum and layer.momentum == original


def test_tfmot_pruning_triples_and_compiled_function_reset():
    model = tfimp.wrap(helpers.small_cnn())
    wrapper = wrapping.wrappers(model)[0][1]
    weight, mask, threshold = _private.pruning_triples(wrapper)[0]
    assert mask.shape == weight.shape and threshold.shape == ()

    class Broken:
        pruning_vars = [(weight, threshold)]

    with pytest.raises(_private.UpstreamChanged, match="triples"):
        _private.pruning_triples(Broken())
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    x, _ = helpers.random_data(4)
    model.predict(x, verbose=0)
    traced = model.predict_function
    _private.reset_compiled_functions(model)
    assert model.predict_function is not traced
