"""Structured sparsity (N:M, blocks) on both front ends: the masks read back with numpy, through pruning, fit, IMP
cycles, a resume, save and load."""

import json
import os

import numpy as np
import pytest
from front_end_files import StopAfter

import tfimp
from tfimp.core import checkpoint as core_checkpoint
from tfimp.core import workdir as layout


def _cnn(keras, channels: int = 4):
    """Kernels conv1 (3, 3, channels, 8), conv2 (3, 3, 8, 8), fc1 (32, 16), fc2 (16, 4)."""
    return keras.Sequential([
        keras.Input((6, 6, channels)), keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv2"), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc1"), keras.layers.Dense(4, name="fc2")], name="cnn")


def _data(n: int = 64, channels: int = 4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6, 6, channels)).astype("float32")
    return x, x.reshape(n, -1)[:, :4].argmax(1).astype("int32")


def _nonzero_per_group(kernel: np.ndarray, m: int) -> np.ndarray:
    """Nonzeros in every group of ``m`` consecutive entries along the input axis (the axis before the last)."""
    return np.count_nonzero(np.moveaxis(kernel, -2, -1).reshape(-1, m), axis=1)


def _blocks(kernel: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Nonzeros in every ``rows`` x ``cols`` block of the kernel's (all axes but the last, the last) view."""
    view = kernel.reshape(-1, kernel.shape[-1]) != 0
    grid = -(-view.shape[0] // rows), -(-view.shape[1] // cols)
    padded = np.zeros((grid[0] * rows, grid[1] * cols), bool)
    padded[:view.shape[0], :view.shape[1]] = view
    return padded.reshape(grid[0], rows, grid[1], cols).sum(axis=(1, 3))


def _block_sizes(kernel: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return _blocks(np.ones_like(kernel), rows, cols)


def _compiled(front_end, model):
    model.compile(tfimp.optimizers.TorchSGD(0.05, momentum=0.9),
                  front_end.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_n_of_m_keeps_n_in_every_group_of_the_input_axis_and_leaves_a_3_channel_conv_dense(front_end):
    model = tfimp.wrap(_cnn(front_end.keras, channels=3))
    model(_data(2, channels=3)[0])
    before = [weight for weight, _ in front_end.kernels(model)]
    with pytest.warns(UserWarning, match=r"structure '2:4' leaves 1 kernels as they are \(dense\).*\['conv1 "
                                         r"\(3, 3, 3, 8\)'\]"):
        per_layer = tfimp.prune(model, 0.5, structure="2:4")
    assert per_layer == {"conv1": 0.0, "conv2": 0.5, "fc1": 0.5, "fc2": 0.5}
    kernels = front_end.kernels(model)
    assert np.all(kernels[0][1] == 1)  # conv1: 3 input channels, no group of 4
    for (weight, mask), dense in zip(kernels[1:], before[1:]):
        assert set(_nonzero_per_group(mask, 4)) == {2} and set(_nonzero_per_group(weight, 4)) == {2}
        assert np.all(weight[mask == 0] == 0)
        # the two kept in each group are its two largest magnitudes
        groups = np.moveaxis(np.abs(dense), -2, -1).reshape(-1, 4)
        kept = np.moveaxis(mask, -2, -1).reshape(-1, 4) != 0
        np.testing.assert_array_equal((groups * kept).sum(axis=1), np.sort(groups, axis=1)[:, 2:].sum(axis=1))
    structured = sum(m.size for _, m in kernels[1:])
    total = structured + kernels[0][1].size
    assert tfimp.sparsity(model) == pytest.approx(0.5 * structured / total)
    assert tfimp.sparsity(model, structure="2:4") == pytest.approx(0.5 * structured / total)
    assert tfimp.layer_sparsity(model, structure="2:4") == per_layer
    with pytest.raises(ValueError, match=r"structure '2:4' keeps 2 of every 4 weights, so it prunes to sparsity at "
                                         r"most 1 - 2/4 = 0.5; got 0.75"):
        tfimp.prune(model, 0.75, structure="2:4")
    with pytest.raises(ValueError, match="unknown structure '2/4'"):
        tfimp.prune(model, 0.5, structure="2/4")


def test_imp_tightens_3_of_4_then_2_of_4_through_a_resume_and_each_cycle_loads_back(front_end, tmp_path):
    x, y = _data()
    workdir = str(tmp_path / "imp")

    def run(callbacks=()):
        front_end.keras.utils.set_random_seed(0)
        runner = tfimp.IMP(target_sparsity=0.5, cycles=2, dense_epochs=1, retrain_epochs=1, structure="2:4",
                           batch_size=32, learning_rate=0.05, chance_guard=False)
        return runner, runner.run(_cnn(front_end.keras), (x, y), test=(x, y), workdir=workdir, verbose=0,
                                  callbacks=list(callbacks))

    with pytest.raises(KeyboardInterrupt):
        run([StopAfter(front_end.keras, 1)])  # cycle 1 done and checkpointed, cycle 2 not begun
    assert core_checkpoint.load_state(workdir)["next_epoch"] == 2
    runner, rows = run()
    assert runner.plan.structure == "2:4"
    assert [(row["cycle"], row["sparsity"], row.get("unit_sparsity")) for row in rows] == [
        (0, 0.0, 0.0), (1, 0.25, 0.25), (2, 0.5, 0.5)]
    assert all(row["structure"] == "2:4" for row in rows)
    first = front_end.kernels(tfimp.load_cycle(workdir, 1))
    final = front_end.kernels(runner.model)
    for (_, mask_1), (weight, mask_2) in zip(first, final):
        assert set(_nonzero_per_group(mask_1, 4)) == {3}  # 3:4 after the first of two cycles
        assert set(_nonzero_per_group(mask_2, 4)) == {2} and np.all(weight[mask_2 == 0] == 0)
        assert np.all(mask_2 <= mask_1)  # the second cycle only added to the first one's zeros
    for (_, loaded), (_, mask) in zip(front_end.kernels(tfimp.load_cycle(workdir, 2)), final):
        np.testing.assert_array_equal(loaded, mask)
    saved = json.load(open(os.path.join(layout.cycle_dir(workdir, 2), layout.CYCLE_REPORT)))
    assert saved["structure"] == "2:4" and saved["unit_sparsity"] == 0.5
    assert json.load(open(os.path.join(workdir, layout.RESULTS_JSON)))["plan"]["structure"] == "2:4"


def test_blocks_are_whole_at_the_exact_count_and_survive_fit_save_load_and_strip(front_end, tmp_path):
    keras = front_end.keras
    x, y = _data()
    model = tfimp.wrap(_cnn(keras))
    model(x[:2])
    per_layer = tfimp.prune(model, 0.6, structure="block:3x4")  # fc1 (32 rows) and fc2 (16) end in edge blocks
    counts = [(_blocks(mask, 3, 4), _block_sizes(mask, 3, 4)) for _, mask in front_end.kernels(model)]
    assert all(np.all((alive == 0) | (alive == size)) for alive, size in counts)  # whole blocks only
    pruned, blocks = sum(int(np.sum(alive == 0)) for alive, _ in counts), sum(alive.size for alive, _ in counts)
    assert pruned == round(0.6 * blocks) and tfimp.sparsity(model, structure="block:3x4") == pruned / blocks
    assert list(per_layer.values()) == [float(np.mean(alive == 0)) for alive, _ in counts]
    masks = [mask for _, mask in front_end.kernels(model)]

    _compiled(front_end, model).fit(x, y, batch_size=16, epochs=1, verbose=0)
    for (weight, mask), before in zip(front_end.kernels(model), masks):
        np.testing.assert_array_equal(mask, before)
        assert np.all(weight[mask == 0] == 0)
    path = str(tmp_path / "wrapped.keras")
    model.save(path)
    loaded = tfimp.load_model(path)
    for (_, mask), before in zip(front_end.kernels(loaded), masks):
        np.testing.assert_array_equal(mask, before)
    stripped_path = str(tmp_path / "stripped.keras")
    tfimp.strip(model).save(stripped_path)
    stripped = tfimp.load_model(stripped_path)
    assert tfimp.sparsity(stripped, structure="block:3x4") == pruned / blocks  # counted from the zeros
    np.testing.assert_allclose(front_end.numpy(stripped(x[:8])), front_end.numpy(model(x[:8])), rtol=1e-5,
                               atol=1e-6)


def test_gmp_ramps_into_n_of_m(front_end):
    keras = front_end.keras
    x, y = _data(96)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([mask for _, mask in front_end.kernels(self.model)])

    keras.utils.set_random_seed(0)
    runner = tfimp.DuringTraining("gmp", 0.5, 3, structure="2:4", frequency=1, batch_size=32, learning_rate=0.05,
                                  chance_guard=False)
    rows = runner.run(_cnn(keras), (x, y), verbose=0, callbacks=[Record()])
    for masks in seen:  # on the way: one N':4 for every group of every kernel
        assert len({count for mask in masks for count in _nonzero_per_group(mask, 4)}) == 1
    assert {count for mask in seen[0] for count in _nonzero_per_group(mask, 4)} == {3}  # mid-ramp: 3:4
    for weight, mask in front_end.kernels(runner.model):
        assert set(_nonzero_per_group(mask, 4)) == {2} and np.all(weight[mask == 0] == 0)
    assert rows[-1]["sparsity"] == 0.5 and rows[-1]["structure"] == "2:4" and rows[-1]["unit_sparsity"] == 0.5
    with pytest.raises(ValueError, match="method 'str' does not prune with tfimp's selection"):
        tfimp.DuringTraining("str", 0.5, 3, structure="2:4")


def test_unstructured_is_what_pruning_always_was(front_end):
    x, _ = _data(2)
    front_end.keras.utils.set_random_seed(0)
    default = tfimp.wrap(_cnn(front_end.keras))
    default(x)
    named = tfimp.wrap(_cnn(front_end.keras))
    named(x)
    named.set_weights(default.get_weights())
    assert tfimp.prune(default, 0.7) == tfimp.prune(named, 0.7, structure="unstructured")
    for (w_a, m_a), (w_b, m_b) in zip(front_end.kernels(default), front_end.kernels(named)):
        np.testing.assert_array_equal(m_a, m_b)
        np.testing.assert_array_equal(w_a, w_b)
    assert tfimp.sparsity(default, structure="unstructured") == tfimp.sparsity(default) == pytest.approx(0.7, abs=1e-3)
    values = tfimp.report.model_report(default).to_dict()
    assert "structure" not in values and "units" not in values["layers"][0]
    with pytest.raises(ValueError, match="over the prunable weights only"):
        tfimp.sparsity(default, over="all", structure="2:4")
