"""Training as the authors trained, on Keras 3: TorchSGD, the schedules, and the IMP callback inside fit."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.keras3 import masks

import k3_helpers as h

BACKEND = keras.backend.backend()


@pytest.mark.parametrize("nesterov,momentum,decay", [(True, 0.9, 5e-4), (False, 0.9, 1e-3), (False, 0.0, 0.0)])
def test_torch_sgd_matches_the_numpy_reference_step_for_step(nesterov, momentum, decay):
    rng = np.random.default_rng(1)
    start = rng.normal(size=(5, 3)).astype("float32")
    grads = rng.normal(size=(6, 5, 3)).astype("float32")
    rates = [0.1, 0.1, 0.05, 0.2, 0.01, 0.1]
    variable = keras.Variable(start)
    optimizer = tfimp.optimizers.TorchSGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=decay)
    optimizer.build([variable])
    w, buffer = start.astype(np.float64), np.zeros((5, 3))
    for gradient, rate in zip(grads, rates):
        optimizer.learning_rate = rate
        optimizer.apply([gradient], [variable])
        d = gradient + decay * w
        if momentum:
            buffer = momentum * buffer + d
            d = d + momentum * buffer if nesterov else buffer
        w = w - rate * d
    np.testing.assert_allclose(h.numpy_of(variable), w, rtol=0, atol=1e-6)


def test_torch_sgd_errors_and_config_round_trip():
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        tfimp.optimizers.TorchSGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum must be in"):
        tfimp.optimizers.TorchSGD(0.1, momentum=1.0)
    optimizer = tfimp.optimizers.make("torch_sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    again = tfimp.optimizers.TorchSGD.from_config(optimizer.get_config())
    assert (again.momentum, again.nesterov, again.coupled_weight_decay) == (0.9, True, 5e-4)
    with pytest.raises(ValueError, match="unknown optimizer"):
        tfimp.optimizers.make("nope", 0.1)


def test_schedules_give_the_documented_values():
    steps = np.arange(10)
    np.testing.assert_allclose(tfimp.lr.tabulate(tfimp.lr.StepDecay(0.1, [3, 6], 0.1), 10),
                               0.1 * 0.1 ** ((steps >= 3).astype(int) + (steps >= 6)), rtol=1e-6)
    np.testing.assert_allclose(tfimp.lr.tabulate(tfimp.lr.LinearToZero(0.2, 10, warmup_steps=2), 10),
                               np.where(steps < 2, 0.2 * (steps + 1) / 2, 0.2 * (1 - np.clip((steps - 2) / 10, 0, 1))),
                               rtol=1e-6)
    np.testing.assert_allclose(tfimp.lr.tabulate(tfimp.lr.Cosine(0.1, 10, 0.01), 10),
                               0.01 + 0.09 * 0.5 * (1 + np.cos(np.pi * steps / 10)), rtol=1e-6)
    slr = tfimp.lr.retrain_schedule("slr", original=tfimp.lr.StepDecay(0.1, [50]), original_steps=100, retrain_steps=20)
    np.testing.assert_allclose(tfimp.lr.tabulate(slr, 20), tfimp.core.retraining.retrain_values(
        "slr", tfimp.core.retraining.Original(tfimp.lr.tabulate(tfimp.lr.StepDecay(0.1, [50]), 100)), 20), rtol=1e-6)


class _RateProbe(keras.layers.Layer):
    """Dense layer without inputs' influence: loss = sum(kernel), so SGD moves each live weight by exactly lr."""


def _probe_model():
    inputs = keras.Input((1,))
    return keras.Model(inputs, keras.layers.Dense(4, use_bias=False, kernel_initializer="ones", name="probe")(inputs))


def test_the_imp_callback_runs_every_steps_rate_inside_the_traced_step():
    """Each step's weight change is that step's rate: the phase tables reach the compiled train function."""
    steps_per_epoch, batch = 5, 1
    x = np.ones((steps_per_epoch * batch, 1), "float32")
    model = tfimp.wrap(_probe_model())
    plan = tfimp.Plan(target_sparsity=0.5, cycles=2, dense_epochs=2, retrain_epochs=2, retrain_schedule="clr",
                      recalibrate_bn=False)
    schedule = tfimp.lr.StepDecay(0.01, [4, 7], factor=0.5)
    imp = tfimp.callbacks.IMP(plan, schedule=schedule, verbose=0)
    model.compile(keras.optimizers.SGD(0.123), loss=lambda y_true, y_pred: keras.ops.sum(y_pred), jit_compile=True)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(h.numpy_of(masks.prunable_kernels(self.model)[0].weight).copy())

    model.fit(x, x, batch_size=batch, epochs=plan.total_epochs, callbacks=[imp, Record()], verbose=0, shuffle=False)
    kernels = [np.ones((1, 4))] + seen
    dense_steps = plan.dense_epochs * steps_per_epoch
    original = tfimp.lr.tabulate(schedule, dense_steps)
    expected = list(original)
    for cycle in (1, 2):
        expected += list(tfimp.lr.retrain_values("clr", tfimp.lr.Original(original), 2 * steps_per_epoch))
    for step, rate in enumerate(expected):
        alive = kernels[step + 1] != 0
        change = kernels[step][alive] - kernels[step + 1][alive]
        np.testing.assert_allclose(change, rate, rtol=1e-5, err_msg=f"step {step}")
    assert [row["cycle"] for row in imp.rows] == [0, 1, 2]
    assert [row["sparsity"] for row in imp.rows] == [0.0, 0.25, 0.5]  # exact: 1 and 2 of 4 weights


