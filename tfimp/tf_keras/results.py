"""The results of a run on tf_keras: one row per cycle (or epoch); the rows and the table are ``tfimp.core.results``.

The rows go to ``results.json`` / ``results.csv`` and each ``cycle_N/row.json``.
"""

from __future__ import annotations

from typing import Optional

from tfimp.tf_keras import pruning as _pruning
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras
from tfimp.core import results as _core_results
from tfimp.core.results import _accuracy_key, _count, format_table, loss_and_accuracy  # noqa: F401


def row_from_logs(model: keras.Model, logs: dict, test_data, *, cycle: int, target: float, schedule: str,
                  initial_lr: Optional[float], epochs: int, steps: int, wall_s: float,
                  criterion: Optional[str] = None) -> dict:
    """One results row: the phase's settings, its last epoch's logs and, if given, the test metrics."""
    test = model.evaluate(test_data, verbose=0, return_dict=True) if test_data is not None else None
    return _core_results.make_row(
        logs, sparsity=_pruning.sparsity(model) if wrapping.wrappers(model) else 0.0, test_metrics=test,
        cycle=cycle, target=target, schedule=schedule, initial_lr=initial_lr, epochs=epochs, steps=steps,
        wall_s=wall_s, criterion=criterion)


def _test_loss_and_accuracy(model: keras.Model, data) -> tuple[Optional[float], Optional[float]]:
    return loss_and_accuracy(model.evaluate(data, verbose=0, return_dict=True))
