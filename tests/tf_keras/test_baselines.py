"""Pruning-during-training baselines: targets, zeros, rows, errors."""

import math

import numpy as np
import pytest

import tfimp
from tfimp import baselines, keras, methods, wrapping
from tfimp.tf_keras import tfmot_glue
from tfimp.core import during_training

import helpers


def _run(method, sparsity=0.8, epochs=3, **options):
    x, y = helpers.random_data(128)
    xt, yt = helpers.random_data(32, seed=1)
    runner = tfimp.DuringTraining(method, sparsity, epochs, batch_size=32, learning_rate=0.05, **options)
    rows = runner.run(helpers.small_cnn(), (x, y), test=(xt, yt), verbose=0)
    return runner, rows


def _pruned_weights_are_zero(model):
    for kernel in wrapping.prunable_kernels(model):
        assert not np.any(kernel.weight.numpy()[kernel.mask.numpy() == 0]), kernel.name


def test_cubic_ramp():
    assert baselines.cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert baselines.cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert baselines.cubic_sparsity(110, 0.9, 10, 110) == 0.9
    assert baselines.cubic_sparsity(500, 0.9, 10, 110) == 0.9


def test_the_pruning_ramp_says_when_each_method_prunes():
    gmp = during_training.PruningRamp(0.9, begin_step=2, end_step=9, frequency=3)
    due = {step: gmp.due(step) for step in range(12) if gmp.due(step) is not None}
    assert sorted(due) == [5, 8, 9]  # on the grid from begin (level 0 at begin itself), and at end
    assert due[9] == 0.9 and due[5] == pytest.approx(baselines.cubic_sparsity(5, 0.9, 2, 9))
    dpf = during_training.PruningRamp(0.8, begin_step=0, end_step=8, frequency=4, level_every=3, dpf=True)
    fires = [step for step in range(14) if dpf.due(step) is not None]
    assert fires == [3, 4, 6, 8, 9, 12]  # every 4 steps for the whole run, and where the level rises (3, 6, 9)
    assert dpf.level(4) == dpf.level(3) and dpf.due(13) is None
    with pytest.raises(ValueError, match=r"0 <= begin_step <= end_step, got 1, 1, 5, 2"):
        during_training.PruningRamp(0.5, begin_step=5, end_step=2, frequency=1)
    with pytest.raises(ValueError, match=r"target_sparsity must be in \(0, 1\), got 1.0"):
        during_training.PruningRamp(1.0, 0, 2)


@pytest.mark.parametrize("method", ["gmp", "dpf"])
def test_gmp_and_dpf_reach_the_target_exactly(method):
    runner, rows = _run(method, frequency=2)
    total = sum(k.size for k in wrapping.prunable_kernels(runner.model))
    exact = math.floor(0.8 * total + 0.5) / total
    assert tfimp.sparsity(runner.model) == exact and rows[-1]["sparsity"] == pytest.approx(exact)
    assert [r["cycle"] for r in rows] == [1, 2, 3]
    assert rows[-1]["test_accuracy"] is not None
    _pruned_weights_are_zero(runner.model)
    assert tfimp.sparsity(tfimp.strip(runner.model)) == pytest.approx(exact)


def test_gmp_sparsity_rises_along_the_ramp_and_never_revives():
    runner, rows = _run("gmp", epochs=4, frequency=1)
    sparsities = [r["sparsity"] for r in rows]
    assert sparsities == sorted(sparsities) and 0 < sparsities[0] < sparsities[-1]


def test_dpf_keeps_dense_weights_behind_the_mask_during_training():
    x, y = helpers.random_data(64)
    model = wrapping.wrap(helpers.small_cnn(),
                            wrapper=lambda layer: tfmot_glue.ReparamPruneLowMagnitude(layer, reparam="dpf"))
    tfimp.prune(model, 0.5, allow_revival=True, zero_pruned=False)
    kernel = wrapping.prunable_kernels(model)[-1]
    before = kernel.weight.numpy().copy()
    pruned = kernel.mask.numpy() == 0
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    after = kernel.weight.numpy()
    assert np.all(after[pruned] != 0) and not np.allclose(after[pruned], before[pruned])  # error feedback
    # The forward pass uses the masked kernel: baking the masks in changes no prediction.
    wrapper = kernel.wrapper
    np.testing.assert_array_equal(np.asarray(wrapper.effective_kernels()[0]), after * kernel.mask.numpy())
    before_bake = model.predict(x, verbose=0)
    baselines.finalize_reparams(model)
    assert not np.any(kernel.weight.numpy()[pruned])
    np.testing.assert_array_equal(model.predict(x, verbose=0), before_bake)


