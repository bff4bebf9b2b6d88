"""Plots of a run's results (matplotlib, no display needed).

Figures are made with ``matplotlib.figure.Figure``, not ``pyplot``: no
backend is switched and no global figure state is touched, so a notebook's
own ``plt.show()`` keeps working after tfimp has written a plot.
"""

from __future__ import annotations

from typing import Sequence

from tfimp.core import extras, storage


def accuracy_vs_sparsity(rows: Sequence[dict], path: str, *, title: str = "") -> str:
    """Test (else validation) accuracy against sparsity, one point per cycle; writes a PNG.

    Returns:
      ``path``.

    Raises:
      ValueError: no row has an accuracy to plot.
    """
    Figure = extras.require("matplotlib.figure", "the accuracy-vs-sparsity plot").Figure

    metric = "test_accuracy" if any(r.get("test_accuracy") is not None for r in rows) else "val_accuracy"
    points = [(r["sparsity"], r[metric], r["cycle"]) for r in rows if r.get(metric) is not None]
    if not points:
        raise ValueError("no row has a test or validation accuracy to plot")
    figure = Figure(figsize=(6, 4), dpi=120)
    axis = figure.subplots()
    axis.plot([100 * p[0] for p in points], [100 * p[1] for p in points], marker="o")
    for sparsity, accuracy, cycle in points:
        axis.annotate(f"cycle {cycle}", (100 * sparsity, 100 * accuracy), textcoords="offset points",
                      xytext=(4, 6), fontsize=8)
    axis.set_xlabel("sparsity (%)")
    axis.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    axis.set_title(title or f"{metric.replace('_', ' ')} after each cycle")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    storage.write_figure(figure, path)
    return path
