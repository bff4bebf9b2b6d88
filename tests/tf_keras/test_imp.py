"""The IMP driver: cycles, learning rates applied, ALLR, resume, distribution, bad input."""

import json
import math
import os

import numpy as np
import pytest

import tfimp
from tfimp.tf_keras import checkpoint
from tfimp import keras, lr, tf, wrapping

import helpers

BATCH = 16
N_TRAIN = 64  # 4 steps per epoch
STEPS = N_TRAIN // BATCH


def _data(seed=0, n=N_TRAIN):
    return helpers.random_data(n, seed=seed)


def _imp(**fields):
    settings = {k: fields.pop(k) for k in ("learning_rate", "dense_schedule", "momentum", "weight_decay") if k in fields}
    settings.setdefault("learning_rate", 0.05)
    return tfimp.IMP(batch_size=BATCH, **settings, **fields)


class _Probe(keras.callbacks.Callback):
    """Records what the optimizer actually uses, and the masks, during fit."""

    def __init__(self):
        super().__init__()
        self.lrs = []  # (epoch, batch, lr) as applied in that step
        self.pruned_at_epoch_begin = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.pruned_at_epoch_begin[epoch] = tfimp.sparsity(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.lrs.append((self.epoch, batch, float(keras.backend.get_value(self.model.optimizer.learning_rate))))


def _fit_with_probe(plan, schedule, model=None, **callback_args):
    model = model or tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True),
                  metrics=["accuracy"])
    imp = tfimp.callbacks.IMP(plan, schedule=schedule, verbose=0, **callback_args)
    probe = _Probe()
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, callbacks=[imp, probe], verbose=0, shuffle=False)
    return model, imp, probe


def test_sparsity_after_each_cycle_is_the_exact_geometric_target():
    plan = tfimp.Plan(target_sparsity=0.95, cycles=4, dense_epochs=1, retrain_epochs=1)
    model, imp, probe = _fit_with_probe(plan, 0.05)
    total = sum(k.size for k in wrapping.prunable_kernels(model))
    q = 1 - 0.05 ** (1 / 4)
    assert [row["cycle"] for row in imp.rows] == [0, 1, 2, 3, 4]
    for cycle in range(1, 5):
        target = 1 - (1 - q) ** cycle
        exact = math.floor(target * total + 0.5) / total
        assert imp.rows[cycle]["target_sparsity"] == pytest.approx(target, abs=1e-12)
        assert imp.rows[cycle]["sparsity"] == pytest.approx(exact, abs=1e-12)
        assert probe.pruned_at_epoch_begin[plan.cycle_start_epochs()[cycle - 1]] == pytest.approx(exact, abs=1e-12)
    assert tfimp.sparsity(model) == pytest.approx(math.floor(0.95 * total + 0.5) / total, abs=1e-12)


@pytest.mark.parametrize("name", ["slr", "lrw", "clr", "ft"])
def test_learning_rate_applied_by_the_optimizer_follows_the_schedule(name):
    plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=3, retrain_epochs=3, retrain_schedule=name)
    dense = lr.StepDecay(0.08, [6, 9], 0.1)
    model, imp, probe = _fit_with_probe(plan, dense)
    m, n = 3 * STEPS, 3 * STEPS
    expected = [float(dense(t)) for t in range(m)]
    for _ in range(2):
        expected += list(lr.retrain_schedule(name, original=dense, original_steps=m, retrain_steps=n).values)
    applied = [value for _, _, value in probe.lrs]
    np.testing.assert_allclose(applied, expected, rtol=1e-6, atol=1e-9)