def test_tfmot_gmp_prunes_each_layer_to_the_target():
    runner, rows = _run("tfmot_gmp", frequency=2)
    assert all(type(w) is tfmot_glue.PruneLowMagnitude for _, w in wrapping.wrappers(runner.model))
    for name, value in tfimp.layer_sparsity(runner.model).items():
        size = [k.size for k in wrapping.prunable_kernels(runner.model) if k.name == name][0]
        assert value == pytest.approx(0.8, abs=1.5 / size), name
    _pruned_weights_are_zero(runner.model)


def test_str_reports_the_sparsity_it_reaches():
    runner, rows = _run("str", str_init=-2.5)
    stripped = tfimp.strip(runner.model)
    reached = tfimp.sparsity(stripped)
    assert reached > 0.05
    assert rows[-1]["sparsity"] == pytest.approx(reached)
    _pruned_weights_are_zero(runner.model)


@pytest.mark.parametrize("method", ["str", "dpf"])
def test_a_reparametrised_runs_last_cycle_loads_back_as_it_ended(tmp_path, method):
    workdir = str(tmp_path / method)
    x, y = helpers.random_data(128)
    runner = tfimp.DuringTraining(method, 0.8, 2, batch_size=32, learning_rate=0.05, str_init=-2.5,
                                  chance_guard=False)
    rows = runner.run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    loaded = tfimp.load_cycle(workdir, 2)
    assert tfimp.sparsity(loaded) == pytest.approx(rows[-1]["sparsity"]) and rows[-1]["sparsity"] > 0.05
    assert tfimp.layer_sparsity(loaded) == tfimp.layer_sparsity(runner.model)
    np.testing.assert_array_equal(loaded.predict(x[:8], verbose=0), runner.model.predict(x[:8], verbose=0))


def test_bad_baseline_settings():
    known = r"\['gmp', 'tfmot_gmp', 'dpf', 'str', 'dnw', 'lc', 'gsm', 'cs', 'dst'\]"
    with pytest.raises(ValueError, match=rf"unknown during-training method 'snip'; known: {known}"):
        tfimp.DuringTraining("snip", 0.9, 3)
    with pytest.raises(ValueError, match="unknown criterion 'abs'"):
        tfimp.DuringTraining("gmp", 0.9, 3, criterion="abs")
    with pytest.raises(ValueError, match=r"target_sparsity must be in \(0, 1\)"):
        tfimp.DuringTraining("gmp", 1.2, 3)


@pytest.mark.parametrize("method", ["gmp", "dense"])
def test_during_training_and_dense_runs_resume_after_a_kill(tmp_path, monkeypatch, method):
    workdir = str(tmp_path / method)
    x, y = helpers.random_data(128)

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt("simulated kill")

    original_fit = keras.Model.fit

    def crashing_fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [Crash()]
        return original_fit(self, *args, **kwargs)

    def runner():
        if method == "dense":
            return tfimp.Dense(4, batch_size=32, learning_rate=0.05)
        return tfimp.DuringTraining("gmp", 0.8, 4, batch_size=32, learning_rate=0.05, frequency=2)

    monkeypatch.setattr(keras.Model, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        runner().run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    monkeypatch.setattr(keras.Model, "fit", original_fit)

    class FirstEpoch(keras.callbacks.Callback):
        epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    resumed = runner()
    rows = resumed.run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0, callbacks=[FirstEpoch()])
    assert FirstEpoch.epochs == [2, 3]  # resumed after the two completed epochs
    if method == "dense":
        assert [(r["cycle"], r["epochs"]) for r in rows] == [(0, 4)]
        assert tfimp.load_cycle(workdir, 0).get_weights()[0].tolist() == resumed.model.get_weights()[0].tolist()
    else:
        assert [r["cycle"] for r in rows] == [1, 2, 3, 4]
        total = sum(k.size for k in wrapping.prunable_kernels(resumed.model))
        assert tfimp.sparsity(resumed.model) == math.floor(0.8 * total + 0.5) / total
    again = runner().run(helpers.small_cnn(), (x, y), workdir=workdir, verbose=0)
    assert again == rows  # finished: not redone


