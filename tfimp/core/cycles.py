"""What one IMP cycle's pruning step records, and what follows from it: framework-free, for every front end.

After a cycle prunes, the callbacks of both front ends hand the masks and
norms they read to :func:`pruning_record`, which works out the share of the
alive weights the step removed, the relative norm it removed (ALLR's ``d``,
by the plan's ``allr_norm_drop``) and the retraining schedule's options
(ALLR's initial rate). :func:`resets_optimizer` says whether the plan's
optimizer-state policy zeroes the slots now; :func:`finish_row` adds the
cycle's record to its results row.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from tfimp.core import retraining as _retraining
from tfimp.core import checkpoint as _checkpoint
from tfimp.core import workdir as _workdir
from tfimp.core.plan import Plan
from tfimp.core.results import _count


class ResumableProgress:
    """What both front ends' IMP callbacks keep across a resume, and how it goes into and out of ``state.json``.

    A mixin: the callback holds ``plan``, ``workdir``, ``verbose``, ``rows``,
    ``_cycles`` (per pruned cycle: :func:`pruning_record`), ``_phase_wall``,
    ``_dense_norm_sq`` and ``_restored_epoch``, and writes a finished cycle
    with ``_write_cycle(model, row)``.
    """

    def _progress_state(self, next_epoch: int) -> dict:
        """The checkpoint's ``state.json`` after epoch ``next_epoch - 1``."""
        return {"next_epoch": next_epoch, "rows": self.rows, "cycles": self._cycles,
                "phase_wall_s": self._phase_wall, "dense_norm_sq": self._dense_norm_sq,
                "finished": next_epoch >= self.plan.total_epochs}

    def _resume_from(self, state: Optional[dict], model) -> int:
        """Takes a restored ``state.json`` (``None``: nothing saved) and the model it was restored into; returns the
        epoch to continue from. The finished cycles and results on disk are checked against it
        (:func:`tfimp.core.checkpoint.check_outputs`): what the checkpoint can give is written again, said."""
        if state is None:
            self._restored_epoch = 0
            return 0
        self.rows = list(state["rows"])
        self._cycles = {int(k): v for k, v in state["cycles"].items()}
        self._phase_wall = float(state["phase_wall_s"])
        self._dense_norm_sq = state.get("dense_norm_sq")
        self._restored_epoch = int(state["next_epoch"])
        if self.workdir is not None and _workdir.is_chief():
            last = self.rows[-1]["cycle"] if self.rows else None
            at_its_end = last is not None and sum(self.plan.phase_bounds(last)) == self._restored_epoch
            _checkpoint.check_outputs(self.workdir, self.rows, {"plan": self.plan.to_dict()},
                                      rewrite_cycle=lambda row: self._write_cycle(model, row),
                                      restorable_cycle=last if at_its_end else None, finished=self.finished)
        if self.verbose and not self.finished:
            print(f"[tfimp] resuming from {self.workdir!r} at epoch {self._restored_epoch + 1}"
                  f"/{self.plan.total_epochs} ({len(self.rows)} cycle rows done)", flush=True)
        return self._restored_epoch

    @property
    def finished(self) -> bool:
        return self._restored_epoch is not None and self._restored_epoch >= self.plan.total_epochs