def test_allr_initial_lr_follows_the_measured_norm_drop():
    plan = tfimp.Plan(target_sparsity=0.6, cycles=1, dense_epochs=2, retrain_epochs=2,
                      retrain_schedule="allr", original_epochs=40)
    eta_max = 0.05
    model = tfimp.wrap(helpers.small_cnn())

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == plan.dense_epochs - 1:  # the weights the pruning step sees
                self.before = [v.numpy().copy() for v in self.model.trainable_variables]
                self.alive = sum(int(np.count_nonzero(k.mask.numpy())) for k in wrapping.prunable_kernels(self.model))

    snapshot = Snapshot()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    imp = tfimp.callbacks.IMP(plan, schedule=eta_max, verbose=0)
    probe = _Probe()
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, callbacks=[snapshot, imp, probe], verbose=0)

    masks = {id(k.weight): k.mask.numpy() for k in wrapping.prunable_kernels(model)}
    removed_sq = sum(float(np.sum((w * (masks[id(v)] == 0)) ** 2))
                     for v, w in zip(model.trainable_variables, snapshot.before) if id(v) in masks)
    d = math.sqrt(removed_sq / sum(float(np.sum(w.astype(np.float64) ** 2)) for w in snapshot.before))
    alive_after = sum(int(np.count_nonzero(m)) for m in masks.values())
    s = (snapshot.alive - alive_after) / snapshot.alive
    expected = eta_max * d / math.sqrt(s)
    assert 2 / 40 * eta_max < expected < eta_max, "pick a setting where ALLR is not clipped"
    assert imp.rows[1]["initial_lr"] == pytest.approx(expected, rel=1e-5)
    # The optimizer reaches it right after the warm-up (W = floor(0.1 * 8) = 0 here, so at once) ...
    retrain = [value for epoch, _, value in probe.lrs if epoch >= plan.dense_epochs]
    n = 2 * STEPS
    np.testing.assert_allclose(retrain, [expected * (1 - j / n) for j in range(n)], rtol=1e-5)


def test_optimizer_state_policies():
    seen = {}

    class Momentum(keras.callbacks.Callback):
        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def on_epoch_begin(self, epoch, logs=None):
            slots = [v for v in self.model.optimizer.variables if "iteration" not in v.name]
            seen[(self.policy, epoch)] = max(float(np.abs(v.numpy()).max()) for v in slots) if slots else 0.0

    for policy in ("fresh_then_keep", "reset_each_cycle", "keep"):
        plan = tfimp.Plan(target_sparsity=0.7, cycles=2, dense_epochs=1, retrain_epochs=1, optimizer_state=policy)
        model = tfimp.wrap(helpers.small_cnn())
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
        x, y = _data()
        model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, verbose=0,
                  callbacks=[tfimp.callbacks.IMP(plan, schedule=0.05, verbose=0), Momentum(policy)])
    assert seen[("fresh_then_keep", 1)] == 0.0 and seen[("fresh_then_keep", 2)] > 0.0
    assert seen[("reset_each_cycle", 1)] == 0.0 and seen[("reset_each_cycle", 2)] == 0.0
    assert seen[("keep", 1)] > 0.0 and seen[("keep", 2)] > 0.0