def test_dpf_recomputes_masks_every_16_steps_for_the_whole_run(monkeypatch):
    calls = []
    original = baselines._pruning.prune

    def spy(model, sparsity, criterion="global", **options):
        calls.append((int(keras.backend.get_value(model.optimizer.iterations)), sparsity,
                      options.get("allow_revival", False)))
        return original(model, sparsity, criterion, **options)

    monkeypatch.setattr(baselines._pruning, "prune", spy)
    x, y = helpers.random_data(512)
    epochs, steps = 3, 512 // 32
    # random labels: chance level is the expected loss here, not a failure
    runner = tfimp.DuringTraining("dpf", 0.8, epochs, batch_size=32, learning_rate=0.05, chance_guard=False)
    assert runner.ramp(steps) == (0, (epochs - 1) * steps, 16)  # target one epoch before the end
    runner.run(helpers.small_cnn(), (x, y), verbose=0)
    revivals = [(step, s) for step, s, revival in calls if revival]
    # Every 16 steps once the ramp's level (raised at epoch ends) is above 0, through the last epoch.
    assert [step for step, _ in revivals] == list(range(steps, epochs * steps, 16))
    level_after_epoch_1 = baselines.cubic_sparsity(steps, 0.8, 0, 2 * steps)
    assert [s for _, s in revivals] == [level_after_epoch_1] + [0.8]
    assert tfimp.sparsity(runner.model) == helpers.exact_sparsity(runner.model, 0.8)


def test_dpf_in_your_own_fit_keeps_the_mask_it_trained_with():
    model = tfimp.wrap(helpers.small_cnn(), wrapper=lambda layer: tfmot_glue.ReparamPruneLowMagnitude(layer, "dpf"))
    model.compile(tfimp.optimizers.make("torch_sgd", 0.05), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = helpers.random_data(256)
    last_masks = {}

    class LastMasks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            last_masks["masks"] = [k.mask.numpy().copy() for k in wrapping.prunable_kernels(self.model)]

    # 24 steps; the mask is computed at step 16 only (level 0 before): the dense weights drift after it.
    pruning = baselines.GradualPruning(0.7, 0, 16, frequency=16, dpf=True)
    model.fit(x, y, batch_size=32, epochs=3, callbacks=[pruning, LastMasks()], verbose=0, shuffle=False)
    for kernel, mask in zip(wrapping.prunable_kernels(model), last_masks["masks"]):
        np.testing.assert_array_equal(kernel.mask.numpy(), mask)
    _pruned_weights_are_zero(model)
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.7)


def test_gmp_mask_update_frequency_follows_the_budget():
    runner = tfimp.DuringTraining("gmp", 0.9, 8)
    begin, end, frequency = runner.ramp(70)  # 8 epochs of 70 steps
    assert (end - begin) // frequency >= 30 and frequency < 100
    assert tfimp.DuringTraining("tfmot_gmp", 0.9, 200).ramp(391)[2] == 100  # long runs: Zhu & Gupta's 100
    assert tfimp.DuringTraining("gmp", 0.9, 8, frequency=7).ramp(70)[2] == 7
    with pytest.raises(ValueError, match="frequency must be >= 1"):
        tfimp.DuringTraining("gmp", 0.9, 8, frequency=0)


