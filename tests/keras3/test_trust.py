"""What a run promises on Keras 3: training figures from training batches only, NaN weights named, wrap once."""

import keras
import numpy as np
import pytest

import tfimp
from tfimp.keras3 import masks

import k3_helpers as h


def _run(test):
    keras.utils.set_random_seed(0)
    x, y = h.classification_data(96)
    return tfimp.IMP(target_sparsity=0.5, cycles=2, dense_epochs=2, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05).run(h.mlp(inputs=192), (x.reshape(96, -1), y), test=test, verbose=0)


def test_train_figures_count_training_batches_only():
    x_test, y_test = h.classification_data(96, seed=1)
    with_test = _run((x_test.reshape(96, -1), (y_test + 1) % 4))  # test labels shifted by one class
    without = _run(None)
    for row, reference in zip(with_test, without):
        assert row["train_accuracy"] == reference["train_accuracy"], (row["cycle"], row, reference)
        assert row["train_loss"] == reference["train_loss"], row["cycle"]
    assert all(row["test_accuracy"] is not None for row in with_test)


def test_nan_weights_are_named_before_wrapping_and_before_pruning():
    model = h.mlp()
    values = h.numpy_of(model.get_layer("fc1").kernel).copy()
    values.flat[3] = np.nan
    model.get_layer("fc1").kernel.assign(values)
    with pytest.raises(ValueError, match=r"cannot wrap model 'mlp': non-finite weights .* in fc1/kernel \(1 of"):
        tfimp.wrap(model)
    wrapped = tfimp.wrap(h.mlp())
    kernel = [k for k in masks.prunable_kernels(wrapped) if k.name.startswith("fc2")][0]
    values = h.numpy_of(kernel.weight).copy()
    values.flat[0] = np.inf
    kernel.weight.assign(values)
    with pytest.raises(ValueError, match=r"cannot prune to sparsity 0.5: non-finite weights .* fc2"):
        tfimp.prune(wrapped, 0.5)
    assert tfimp.sparsity(wrapped) == 0.0  # nothing was pruned


def test_a_non_finite_loss_stops_the_run_naming_cycle_and_epoch_and_writes_no_row_for_it(tmp_path):
    x, y = h.classification_data(64)
    run = str(tmp_path / "run")
    rows = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05).run(h.mlp(inputs=192), (x.reshape(64, -1), y), workdir=run, verbose=0)
    assert [r["cycle"] for r in rows] == [0, 1]
    x_bad = x.reshape(64, -1).copy()
    x_bad[5, 0] = np.nan
    other = str(tmp_path / "nan")
    # The loss of the epoch is NaN (tf_keras, JAX) or a NaN gradient reached the weights (Keras 3's TensorFlow
    # backend reports a finite mean loss here): either way epoch 1 of cycle 0 is named and nothing of it is written.
    with pytest.raises((FloatingPointError, ValueError), match=r"epoch 1 \(cycle 0\)"):
        tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1, batch_size=32,
                  learning_rate=0.05).run(h.mlp(inputs=192), (x_bad, y), workdir=other, verbose=0)
    import os
    from tfimp.core import workdir as layout
    assert not os.path.exists(os.path.join(other, layout.RESULTS_JSON)) and layout.cycles(other) == []


def test_wrapping_a_wrapped_model_returns_it_unchanged():
    wrapped = tfimp.wrap(h.mlp())
    tfimp.prune(wrapped, 0.5)
    masks_before = [h.numpy_of(k.mask) for k in masks.prunable_kernels(wrapped)]
    assert tfimp.wrap(wrapped) is wrapped
    masks_after = [h.numpy_of(k.mask) for k in masks.prunable_kernels(wrapped)]
    assert len(masks_after) == 2 and all(np.array_equal(a, b) for a, b in zip(masks_before, masks_after))
    with pytest.raises(ValueError, match="already wrapped"):
        tfimp.wrap(wrapped, kinds=["dense"])


def _cut(path):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def _finished_run(run):
    keras.utils.set_random_seed(0)
    x, y = h.classification_data(64)
    return tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05, chance_guard=False).run(h.mlp(inputs=192), (x.reshape(64, -1), y),
                                                                 workdir=run, verbose=0)