class _CrashOnce(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_a_crash_mid_cycle_gives_complete_rows(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    x, y = _data()
    fields = dict(target_sparsity=0.9, cycles=3, dense_epochs=2, retrain_epochs=2)

    original_fit = keras.Model.fit

    def crashing_fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [_CrashOnce(epoch=5, batch=2)]
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        _imp(**fields).run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    monkeypatch.setattr(keras.Model, "fit", original_fit)

    state = checkpoint.load_state(workdir)
    assert state["next_epoch"] == 5 and [r["cycle"] for r in state["rows"]] == [0, 1]
    with open(os.path.join(workdir, "results.json")) as handle:
        assert [r["cycle"] for r in json.load(handle)["rows"]] == [0, 1]

    imp = _imp(**fields)
    rows = imp.run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    assert [r["cycle"] for r in rows] == [0, 1, 2, 3]
    total = sum(k.size for k in wrapping.prunable_kernels(imp.model))
    assert rows[-1]["sparsity"] == pytest.approx(math.floor(0.9 * total + 0.5) / total, abs=1e-12)
    with open(os.path.join(workdir, "results.json")) as handle:
        assert [r["cycle"] for r in json.load(handle)["rows"]] == [0, 1, 2, 3]
    with open(os.path.join(workdir, "results.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 1 + 4

    # A finished run is not redone.
    again = _imp(**fields)
    assert again.run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0) == rows


def test_resume_restores_weights_masks_and_momentum(tmp_path):
    workdir = str(tmp_path / "run")
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, verbose=0,
              callbacks=[tfimp.callbacks.IMP(plan, schedule=0.05, workdir=workdir, verbose=0)])

    fresh = tfimp.wrap(helpers.small_cnn(name="fresh"))
    fresh.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    imp = tfimp.callbacks.IMP(plan, schedule=0.05, workdir=workdir, verbose=0)
    assert imp.restore(fresh) == plan.total_epochs and imp.finished
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_workdir_of_another_plan_is_refused_unless_overwrite(tmp_path):
    workdir = str(tmp_path / "run")
    x, y = _data()
    _imp(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1).run(
        helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    other = _imp(target_sparsity=0.7, cycles=1, dense_epochs=1, retrain_epochs=1)
    with pytest.raises(ValueError, match=r"(?s)holds a different run:\n  plan.target_sparsity: 0.5 \(in the workdir\) "
                                         r"vs 0.7 \(this run\)\n.*overwrite=True"):
        other.run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    rows = other.run(helpers.small_cnn(), (x, y), workdir=workdir, overwrite=True, verbose=0)
    assert rows[-1]["target_sparsity"] == 0.7


def test_from_a_trained_dense_model_without_dense_phase():
    x, y = _data()
    model = helpers.small_cnn()
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    imp = _imp(target_sparsity=0.9, cycles=2, retrain_epochs=1, original_epochs=10, retrain_schedule="lrw")
    xt, yt = _data(seed=3, n=32)
    rows = imp.run(model, (x, y), validation=(xt, yt), test=(xt, yt), verbose=0)
    assert [r["cycle"] for r in rows] == [1, 2]
    assert rows[-1]["sparsity"] == helpers.exact_sparsity(imp.model, 0.9)
    for key in ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy", "test_loss", "wall_s", "initial_lr"):
        assert rows[-1][key] is not None, key
    assert rows[-1]["steps"] == STEPS


def test_bimp_and_one_shot():
    x, y = _data()
    bimp = tfimp.IMP.bimp(0.8, 2, total_epochs=5, dense_epochs=2, batch_size=BATCH, learning_rate=0.05)
    assert bimp.plan.cycle_epochs() == [1, 2] and bimp.plan.retrain_schedule == "allr"
    assert isinstance(bimp._schedule(bimp.plan.reference_epochs, STEPS), lr.LinearToZero)
    rows = bimp.run(helpers.small_cnn(), (x, y), verbose=0)
    assert [r["cycle"] for r in rows] == [0, 1, 2] and sum(r["epochs"] for r in rows) == 5
    one_shot = _imp(target_sparsity=0.8, cycles=1, dense_epochs=1, retrain_epochs=1).run(
        helpers.small_cnn(), (x, y), verbose=0)
    assert one_shot[-1]["target_sparsity"] == 0.8


def test_runs_under_mirrored_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = helpers.small_cnn()
    x, y = _data()
    imp = _imp(target_sparsity=0.8, cycles=2, dense_epochs=1, retrain_epochs=1)
    rows = imp.run(model, (x, y), verbose=0)
    assert imp.model.distribute_strategy is strategy
    assert rows[-1]["sparsity"] == helpers.exact_sparsity(imp.model, 0.8)
    for kernel in wrapping.prunable_kernels(imp.model):
        mask = kernel.mask.numpy()
        for replica in kernel.weight.values:
            assert not np.any(replica.numpy()[mask == 0])


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(target_sparsity=0.9, cycles=0, retrain_epochs=1, dense_epochs=1), "cycles must be an integer >= 1"),
        (dict(target_sparsity=0.9, cycles=2, retrain_epochs=0, dense_epochs=1), "retrain_epochs must be >= 1"),
        (dict(target_sparsity=1.0, cycles=2, retrain_epochs=1, dense_epochs=1), r"target_sparsity must be in \(0, 1\)"),
        (dict(target_sparsity=0.0, cycles=2, retrain_epochs=1, dense_epochs=1), r"target_sparsity must be in \(0, 1\)"),
        (dict(target_sparsity=0.9, cycles=2, retrain_epochs=1, dense_epochs=1, retrain_schedule="one_cycle"),
         r"unknown retraining schedule 'one_cycle'; known: \['allr', 'clr', 'ft', 'llr', 'lrw', 'slr'\]"),
        (dict(target_sparsity=0.9, cycles=2, retrain_epochs=1, dense_epochs=1, criterion="random"),
         "unknown criterion 'random'"),
        (dict(target_sparsity=0.9, cycles=2, retrain_epochs=1), "give original_epochs"),
        (dict(target_sparsity=0.9, cycles=2, dense_epochs=1), "give exactly one of retrain_epochs"),
    ],
)
def test_bad_plans_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        tfimp.Plan(**fields)


