"""What a run promises on tf_keras: training figures from training batches only, NaN weights named, wrap once."""

import numpy as np
import pytest

import tfimp
from tfimp import keras

import helpers


def _run(test):
    keras.utils.set_random_seed(0)
    x, y = helpers.random_data(96)
    return tfimp.IMP(target_sparsity=0.5, cycles=2, dense_epochs=2, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05).run(helpers.small_cnn(), (x, y), test=test, verbose=0)


def test_train_figures_count_training_batches_only():
    x_test, y_test = helpers.random_data(96, seed=1)
    with_test = _run((x_test, (y_test + 1) % 5))  # test labels shifted by one class: any leak shows
    without = _run(None)
    for row, reference in zip(with_test, without):
        assert row["train_accuracy"] == reference["train_accuracy"], (row["cycle"], row, reference)
        assert row["train_loss"] == reference["train_loss"], row["cycle"]
    assert all(row["test_accuracy"] is not None for row in with_test)


def _poisoned():
    model = helpers.small_cnn()
    kernel = model.get_layer("conv2").kernel
    values = kernel.numpy()
    values.flat[3] = np.nan
    kernel.assign(values)
    return model


def test_nan_weights_are_named_before_wrapping_and_before_pruning():
    with pytest.raises(ValueError, match=r"cannot wrap model .*non-finite weights .* in conv2/kernel \(1 of"):
        tfimp.wrap(_poisoned())
    wrapped = tfimp.wrap(helpers.small_cnn())
    kernel = [k for k in tfimp.wrapping.prunable_kernels(wrapped) if k.name.startswith("conv2")][0].weight
    values = kernel.numpy()
    values.flat[0] = np.inf
    kernel.assign(values)
    with pytest.raises(ValueError, match=r"cannot prune to sparsity 0.5: non-finite weights .* conv2"):
        tfimp.prune(wrapped, 0.5)
    assert tfimp.sparsity(wrapped) == 0.0  # nothing was pruned


def test_wrapping_a_wrapped_model_returns_it_unchanged():
    wrapped = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(wrapped, 0.5)
    assert tfimp.wrap(wrapped) is wrapped
    assert tfimp.sparsity(wrapped) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="already wrapped"):
        tfimp.wrap(wrapped, kinds=["dense"])


def _cut(path):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def _finished_run(run):
    keras.utils.set_random_seed(0)
    x, y = helpers.random_data(64)
    return tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05, chance_guard=False).run(helpers.small_cnn(), (x, y), workdir=run, verbose=0)


def test_a_rerun_redoes_what_the_checkpoint_holds_and_refuses_what_it_cannot(tmp_path, capfd):
    import json
    import os

    from tfimp.core import workdir as layout

    run = str(tmp_path / "run")
    rows = _finished_run(run)
    last_weights = os.path.join(layout.cycle_dir(run, 2), layout.CYCLE_WEIGHTS)
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
    _cut(os.path.join(layout.cycle_dir(run, 1), layout.CYCLE_WEIGHTS))
    with pytest.raises(ValueError, match=r"cycle_1 is damaged .*weights.h5.*cannot be written again"):
        _finished_run(run)


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


def test_a_workdir_written_before_this_release_reruns_without_changing_a_row_or_a_file(tmp_path):
    import json
    import os
    import shutil
    import sys

    fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
    sys.path.insert(0, fixtures)
    import old_workdir_run

    run = str(tmp_path / "run")
    shutil.copytree(os.path.join(fixtures, "workdir_62645ba_tf_keras"), run)
    before = _files_of(run)
    rows = old_workdir_run.run(keras, tfimp, run)
    assert rows == json.loads(before["results.json"])["rows"]
    assert _files_of(run) == before  # no cycle file, result or checkpoint rewritten


def test_load_model_is_safe_by_default_for_every_format_and_loads_trusted_lambdas(tmp_path):
    inputs = keras.Input((4,))
    scaled = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(scaled))
    x = np.ones((2, 4), "float32")
    for path in (str(tmp_path / "m.h5"), str(tmp_path / "saved"), str(tmp_path / "m.keras")):
        model.save(path)
        with pytest.raises(ValueError, match="double|Lambda|safe_mode"):
            tfimp.load_model(path)
        loaded = tfimp.load_model(path, safe_mode=False, compile=False)
        np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"m.h5 holds Lambda layers \(double\) whose stored Python code would run"):
        tfimp.load_model(str(tmp_path / "m.h5"))




def test_a_dense_run_an_older_tfimp_finished_is_returned_without_training(tmp_path, capfd):
    """Older tfimp kept a finished dense run as final.weights.h5 beside its rows (no checkpoint/)."""
    import os
    import shutil

    from tfimp.core import workdir as layout

    run = str(tmp_path / "dense")
    x, y = helpers.random_data(64)

    def dense():
        keras.utils.set_random_seed(0)
        runner = tfimp.Dense(1, batch_size=32, learning_rate=0.05, chance_guard=False)
        return runner, runner.run(helpers.small_cnn(), (x, y), workdir=run, verbose=1)

    first, rows = dense()
    shutil.rmtree(os.path.join(run, layout.CHECKPOINT))
    first.model.save_weights(os.path.join(run, layout.FINAL_WEIGHTS))
    capfd.readouterr()
    again, rows_again = dense()
    assert rows_again == rows
    out = capfd.readouterr().out
    assert "holds this finished run (dense)" in out and "Epoch 1/" not in out
    np.testing.assert_array_equal(again.model.predict(x, verbose=0), first.model.predict(x, verbose=0))
    _cut(os.path.join(run, layout.FINAL_WEIGHTS))
    with pytest.raises(ValueError, match=r"final.weights.h5 is damaged"):
        dense()