def pruning_record(plan: Plan, cycle: int, *, eta_max: float, alive_before: Sequence[np.ndarray],
                   alive_after: Sequence[np.ndarray], weights_before: Optional[Sequence[np.ndarray]],
                   norm_sq_before: float, norm_sq_after: float, dense_norm_sq: float,
                   emptied: Sequence[str]) -> dict:
    """The record of cycle ``cycle``'s pruning step.

    Args:
      alive_before, alive_after: boolean masks of the wrapped weights, before and after.
      weights_before: the weights before pruning (needed for ``allr_norm_drop="this_cycle"`` only).
      norm_sq_before, norm_sq_after: squared L2 norm of all trainable parameters around the step.
      dense_norm_sq: the same before the first pruning (``since_dense``'s reference).
    """
    newly = [before & ~after for before, after in zip(alive_before, alive_after)]
    alive = sum(int(np.count_nonzero(a)) for a in alive_before)
    pruned_fraction = sum(int(np.count_nonzero(n)) for n in newly) / alive if alive else 0.0
    if plan.allr_norm_drop == "since_dense":
        dropped_sq, reference_sq = abs(dense_norm_sq - norm_sq_after), dense_norm_sq
    else:
        dropped_sq = sum(float(np.sum(np.square(w[n], dtype=np.float64))) for w, n in zip(weights_before, newly))
        reference_sq = norm_sq_before
    norm_drop = math.sqrt(dropped_sq / reference_sq) if reference_sq > 0 else 0.0
    options: dict[str, Any] = {}
    if plan.retrain_schedule == "allr" and pruned_fraction > 0:
        options["initial_lr"] = _retraining.allr_initial_lr(eta_max, norm_drop, pruned_fraction,
                                                            plan.cycle_epochs()[cycle - 1], plan.reference_epochs)
    return {"target": plan.sparsity_after(cycle), "options": options, "norm_drop": norm_drop,
            "pruned_fraction": pruned_fraction, "emptied_layers": list(emptied)}


def resets_optimizer(plan: Plan, cycle: int) -> bool:
    """Whether the plan's ``optimizer_state`` zeroes the optimizer's slots when cycle ``cycle`` prunes."""
    return plan.optimizer_state == "reset_each_cycle" or (
        plan.optimizer_state == "fresh_then_keep" and cycle == 1 and plan.dense_epochs > 0)


def finish_row(row: dict, record: dict) -> dict:
    """Adds a cycle's pruning record to its results row (accuracies right after pruning, emptied layers)."""
    row["test_accuracy_pruned"] = record.get("test_accuracy_pruned")
    row["test_accuracy_bn_reestimated"] = record.get("test_accuracy_bn_reestimated")
    row["emptied_layers"] = list(record.get("emptied_layers", []))  # layers left with no weight (layer collapse)
    return row


def collapse_warning(cycle: int, target: float, emptied: Sequence[str]) -> str:
    return (f"tfimp IMP cycle {cycle}: pruning to {target:.4%} emptied {len(emptied)} layers "
            f"(layer collapse): {list(emptied)}; Plan(min_kept_per_layer=...) keeps a minimum per layer")


def phase_rates(plan: Plan, original: _retraining.Original, phase: int, steps_per_epoch: int,
                record: Optional[dict]) -> np.ndarray:
    """The learning rate of every step of ``phase``: the original schedule (0), or the cycle's retraining table."""
    if phase == 0:
        return original.values
    _, epochs = plan.phase_bounds(phase)
    return _retraining.retrain_values(plan.retrain_schedule, original, epochs * steps_per_epoch, **record["options"])


def announcement(plan: Plan, cycle: int, record: dict) -> list[str]:
    """The lines printed when a cycle starts retraining."""
    how = plan.criterion if plan.structure == "unstructured" else f"{plan.criterion}, {plan.structure}"
    lines = [f"[tfimp] cycle {cycle}/{plan.cycles}: pruned to {record['target']:.4%} ({how}), retraining "
             f"{_count(plan.cycle_epochs()[cycle - 1], 'epoch')} with {plan.retrain_schedule} (initial lr "
             f"{record['initial_lr']:.4g})"]
    if record.get("emptied_layers"):
        lines.append(f"[tfimp] warning: cycle {cycle} emptied {len(record['emptied_layers'])} layers (every weight "
                     f"pruned): {record['emptied_layers']}")
    return lines


def row_settings(plan: Plan, phase: int, record: dict, eta_max: float, steps_per_epoch: int, wall_s: float) -> dict:
    """The settings columns of phase ``phase``'s results row (the keyword arguments of ``make_row``)."""
    _, epochs = plan.phase_bounds(phase)
    return {"cycle": phase, "target": record.get("target", 0.0),
            "schedule": plan.retrain_schedule if phase else "dense",
            "initial_lr": record["initial_lr"] if phase else float(eta_max), "epochs": epochs,
            "steps": epochs * steps_per_epoch, "wall_s": wall_s, "criterion": plan.criterion if phase else None}