def test_str_decay_on_threshold_raises_sparsity_and_calibration_hits_the_target():
    x, y = helpers.random_data(128)
    reached = {}
    for decay in (0.0, 5.0):
        keras.utils.set_random_seed(0)
        rows = tfimp.DuringTraining("str", 0.5, 2, str_init=-3.0, str_weight_decay=decay, batch_size=32,
                                    learning_rate=0.05).run(helpers.small_cnn(), (x, y), verbose=0)
        reached[decay] = rows[-1]["sparsity"]
    assert reached[5.0] > reached[0.0]
    decay, sparsity = baselines.calibrate_str(helpers.small_cnn, (x, y), 0.6, 2, tolerance=0.03, max_runs=10,
                                              low=1e-3, high=30.0, verbose=0, batch_size=32, learning_rate=0.05)
    assert abs(sparsity - 0.6) <= 0.03
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rows = tfimp.DuringTraining("str", 0.6, 2, str_init=baselines.STR_DENSE_START, str_weight_decay=decay,
                                batch_size=32, learning_rate=0.05, seed=0).run(helpers.small_cnn(), (x, y), verbose=0)
    assert rows[-1]["sparsity"] == pytest.approx(sparsity, abs=1e-6)  # the same run, the same sparsity


def test_str_evaluation_after_training_uses_the_final_weights_once():
    # Validation during fit traces Keras' test function with the soft threshold; after the final
    # bake-in, that function must not be reused (it would threshold the baked weights again).
    x, y = helpers.random_data(96, seed=2)
    keras.utils.set_random_seed(0)
    runner = tfimp.DuringTraining("str", 0.5, 2, str_init=-2.0, batch_size=32, learning_rate=0.05,
                                  chance_guard=False)  # random labels: chance level is expected
    rows = runner.run(helpers.small_cnn(), (x, y), validation=(x, y), test=(x, y), verbose=0)
    model = runner.model
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    direct = float(loss(y, model(x, training=False)))
    assert rows[-1]["test_loss"] == pytest.approx(direct, rel=1e-5)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(direct, rel=1e-5)


def test_a_method_that_ends_short_of_its_target_says_so(capsys):
    x, y = helpers.random_data(64, seed=3)
    runner = tfimp.DuringTraining("str", 0.9, 1, batch_size=32, learning_rate=0.05, chance_guard=False)
    with pytest.warns(UserWarning, match=r"str ended at sparsity 0\.\d+, 0\.\d+ away from its target 0\.9\..*calibrate"):
        rows = runner.run(helpers.small_cnn(), (x, y), verbose=1)
    assert abs(rows[-1]["sparsity"] - 0.9) > 0.01
    assert "[tfimp] warning: str ended at sparsity" in capsys.readouterr().out


def test_the_during_training_methods_are_one_registry_that_the_cli_lists():

    assert sorted(baselines.METHODS) == sorted(methods.DURING_TRAINING)
    assert sorted(during_training.RULES.known()) == sorted(baselines.METHODS)
    assert baselines.known_methods() == list(methods.DURING_TRAINING)
    with pytest.raises(ValueError, match=r"unknown during-training method 'sgmp'; known: \['gmp', 'tfmot_gmp'"):
        tfimp.DuringTraining("sgmp", 0.5, 2)
    assert tfimp.DuringTraining("dpf", 0.5, 4).ramp(10) == (0, 30, 16)  # DPF's defaults: 0 to 3/4, every 16
    assert tfimp.DuringTraining("gmp", 0.5, 4).ramp(100) == (40, 300, 8)  # Zhu & Gupta's 0.1-0.75, 30+ updates


def test_a_new_reparametrisation_is_one_registry_entry():
    from tfimp.tf_keras import reparametrisations

    @reparametrisations.REPARAMETRISATIONS.register("halved")
    def halved(weight, mask, threshold, ops):
        return 0.5 * weight * ops.cast(mask, weight.dtype)

    try:
        model = wrapping.wrap(helpers.small_cnn(),
                              wrapper=lambda layer: tfmot_glue.ReparamPruneLowMagnitude(layer, reparam="halved"))
        kernel = wrapping.prunable_kernels(model)[0]
        tfimp.prune(model, 0.5, allow_revival=True, zero_pruned=False)
        np.testing.assert_array_equal(np.asarray(kernel.wrapper.effective_kernels()[0]),
                                      0.5 * kernel.weight.numpy() * kernel.mask.numpy())
        with pytest.raises(ValueError, match=r"reparam must be one of \('cs', 'dpf', 'dst', 'halved', 'str', 'none'\)"):
            tfmot_glue.ReparamPruneLowMagnitude(keras.layers.Dense(2), reparam="doubled")
    finally:
        reparametrisations.REPARAMETRISATIONS.unregister("halved")
