"""The pruning-during-training baselines on Keras 3: exact targets, DPF's feedback, STR's threshold, resume, files."""

import json
import os

import keras
import numpy as np
import pytest

import tfimp
from tfimp.core import criteria
from tfimp.core import workdir as workdir_layout
from tfimp.keras3 import baselines, masks
from tfimp.keras3.wrapper import ReparamMaskedLayer

import k3_helpers as h

SETTINGS = dict(batch_size=32, learning_rate=0.05, chance_guard=False)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable.value)


def _zeros_and_total(model):
    kernels = masks.prunable_kernels(model)
    total = sum(int(np.size(_numpy(k.mask))) for k in kernels)
    return total - sum(int(np.count_nonzero(_numpy(k.mask))) for k in kernels), total


def test_the_keras3_process_gets_the_keras3_baselines():
    assert tfimp.DuringTraining is baselines.DuringTraining and tfimp.baselines is baselines
    assert baselines.known_methods() == list(tfimp.methods.DURING_TRAINING)
    with pytest.raises(ValueError, match=r"unknown during-training method 'sgmp'; known: \['gmp', 'tfmot_gmp'"):
        tfimp.DuringTraining("sgmp", 0.5, 2)
    with pytest.raises(ValueError, match="steps_per_execution=4 would skip"):
        tfimp.DuringTraining("gmp", 0.5, 2, steps_per_execution=4)
    assert tfimp.DuringTraining("dpf", 0.5, 4).ramp(10) == (0, 30, 16)  # the tf_keras defaults, from the core
    assert tfimp.DuringTraining("gmp", 0.5, 4).ramp(100) == (40, 300, 8)
    assert tfimp.DuringTraining("tfmot_gmp", 0.5, 4).ramp(100) == (40, 304, 8)  # tfmot's steps: a multiple of 8


def test_gmp_ramps_to_the_exact_target_and_pruned_weights_stay_zero():
    x, y = h.classification_data(256)
    runner = tfimp.DuringTraining("gmp", 0.8, 3, **SETTINGS)
    rows = runner.run(h.small_cnn(), (x, y), test=(x[:64], y[:64]), verbose=0)
    assert [row["cycle"] for row in rows] == [1, 2, 3] and [row["retrain_schedule"] for row in rows] == ["gmp"] * 3
    sparsities = [row["sparsity"] for row in rows]
    assert sparsities == sorted(sparsities) and 0 < sparsities[0] < 0.8  # along the ramp, monotone
    zeros, total = _zeros_and_total(runner.model)
    assert zeros == criteria.round_count(0.8, total) and sparsities[-1] == zeros / total
    assert h.pruned_but_nonzero(runner.model) == 0
    assert rows[-1]["test_accuracy"] is not None and rows[0]["test_accuracy"] is None
    assert rows[-1]["criterion"] == "global"


def test_tfmot_gmp_prunes_every_layer_to_the_target_on_tfmots_steps():
    x, y = h.classification_data(256)
    runner = tfimp.DuringTraining("tfmot_gmp", 0.75, 2, **SETTINGS)
    rows = runner.run(h.small_cnn(), (x, y), verbose=0)
    for kernel in masks.prunable_kernels(runner.model):
        mask = _numpy(kernel.mask)
        assert mask.size - np.count_nonzero(mask) == criteria.round_count(0.75, mask.size), kernel.name
    assert rows[-1]["criterion"] is None and h.pruned_but_nonzero(runner.model) == 0


class _PrunedButAlive(keras.callbacks.Callback):
    """Counts, at each epoch's end but the last, the weights under a zero mask that are not zero."""

    def __init__(self):
        super().__init__()
        self.counts = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.params["epochs"]:
            masks._sync_training_state(self.model)
            self.counts.append(h.pruned_but_nonzero(self.model))


def test_dpf_keeps_training_pruned_weights_and_ends_with_the_mask_it_trained_with():
    x, y = h.classification_data(256)
    alive = _PrunedButAlive()
    runner = tfimp.DuringTraining("dpf", 0.7, 3, **SETTINGS)
    rows = runner.run(h.small_cnn(), (x, y), verbose=0, callbacks=[alive])
    assert rows[0]["sparsity"] == 0.0 and alive.counts[0] == 0  # the level rises at epoch ends: none in epoch 1
    assert alive.counts[1] > 0  # pruned in epoch 2 but not zeroed: the dense weights train on
    wrappers = [w for _, w in masks.wrappers(runner.model)]
    assert wrappers and all(isinstance(w, ReparamMaskedLayer) and w.finalized for w in wrappers)
    zeros, total = _zeros_and_total(runner.model)
    assert zeros == criteria.round_count(0.7, total) and rows[-1]["sparsity"] == zeros / total
    assert h.pruned_but_nonzero(runner.model) == 0


def test_dpfs_forward_pass_is_masked_and_its_gradient_straight_through():
    model = masks.wrap(h.mlp(), wrapper=lambda layer, paths: ReparamMaskedLayer(layer, paths, reparam="dpf"))
    masks.prune(model, 0.5, allow_revival=True, zero_pruned=False)
    kernel = masks.prunable_kernels(model)[0]
    weight, mask = _numpy(kernel.weight), _numpy(kernel.mask)
    assert np.count_nonzero(weight[mask == 0]) > 0  # dense weights kept
    np.testing.assert_array_equal(kernel.wrapper.effective_weights()[0], weight * mask)
    h.compile_for_classes(model, keras.optimizers.SGD(0.1))
    x, y = h.classification_data(64, shape=(20,))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    moved = _numpy(kernel.weight) != weight
    assert moved[mask == 0].any()  # pruned weights got a gradient (straight-through)