def test_imp_in_fit_prunes_to_each_cycles_target_with_rows_and_allr():
    x, y = h.classification_data(256)
    model = tfimp.wrap(h.small_cnn())
    plan = tfimp.Plan.bimp(0.9, 3, total_epochs=5, dense_epochs=2, recalibrate_bn=False)
    imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.LinearToZero(0.05, 16), test_data=(x[:64], y[:64]), verbose=0)
    h.compile_for_classes(model, tfimp.optimizers.TorchSGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
    history = model.fit(x, y, batch_size=32, epochs=plan.total_epochs, callbacks=[imp], verbose=0)
    kernels = masks.prunable_kernels(model)
    total = sum(k.size for k in kernels)
    for row, cycle in zip(imp.rows[1:], (1, 2, 3)):
        assert row["sparsity"] == round(plan.sparsity_after(cycle) * total) / total
        assert 0 < row["initial_lr"] <= 0.05 and row["retrain_schedule"] == "allr"
        assert 0 <= row["test_accuracy"] <= 1 and row["test_accuracy_pruned"] is not None
    assert h.pruned_but_nonzero(model) == 0
    assert history.history["sparsity"][-1] == imp.rows[-1]["sparsity"]
    with pytest.raises(ValueError, match="takes 5 epochs"):
        model.fit(x, y, epochs=3, callbacks=[tfimp.callbacks.IMP(plan, verbose=0)], verbose=0)


def test_not_yet_on_keras3_is_said_not_ignored():
    with pytest.raises(AttributeError, match="tf_keras front end"):
        tfimp.distribute  # noqa: B018  (tf.distribute's strategies for tf_keras)


_WITHOUT_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tensorboard")
class Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"blocked: {spec.name}", name=spec.name)  # as when it is not installed
    def exec_module(self, module):
        pass
class Block(importlib.abc.MetaPathFinder):
    # A spec without origin whose import fails: importlib.util.find_spec answers (torch asks it for tensorflow),
    # and every import of a blocked package fails as a missing one does.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Refuse())
sys.meta_path.insert(0, Block())
import numpy as np, keras, tfimp
x = np.random.default_rng(0).normal(size=(64, 10)).astype("float32"); y = (x[:, :3].argmax(1)).astype("int32")
model = tfimp.wrap(keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]))
plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=1, retrain_epochs=1, recalibrate_bn=False)
model.compile(tfimp.optimizers.TorchSGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=plan.total_epochs, callbacks=[tfimp.callbacks.IMP(plan, verbose=0, chance_guard=False)], verbose=0)
model.save(sys.argv[1]); loaded = tfimp.load_model(sys.argv[1]); stripped = tfimp.strip(loaded)
assert not any(m.startswith(("tensorflow", "tf_keras")) for m in sys.modules), "TensorFlow was imported"
print(tfimp.sparsity(model), tfimp.sparsity(stripped))
"""


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the TensorFlow backend needs TensorFlow")
def test_tfimp_works_where_tensorflow_cannot_be_imported(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tmp_path / "m.keras")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wrapped, stripped = map(float, done.stdout.split()[-2:])
    assert wrapped == round(0.8 * (10 * 16 + 16 * 3)) / (10 * 16 + 16 * 3) == stripped


@pytest.mark.parametrize("shape", [(6,), (4, 4, 3)])
def test_batchnorm_reestimation_is_pytorchs_cumulative_average_of_unbiased_statistics(shape):
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, size=(n,) + shape).astype("float32") for n in (16, 16, 9)]
    inputs = keras.Input(shape)
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs))
    model.predict(batches[0], verbose=0)
    assert tfimp.batchnorm.reestimate(model, batches) == 3
    layer = model.get_layer("bn")
    means = [b.reshape(-1, shape[-1]).mean(0) for b in batches]
    variances = [b.reshape(-1, shape[-1]).var(0, ddof=1) for b in batches]  # torch's running_var: unbiased
    np.testing.assert_allclose(h.numpy_of(layer.moving_mean), np.mean(means, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h.numpy_of(layer.moving_variance), np.mean(variances, 0), rtol=1e-5, atol=1e-5)
    assert layer.momentum == 0.99 and "call" not in vars(layer)
    assert tfimp.batchnorm.reestimate(h.mlp(), batches) == 0  # no BatchNorm: nothing to do


def test_imp_reestimates_batchnorm_after_each_pruning():
    x, y = h.classification_data(256)
    model = tfimp.wrap(h.small_cnn())
    plan = tfimp.Plan(target_sparsity=0.8, cycles=1, dense_epochs=1, retrain_epochs=1)
    imp = tfimp.callbacks.IMP(plan, test_data=(x[:64], y[:64]), recalibration_data=(x, y), verbose=0)
    h.compile_for_classes(model, keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(x, y, batch_size=32, epochs=plan.total_epochs, callbacks=[imp], verbose=0)
    assert imp.rows[1]["test_accuracy_bn_reestimated"] is not None
