"""Results rows, the table printed from them and the results files: framework-free, for every front end and runner.

Every runner reports the same row: the phase's settings, its last epoch's
logs and, when test data is given, the test loss and accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from tfimp.core import storage as _storage
from tfimp.core import workdir as _workdir

#: Columns of the progress table printed at the end of a run.
_TABLE_COLUMNS = (
    ("cycle", "{:>5}"), ("target_sparsity", "{:>8.4f}"), ("sparsity", "{:>8.4f}"),
    ("retrain_schedule", "{:>6}"), ("initial_lr", "{:>9.4g}"), ("epochs", "{:>6}"),
    ("train_accuracy", "{:>9.4f}"), ("val_accuracy", "{:>9.4f}"), ("test_accuracy", "{:>9.4f}"),
    ("wall_s", "{:>8.1f}"),
)


def _count(number: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def format_table(rows: list[dict]) -> str:
    """The per-cycle rows as a fixed-width text table."""
    columns = [(name, fmt) for name, fmt in _TABLE_COLUMNS if any(row.get(name) is not None for row in rows)]
    widths = [max(len(name), len(fmt.format(0 if "s}" not in fmt else ""))) for name, fmt in columns]
    lines = [" ".join(name.rjust(width) for (name, _), width in zip(columns, widths))]
    for row in rows:
        cells = []
        for (name, fmt), width in zip(columns, widths):
            value = row.get(name)
            cells.append(("-" if value is None else fmt.format(value)).rjust(width))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _accuracy_key(logs: dict) -> Optional[str]:
    for key in logs:
        if "acc" in key and not key.startswith("val_"):
            return key
    return None


def make_row(logs: dict, *, sparsity: float, test_metrics: Optional[dict], cycle: int, target: float, schedule: str,
             initial_lr: Optional[float], epochs: int, steps: int, wall_s: float,
             criterion: Optional[str] = None) -> dict:
    """One results row from an epoch's ``logs`` and, if given, ``evaluate``'s dict of test metrics."""
    accuracy = _accuracy_key(logs)
    row = {
        "cycle": cycle,
        "target_sparsity": target,
        "sparsity": sparsity,
        "criterion": criterion,
        "retrain_schedule": schedule,
        "initial_lr": initial_lr,
        "epochs": epochs,
        "steps": steps,
        "train_loss": logs.get("loss"),
        "train_accuracy": logs.get(accuracy) if accuracy else None,
        "val_loss": logs.get("val_loss"),
        "val_accuracy": logs.get(f"val_{accuracy}") if accuracy else None,
        "test_loss": None,
        "test_accuracy": None,
        "wall_s": wall_s,
    }
    if test_metrics is not None:
        row["test_loss"], row["test_accuracy"] = loss_and_accuracy(test_metrics)
    return {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in row.items()}


def loss_and_accuracy(metrics: dict) -> tuple[Optional[float], Optional[float]]:
    """The loss and the accuracy metric of an ``evaluate(..., return_dict=True)`` result."""
    key = _accuracy_key(metrics)
    loss = metrics.get("loss")
    return (None if loss is None else float(loss)), (float(metrics[key]) if key else None)


# -- files -------------------------------------------------------------------

def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=_json_default)


def results_files(rows: Sequence[dict], extra: dict | None = None) -> dict[str, str]:
    """The text of ``results.json`` (rows + ``extra``) and ``results.csv`` for ``rows``, by file name."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    # Lists (a cycle's emptied layers) as one ";"-separated cell.
    writer.writerows({key: ";".join(map(str, value)) if isinstance(value, list) else value for key, value in row.items()}
                     for row in rows)
    return {_workdir.RESULTS_JSON: to_json({**(extra or {}), "rows": list(rows)}),
            _workdir.RESULTS_CSV: buffer.getvalue()}


def write_results(workdir: str, rows: Sequence[dict], extra: dict | None = None) -> None:
    """Writes ``results.json`` (rows + ``extra``) and ``results.csv`` atomically."""
    for name, text in results_files(rows, extra).items():
        _storage.atomic_write_text(os.path.join(workdir, name), text)


def load_results(workdir: str) -> list[dict] | None:
    """The rows of ``results.json`` in ``workdir``, or ``None`` if there is none."""
    found = _storage.read_json(os.path.join(workdir, _workdir.RESULTS_JSON))
    return None if found is None else found["rows"]
