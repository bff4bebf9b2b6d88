"""Accelerator-friendly steps with the masks: steps_per_execution, XLA (jit_compile) and mixed_float16, on CPU."""

import numpy as np
import pytest

import tfimp
from tfimp import keras, tf

import helpers

PLAN = dict(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=2, retrain_schedule="slr")


def _run(model=None, **settings):
    keras.utils.set_random_seed(0)
    x, y = helpers.random_data(64)
    imp = tfimp.IMP(**PLAN, batch_size=16, learning_rate=0.05, **settings)
    rows = imp.run(model or helpers.small_cnn(), (x, y), test=(x, y), verbose=0)
    return imp, rows


def _masks(model):
    return [k.mask.numpy() for k in tfimp.wrapping.prunable_kernels(model)]


def _assert_exactly_pruned(model):
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.75)
    for kernel in tfimp.wrapping.prunable_kernels(model):
        assert not np.any(kernel.weight.numpy()[kernel.mask.numpy() == 0]), kernel.name


@pytest.fixture(scope="module")
def deterministic_ops():
    """Deterministic TF ops for this module only (so runs compare weight for weight), then as before.

    TensorFlow exports only the switch on; the switch off is in its framework config module.
    """
    from tensorflow.python.framework import config as framework_config

    was_on = framework_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on:
        framework_config.disable_op_determinism()


@pytest.fixture(scope="module")
def plain(deterministic_ops):
    return _run()


def test_several_steps_per_execution_train_the_same_model(plain):
    imp, rows = _run(steps_per_execution=4)
    reference, reference_rows = plain
    for got, expected in zip(_masks(imp.model), _masks(reference.model)):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(imp.model.weights, reference.model.weights):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6, err_msg=got.name)
    assert [r["initial_lr"] for r in rows] == [r["initial_lr"] for r in reference_rows]
    _assert_exactly_pruned(imp.model)


def test_xla_compiled_steps_keep_the_masks_and_the_schedule(plain):
    imp, rows = _run(jit_compile=True)
    assert imp.model.compiled_loss is not None and imp.model._jit_compile  # noqa: SLF001 - Keras keeps it here
    _assert_exactly_pruned(imp.model)
    _, reference_rows = plain
    assert [r["initial_lr"] for r in rows] == [r["initial_lr"] for r in reference_rows]
    assert rows[-1]["train_loss"] == pytest.approx(reference_rows[-1]["train_loss"], rel=0.05)


def test_mixed_float16_keeps_pruned_weights_exactly_zero(plain):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        base = helpers.small_cnn()
        model = keras.Model(base.input, keras.layers.Activation("linear", dtype="float32")(base.output))
        imp, rows = _run(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert isinstance(imp.model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert float(imp.model.optimizer.loss_scale) > 1.0  # the loss scale survived the optimizer resets
    _assert_exactly_pruned(imp.model)
    for _, wrapper in tfimp.wrapping.wrappers(imp.model):
        assert wrapper.layer.compute_dtype == "float16"
        for weight, mask, _ in wrapper.pruning_vars:
            assert weight.dtype == tf.float32 and mask.dtype == tf.float32
            # What the float16 forward pass multiplies with: exactly zero where pruned.
            effective = tf.cast(weight * mask, tf.float16).numpy()
            assert not np.any(effective[mask.numpy() == 0])
    _, reference_rows = plain
    assert [r["initial_lr"] for r in rows] == [r["initial_lr"] for r in reference_rows]
    assert np.isfinite(rows[-1]["train_loss"])