def test_str_learns_its_thresholds_and_finalizes_to_the_zeros_it_reached():
    x, y = h.classification_data(256)
    runner = tfimp.DuringTraining("str", 0.5, 2, str_init=-3.0, str_weight_decay=0.5, **SETTINGS)
    model = h.small_cnn()
    with pytest.warns(UserWarning, match=r"str ended at sparsity 0\.\d+, .*calibrate"):
        rows = runner.run(model, (x, y), verbose=0)
    thresholds = baselines.str_thresholds(runner.model)
    assert len(thresholds) == len(masks.prunable_kernels(runner.model))
    assert all(float(_numpy(t)) != -3.0 for t in thresholds)  # learnable: they moved
    zeros, total = _zeros_and_total(runner.model)
    assert 0 < zeros < total and rows[-1]["sparsity"] == zeros / total
    assert h.pruned_but_nonzero(runner.model) == 0
    for kernel in masks.prunable_kernels(runner.model):  # the mask is the finalized weight's non-zeros
        np.testing.assert_array_equal(_numpy(kernel.mask), (_numpy(kernel.weight) != 0).astype("float32"))


def test_strs_effective_weight_is_the_soft_threshold():
    model = masks.wrap(h.mlp(), wrapper=lambda layer, paths: ReparamMaskedLayer(layer, paths, reparam="str",
                                                                                str_init=-2.0))
    kernel = masks.prunable_kernels(model)[0]
    w = _numpy(kernel.weight)
    expected = np.sign(w) * np.maximum(np.abs(w) - 1.0 / (1.0 + np.exp(2.0)), 0.0)
    np.testing.assert_allclose(kernel.wrapper.effective_weights()[0], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"reparam must be one of \('cs', 'dpf', 'dst', 'str', 'none'\), got 'soft'"):
        ReparamMaskedLayer(keras.layers.Dense(2), ["kernel"], reparam="soft")


def test_a_reparametrised_model_saves_and_loads_back(tmp_path):
    model = masks.wrap(h.mlp(), wrapper=lambda layer, paths: ReparamMaskedLayer(layer, paths, reparam="str",
                                                                                str_init=-1.5))
    path = str(tmp_path / "str.keras")
    model.save(path)
    loaded = tfimp.load_model(path)
    x = h.classification_data(8, shape=(20,))[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert [w.reparam for _, w in masks.wrappers(loaded)] == ["str", "str"]
    baselines.finalize_reparams(model)
    stripped = tfimp.strip(model)
    stripped.save(str(tmp_path / "plain.keras"))
    plain = keras.saving.load_model(str(tmp_path / "plain.keras"))
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def _dpf_run(workdir, callbacks=()):
    keras.utils.set_random_seed(0)
    x, y = h.classification_data(256)
    runner = tfimp.DuringTraining("dpf", 0.7, 3, **SETTINGS)
    rows = runner.run(h.small_cnn(), (x, y), test=(x[:64], y[:64]), workdir=workdir, verbose=0,
                      callbacks=list(callbacks))
    return rows, [_numpy(v) for v in runner.model.variables]


def test_an_interrupted_dpf_run_resumes_exactly_and_writes_its_files(tmp_path):
    straight_rows, straight = _dpf_run(str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        _dpf_run(str(tmp_path / "resumed"), callbacks=[h.StopAtEpoch(2)])
    resumed_rows, resumed = _dpf_run(str(tmp_path / "resumed"))
    drop_wall = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]  # noqa: E731
    assert drop_wall(resumed_rows) == drop_wall(straight_rows) and len(resumed_rows) == 3
    for a, b in zip(straight, resumed):  # weights, masks, seed generators: bit for bit
        np.testing.assert_array_equal(a, b)
    run = str(tmp_path / "resumed")
    assert workdir_layout.cycles(run) == [3]
    with open(os.path.join(run, workdir_layout.RESULTS_JSON)) as handle:
        stored = json.load(handle)
    assert stored["method"] == "dpf" and stored["rows"] == json.loads(json.dumps(resumed_rows))
    final = tfimp.load_cycle(run, 3)
    assert masks.sparsity(final) == resumed_rows[-1]["sparsity"]
    again, weights = _dpf_run(run)  # finished: the rows back, nothing trained, the model as it ended
    assert again == resumed_rows
    for a, b in zip(weights, resumed):
        np.testing.assert_array_equal(a, b)


def test_calibrate_str_bisects_the_decay_with_real_runs(capsys):
    x, y = h.classification_data(128)
    decay, reached = baselines.calibrate_str(h.small_cnn, (x, y), 0.5, 1, max_runs=2, low=1e-2, high=10.0,
                                             **SETTINGS)
    lines = [line for line in capsys.readouterr().out.splitlines() if "str calibration run" in line]
    assert len(lines) in (1, 2) and 1e-2 < decay < 10.0
    assert f"str_weight_decay {decay:.4g} reaches {reached:.4f}" in "\n".join(lines)
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning) if abs(reached - 0.5) > 0.01 else _no_warning():
        rows = tfimp.DuringTraining("str", 0.5, 1, str_init=baselines.STR_DENSE_START, str_weight_decay=decay,
                                    seed=0, **SETTINGS).run(h.small_cnn(), (x, y), verbose=0)
    assert rows[-1]["sparsity"] == reached  # the same run again: the calibration's figure is a run's


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