def test_fit_epochs_must_match_the_plan():
    plan = tfimp.Plan(target_sparsity=0.5, cycles=2, dense_epochs=1, retrain_epochs=1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    with pytest.raises(ValueError, match=r"the IMP plan takes 3 epochs .* fit was called with epochs=5"):
        model.fit(x, y, epochs=5, verbose=0, callbacks=[tfimp.callbacks.IMP(plan, schedule=0.1, verbose=0)])


def _expected_rates(name, dense, m, n, cycles):
    expected = [float(dense(t)) for t in range(m)]
    for _ in range(cycles):
        expected += list(lr.retrain_schedule(name, original=dense, original_steps=m, retrain_steps=n).values)
    return expected


def test_without_schedule_the_compiled_schedule_is_the_original():
    plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=3, retrain_epochs=3, retrain_schedule="slr")
    dense = lr.StepDecay(0.08, [6, 9], 0.1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(dense, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    probe = _Probe()
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, verbose=0, shuffle=False,
              callbacks=[tfimp.callbacks.IMP(plan, verbose=0), probe])
    np.testing.assert_allclose([v for _, _, v in probe.lrs], _expected_rates("slr", dense, 3 * STEPS, 3 * STEPS, 2),
                               rtol=1e-6, atol=1e-9)


def test_the_schedule_runs_in_the_graph_with_steps_per_execution():
    plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=2, retrain_epochs=2, retrain_schedule="clr")
    dense = lr.StepDecay(0.08, [4], 0.1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True),
                  steps_per_execution=2)
    probe = _Probe()
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, verbose=0, shuffle=False,
              callbacks=[tfimp.callbacks.IMP(plan, schedule=dense, verbose=0), probe])
    expected = _expected_rates("clr", dense, 2 * STEPS, 2 * STEPS, 2)
    # Keras calls batch hooks once per execution of 2 steps; the rate seen is the one of its last step.
    assert [b for _, b, _ in probe.lrs[:2]] == [1, 3]
    np.testing.assert_allclose([v for _, _, v in probe.lrs], expected[1::2], rtol=1e-6, atol=1e-9)
    assert model.optimizer.iterations.numpy() == len(expected)


@pytest.mark.parametrize("other", [keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate),
                                   keras.callbacks.ReduceLROnPlateau(monitor="loss")],
                         ids=["LearningRateScheduler", "ReduceLROnPlateau"])
def test_another_learning_rate_callback_is_refused(other):
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    with pytest.raises(ValueError, match=rf"{type(other).__name__} sets the learning rate, and so does the IMP"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[other, tfimp.callbacks.IMP(plan, schedule=0.1, verbose=0)])


def test_a_custom_callback_that_writes_the_rate_is_detected():
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)

    class Halve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            keras.backend.set_value(self.model.optimizer.learning_rate, 0.001)

    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    with pytest.raises(ValueError, match=r"something else set the learning rate between epochs \(0.05 -> 0.001\)"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[tfimp.callbacks.IMP(plan, schedule=0.05, verbose=0), Halve()])


def test_a_legacy_optimizer_gets_a_clear_message():
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.legacy.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = _data()
    with pytest.raises(TypeError, match=r"got SGD, a legacy optimizer"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[tfimp.callbacks.IMP(plan, verbose=0)])


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_nan_or_infinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, bad):
    workdir = str(tmp_path / "run")
    plan = tfimp.Plan(target_sparsity=0.5, cycles=2, dense_epochs=2, retrain_epochs=2)
    infinite = tf.Variable(0.0, trainable=False)  # 1 from epoch 4 on: the loss gains -log(0) = +inf
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(True)

    def loss(labels, logits):  # the gradient stays finite, so the epoch's mean loss is inf, not nan
        return cross_entropy(labels, logits) + tf.stop_gradient(-tf.math.log(1.0 - infinite))

    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3 and bad == "nan":
                kernel = wrapping.prunable_kernels(self.model)[-1].weight  # the logits: no ReLU hides NaN
                kernel.assign(tf.fill(kernel.shape, float("nan")))
            elif epoch == 3:
                infinite.assign(1.0)

    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1), loss)
    imp = tfimp.callbacks.IMP(plan, schedule=0.05, workdir=workdir, verbose=0)
    x, y = _data()
    with pytest.raises(FloatingPointError,
                       match=rf"loss became {bad} in epoch 4 \(cycle 1\).*last good checkpoint \(epoch 3\)"):
        model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, initial_epoch=imp.restore(model),
                  callbacks=[imp, Poison()], verbose=0)
    assert checkpoint.load_state(workdir)["next_epoch"] == 3
    restored = tfimp.wrap(helpers.small_cnn(name="again"))
    restored.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    checkpoint.restore(workdir, restored)
    assert all(np.isfinite(v.numpy()).all() for v in restored.weights)


