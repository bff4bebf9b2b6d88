"""Runs behave the same on tf_keras and on Keras 3: rows, resume, damaged files (the core's driver, both Kerases)."""

import json
import os

import numpy as np
import pytest
from front_end_files import StopAfter as _StopAfter
from front_end_files import cut

import tfimp
from tfimp.core import checkpoint as core_checkpoint
from tfimp.core import results as core_results
from tfimp.core import workdir as layout

#: The columns of every results row, on every front end, in this order.
ROW_COLUMNS = ["cycle", "target_sparsity", "sparsity", "criterion", "retrain_schedule", "initial_lr", "epochs", "steps",
               "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "wall_s"]


def _imp(front_end, workdir, **plan):
    front_end.keras.utils.set_random_seed(0)
    x, y = front_end.data(64)
    settings = dict(target_sparsity=0.75, cycles=2, dense_epochs=2, retrain_epochs=1, batch_size=32,
                    learning_rate=0.05, dense_schedule="linear", chance_guard=False)
    settings.update(plan)
    runner = tfimp.IMP(**settings)
    return runner, runner.run(front_end.mlp(), (x, y), test=(x, y), workdir=workdir, verbose=0)


def test_imp_rows_have_one_schema_and_initial_lr_is_each_phases_peak(front_end, tmp_path):
    runner, rows = _imp(front_end, str(tmp_path / "imp"), warmup_epochs=1)
    assert [row["cycle"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert list(row)[:len(ROW_COLUMNS)] == ROW_COLUMNS, front_end.name
    # the dense row: the schedule's peak (after the warm-up), not its first step's rate (0 in a warm-up)
    assert rows[0]["initial_lr"] == pytest.approx(0.05)
    assert rows[0]["sparsity"] == 0.0 and rows[0]["retrain_schedule"] == "dense"
    assert [round(row["sparsity"], 6) for row in rows[1:]] == [0.5, 0.75]
    assert all(row["initial_lr"] > 0 for row in rows)
    # the rows on disk are the rows returned, and each cycle's row is its cycle_N/row.json
    assert core_results.load_results(str(tmp_path / "imp")) == rows
    for row in rows:
        assert core_checkpoint.finished_cycle_dir(str(tmp_path / "imp"), row["cycle"])


def test_a_dense_run_has_the_imp_dense_rows_meaning(front_end, tmp_path):
    front_end.keras.utils.set_random_seed(0)
    x, y = front_end.data(64)
    rows = tfimp.Dense(2, batch_size=32, learning_rate=0.05, dense_schedule="linear", warmup_epochs=1,
                       chance_guard=False).run(front_end.mlp(), (x, y), test=(x, y), workdir=str(tmp_path / "d"),
                                               verbose=0)
    assert len(rows) == 1 and rows[0]["cycle"] == 0 and rows[0]["retrain_schedule"] == "dense"
    assert list(rows[0])[:len(ROW_COLUMNS)] == ROW_COLUMNS
    assert rows[0]["initial_lr"] == pytest.approx(0.05)  # the peak, as in an IMP run's dense row
    assert rows[0]["steps"] == 4 and rows[0]["test_accuracy"] is not None
    assert os.path.isdir(os.path.join(str(tmp_path / "d"), layout.CHECKPOINT))  # one resume mechanism


def test_a_finished_dense_run_redoes_its_damaged_cycle_and_results(front_end, tmp_path, capfd):
    run = str(tmp_path / "dense")
    x, y = front_end.data(64)

    def dense():
        front_end.keras.utils.set_random_seed(0)
        return tfimp.Dense(1, batch_size=32, learning_rate=0.05, chance_guard=False).run(
            front_end.mlp(), (x, y), workdir=run, verbose=0)

    rows = dense()
    cycle = layout.cycles(run)[-1]
    cut(os.path.join(layout.cycle_dir(run, cycle), front_end.cycle_weights))
    cut(os.path.join(run, layout.RESULTS_JSON))
    assert dense() == rows
    err = capfd.readouterr().err
    assert f"cycle_{cycle} is damaged" in err and "results.json is damaged" in err
    assert core_checkpoint.damaged_cycle(run, cycle) is None
    assert core_results.load_results(run) == rows


@pytest.mark.parametrize("method", ["dense", "gmp", "cs", "dst"])
def test_an_interrupted_one_fit_run_resumes_to_the_uninterrupted_rows(front_end, tmp_path, method):
    x, y = front_end.data(64)

    def run(workdir, callbacks=()):
        front_end.keras.utils.set_random_seed(0)
        runner = (tfimp.Dense(3, batch_size=16, learning_rate=0.05, chance_guard=False) if method == "dense" else
                  tfimp.DuringTraining(method, 0.75, 3, batch_size=16, learning_rate=0.05, chance_guard=False,
                                       **{"gmp": {}, "cs": dict(cs_lambda=0.01), "dst": dict(dst_alpha=0.01)}[method]))
        return runner.run(front_end.mlp(), (x, y), test=(x, y), workdir=workdir, verbose=0,
                          callbacks=list(callbacks))

    reference = run(str(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        run(str(tmp_path / "cut"), [_StopAfter(front_end.keras, 1)])
    assert core_checkpoint.load_state(str(tmp_path / "cut"))["next_epoch"] == 2
    resumed = run(str(tmp_path / "cut"))
    measured = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "sparsity", "initial_lr")
    assert [[row[k] for k in measured] for row in resumed] == [[row[k] for k in measured] for row in reference]
    if method == "gmp":
        assert resumed[-1]["sparsity"] == pytest.approx(0.75, abs=1e-6)


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(front_end, tmp_path, capfd):
    x, y = front_end.data(64)
    workdir = str(tmp_path / "dense")

    def dense(callbacks=()):
        front_end.keras.utils.set_random_seed(0)
        return tfimp.Dense(3, batch_size=16, learning_rate=0.05, chance_guard=False).run(
            front_end.mlp(), (x, y), workdir=workdir, verbose=0, callbacks=list(callbacks))

    reference = dense()
    layout.remove_previous_run(workdir, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        dense([_StopAfter(front_end.keras, 1)])
    newest = core_checkpoint.complete_save(workdir)
    biggest = max((os.path.join(root, name) for root, _, names in os.walk(newest) for name in names
                   if name != "state.json"), key=os.path.getsize)
    cut(biggest)
    rows = dense()
    assert "is damaged" in capfd.readouterr().err
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in reference]


def test_the_imp_callback_in_a_users_fit_matches_the_runner(front_end, tmp_path):
    keras = front_end.keras
    x, y = front_end.data(64)
    plan = tfimp.Plan(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1)
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(front_end.mlp())
    model.compile(tfimp.optimizers.TorchSGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    imp = tfimp.callbacks.IMP(plan, workdir=str(tmp_path / "own"), verbose=0, chance_guard=False)
    model.fit(x, y, batch_size=32, epochs=plan.total_epochs, initial_epoch=imp.restore(model), callbacks=[imp],
              verbose=0, shuffle=False)
    assert [row["cycle"] for row in imp.rows] == [0, 1, 2]
    assert tfimp.sparsity(model) == pytest.approx(0.75)
    loaded = tfimp.load_cycle(str(tmp_path / "own"), 2)
    assert tfimp.sparsity(loaded) == pytest.approx(0.75)
    np.testing.assert_allclose(front_end.numpy(loaded(x[:8])), front_end.numpy(model(x[:8])), rtol=1e-5,
                               atol=1e-6)


def test_each_cycle_has_its_model_report_and_tensorboard_scalars(front_end, tmp_path):
    """The CLI's per-cycle hook on both front ends: cycle_N/report.json and tensorboard/cycles scalars."""
    import tensorflow as tf

    workdir = str(tmp_path / "imp")
    front_end.keras.utils.set_random_seed(0)
    x, y = front_end.data(64)
    rows = tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=32,
                     learning_rate=0.05, chance_guard=False).run(
        front_end.mlp(), (x, y), test=(x, y), workdir=workdir, verbose=0,
        cycle_end_hooks=[tfimp.report.CycleReporter(workdir, verbose=0)])
    for row in rows:
        saved = json.load(open(os.path.join(layout.cycle_dir(workdir, row["cycle"]), layout.CYCLE_REPORT)))
        report = tfimp.report.ModelReport.from_dict(saved)
        assert [layer.name for layer in report.layers] == ["fc1", "fc2"]
        prunable = sum(layer.parameters for layer in report.layers)
        assert 1 - sum(layer.nonzero for layer in report.layers) / prunable == pytest.approx(row["sparsity"])
        assert report.layers[0].dense_macs == 20 * 16  # a Dense layer: one output position per example
    logged: dict = {}
    for name in os.listdir(os.path.join(workdir, layout.TENSORBOARD_CYCLES)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, layout.TENSORBOARD_CYCLES, name)):
            for value in event.summary.value:
                logged.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    assert logged["cycle/sparsity"] == pytest.approx({row["cycle"]: row["sparsity"] for row in rows})
    assert set(logged["layer_sparsity/fc1"]) == {0, 1, 2}


def test_the_imp_callback_takes_arrays_for_its_test_and_recalibration_data(front_end):
    """``test_data`` and ``recalibration_data`` as ``(x, y)`` pairs, as documented, on a model with BatchNorm."""
    keras = front_end.keras
    x, y = front_end.data(64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, name="fc1"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
                              keras.layers.Dense(4, name="fc2")])
    model = tfimp.wrap(model)
    model.compile(tfimp.optimizers.TorchSGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    plan = tfimp.Plan(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1)
    imp = tfimp.callbacks.IMP(plan, test_data=(x, y), recalibration_data=(x, y), verbose=0, chance_guard=False)
    model.fit(x, y, batch_size=32, epochs=plan.total_epochs, callbacks=[imp], verbose=0, shuffle=False)
    pruned = imp.rows[-1]
    assert pruned["test_accuracy"] is not None and pruned["test_accuracy_pruned"] is not None
    assert pruned["test_accuracy_bn_reestimated"] is not None  # the re-estimation ran on the arrays
    expected = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    assert pruned["test_accuracy"] == pytest.approx(expected, abs=1e-6)