_JAX_ONLY = pytest.mark.skipif(keras.backend.backend() != "jax",
                               reason="the checks are backend-free (tfimp.core.checkpoint): once, on JAX, for CI time")


@_JAX_ONLY
def test_a_rerun_redoes_what_the_checkpoint_holds_and_refuses_what_it_cannot(tmp_path, capfd):
    import json
    import os

    from tfimp.core import workdir as layout

    run = str(tmp_path / "run")
    rows = _finished_run(run)
    last_weights = os.path.join(layout.cycle_dir(run, 2), layout.KERAS3_WEIGHTS)
    whole = open(last_weights, "rb").read()
    _cut(last_weights)
    _cut(os.path.join(run, layout.RESULTS_JSON))
    assert _finished_run(run) == rows
    err = capfd.readouterr().err
    assert "cycle_2 is damaged" in err and "results.json is damaged" in err
    assert len(open(last_weights, "rb").read()) > len(whole) // 2  # written again, whole, and recorded so:
    assert tfimp.core.checkpoint.damaged_cycle(run, 2) is None
    assert json.load(open(os.path.join(run, layout.RESULTS_JSON)))["rows"] == json.loads(json.dumps(rows))
    assert tfimp.sparsity(tfimp.load_cycle(run, 2)) == rows[-1]["sparsity"]
    _cut(os.path.join(layout.cycle_dir(run, 1), layout.KERAS3_WEIGHTS))
    with pytest.raises(ValueError, match=r"cycle_1 is damaged .*model.weights.h5.*cannot be written again"):
        _finished_run(run)


@_JAX_ONLY
def test_a_damaged_checkpoint_falls_back_to_the_save_before_and_the_rows_come_out_the_same(tmp_path, capfd):
    import os

    run = str(tmp_path / "run")
    rows = _finished_run(run)
    root = os.path.join(run, "checkpoint")
    saves = sorted(os.listdir(root), key=lambda name: int(name.split("_")[1]))
    assert len(saves) == 2  # the two newest are kept
    newest = os.path.join(root, saves[-1])
    _cut(os.path.join(newest, sorted(f for f in os.listdir(newest) if f != "state.json")[0]))
    again = _finished_run(run)  # resumes from the save before: the last epoch is trained again
    assert f"{saves[-1]} is damaged" in capfd.readouterr().err
    assert [{k: v for k, v in r.items() if "wall" not in k} for r in again] == [
        {k: v for k, v in r.items() if "wall" not in k} for r in rows]


def _files_of(directory):
    import os

    return {os.path.relpath(os.path.join(root, name), directory): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(directory) for name in names}


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the workdir was written on JAX (its identity names it)")
def test_a_workdir_written_before_this_release_reruns_without_changing_a_row_or_a_file(tmp_path):
    import json
    import os
    import shutil
    import sys

    fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
    sys.path.insert(0, fixtures)
    import old_workdir_run

    run = str(tmp_path / "run")
    shutil.copytree(os.path.join(fixtures, "workdir_62645ba_keras3_jax"), run)
    before = _files_of(run)
    rows = old_workdir_run.run(keras, tfimp, run)
    assert rows == json.loads(before["results.json"])["rows"]
    assert _files_of(run) == before  # no cycle file, result or checkpoint rewritten


def test_a_model_with_a_lambda_wraps_and_its_file_loads_only_when_trusted(tmp_path):
    inputs = keras.Input((20,))
    scaled = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(keras.layers.Dense(16, name="hidden")(scaled)))
    wrapped = tfimp.wrap(model)
    tfimp.prune(wrapped, 0.5)
    x = np.ones((2, 20), "float32")
    path = str(tmp_path / "m.keras")
    wrapped.save(path)
    with pytest.raises(ValueError, match="Lambda|safe_mode"):
        tfimp.load_model(path)
    loaded = tfimp.load_model(path, safe_mode=False, compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(wrapped(x)),
                               rtol=1e-6)