def test_a_checkpoint_is_not_silently_ignored(tmp_path):
    workdir = str(tmp_path / "run")
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    x, y = _data()
    for attempt in range(2):
        model = tfimp.wrap(helpers.small_cnn())
        model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
        imp = tfimp.callbacks.IMP(plan, schedule=0.05, workdir=workdir, verbose=0)
        if attempt == 0:
            model.fit(x, y, epochs=plan.total_epochs, verbose=0, callbacks=[imp])
        else:
            with pytest.raises(ValueError, match=r"holds a checkpoint at epoch 2; call `initial_epoch = imp.restore\(model\)`"):
                model.fit(x, y, epochs=plan.total_epochs, verbose=0, callbacks=[imp])


def test_run_reestimates_batch_norm_after_each_pruning_and_records_pruned_accuracy(monkeypatch):
    calls = []
    original = tfimp.batchnorm.reestimate

    def spy(model, data, steps=None):
        calls.append((tfimp.sparsity(model), int(tf.data.experimental.cardinality(data))))
        return original(model, data, steps)

    monkeypatch.setattr(tfimp.batchnorm, "reestimate", spy)
    x, y = _data()
    imp = _imp(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1)
    assert imp.plan.recalibrate_bn  # the default, as in the authors' runs
    rows = imp.run(helpers.small_cnn(), (x, y), test=_data(seed=1), verbose=0)
    assert isinstance(imp.model.optimizer, tfimp.optimizers.TorchSGD)
    # Once per pruning step, right after it, over the whole training set (4 batches).
    total = sum(k.size for k in wrapping.prunable_kernels(imp.model))
    assert [s for s, _ in calls] == [round(0.5 * total) / total, round(0.75 * total) / total]
    assert all(n == STEPS for _, n in calls)
    assert rows[0]["test_accuracy_pruned"] is None and rows[0]["test_accuracy_bn_reestimated"] is None
    for row in rows[1:]:
        assert 0.0 <= row["test_accuracy_pruned"] <= 1.0 and 0.0 <= row["test_accuracy_bn_reestimated"] <= 1.0

    calls.clear()
    rows = _imp(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1,
                recalibrate_bn=False).run(helpers.small_cnn(), (x, y), test=_data(seed=1), verbose=0)
    assert calls == [] and rows[1]["test_accuracy_bn_reestimated"] is None
    assert 0.0 <= rows[1]["test_accuracy_pruned"] <= 1.0


@pytest.mark.parametrize("norm_drop", ["since_dense", "this_cycle"])
def test_allr_norm_drop_in_later_cycles(norm_drop):
    plan = tfimp.Plan(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1, retrain_schedule="allr",
                      original_epochs=40, allr_norm_drop=norm_drop)
    eta_max = 0.05

    class Norms(keras.callbacks.Callback):  # runs after the IMP callback: sees each cycle's pruned model
        norms, alive = {}, {}

        def on_epoch_begin(self, epoch, logs=None):
            self.norms[epoch] = sum(float(np.sum(v.numpy().astype(np.float64) ** 2))
                                    for v in self.model.trainable_variables)
            self.alive[epoch] = sum(int(np.count_nonzero(k.mask.numpy()))
                                    for k in wrapping.prunable_kernels(self.model))

        def on_epoch_end(self, epoch, logs=None):
            self.norms[f"end{epoch}"] = sum(float(np.sum(v.numpy().astype(np.float64) ** 2))
                                            for v in self.model.trainable_variables)

    model = tfimp.wrap(helpers.small_cnn())
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    imp = tfimp.callbacks.IMP(plan, schedule=eta_max, verbose=0)
    norms = Norms()
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=plan.total_epochs, callbacks=[imp, norms], verbose=0)
    s = (norms.alive[1] - norms.alive[2]) / norms.alive[1]
    if norm_drop == "since_dense":  # against the model before the first pruning (end of epoch 0)
        d = math.sqrt(abs(norms.norms["end0"] - norms.norms[2]) / norms.norms["end0"])
    else:  # the squared norm this cycle's pruning removed: before it (end of epoch 1) minus after it
        d = math.sqrt((norms.norms["end1"] - norms.norms[2]) / norms.norms["end1"])
    expected = eta_max * d / math.sqrt(s)
    assert 1 / 40 * eta_max < expected < eta_max, "pick a setting where ALLR is not clipped"
    assert imp.rows[2]["initial_lr"] == pytest.approx(expected, rel=1e-5)


_EXACT_RESUME = r"""
import json, sys
import numpy as np
import tfimp
from tfimp import keras, tf
sys.path.insert(0, sys.argv[2])
import helpers

tf.config.experimental.enable_op_determinism()
root, source = sys.argv[1], sys.argv[3]
if source == "arrays":
    x, y = helpers.random_data(96, seed=1)
    train = test = (x, y)
    shape = dict()
else:  # tfimp.data.load's pipeline, with random crops and flips: both must be replayed on resume
    helpers.make_idx_dataset(root + "/idx", n_train=96, n_test=16)
    loaded = tfimp.data.load("fashion_mnist", data_dir=root + "/idx", batch_size=16, validation_fraction=0.0,
                             seed=0, augmentation="crop_flip")
    train, test = loaded.train, loaded.test
    shape = dict(input_shape=(28, 28, 1), classes=10)
fields = dict(target_sparsity=0.9, cycles=3, dense_epochs=2, retrain_epochs=2, batch_size=16, learning_rate=0.05,
              chance_guard=source == "arrays")  # the generated idx images are noise: nothing to learn


class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (5, 2):
            raise KeyboardInterrupt("simulated kill")


def run(workdir, callbacks=()):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    imp = tfimp.IMP(**fields)
    rows = imp.run(helpers.small_cnn(**shape), train, test=test, workdir=workdir, verbose=0, callbacks=list(callbacks))
    return imp.model, rows


def state(model, rows):
    kernels = tfimp.wrapping.prunable_kernels(model)
    return ([w.numpy() for w in model.weights], [k.mask.numpy() for k in kernels],
            [{k: v for k, v in r.items() if k != "wall_s"} for r in rows])


straight = state(*run(root + "/straight"))
try:
    run(root + "/killed", [Kill()])
except KeyboardInterrupt:
    pass
resumed = state(*run(root + "/killed"))
print(json.dumps({
    "weights_equal": all(np.array_equal(a, b) for a, b in zip(straight[0], resumed[0])),
    "masks_equal": all(np.array_equal(a, b) for a, b in zip(straight[1], resumed[1])),
    "rows_equal": straight[2] == resumed[2],
    "last_loss": [straight[2][-1]["train_loss"], resumed[2][-1]["train_loss"]],
}))
"""


@pytest.mark.parametrize("source", ["arrays", "pipeline"])
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, source):
    import subprocess
    import sys

    script = tmp_path / "exact_resume.py"
    script.write_text(_EXACT_RESUME)
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # helpers.py
    result = subprocess.run([sys.executable, str(script), str(tmp_path), tests_dir, source], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["last_loss"][0] == outcome["last_loss"][1]
    assert outcome == {**outcome, "weights_equal": True, "masks_equal": True, "rows_equal": True}


@pytest.mark.parametrize("target, cycles", [(0.9, 11), (0.8, 8), (0.36, 2)])
def test_renda_plans_remove_at_most_a_fifth_of_the_remaining_weights_per_cycle(target, cycles):
    plan = tfimp.Plan.renda(target, dense_epochs=1, retrain_epochs=1)
    assert plan.cycles == cycles  # the fewest cycles at <= 20% each: ceil(log(1 - S) / log(0.8))
    assert plan.pruning_rate <= 0.2 + 1e-12
    assert tfimp.Plan(target_sparsity=target, cycles=cycles - 1, dense_epochs=1, retrain_epochs=1).pruning_rate > 0.2
    assert plan.sparsity_after(cycles) == target
