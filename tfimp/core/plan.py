"""The IMP plan: how many epochs, cycles and which sparsity after each.

A plan is plain, serialisable data. It resolves the paper's notions (dense
phase of T epochs, J cycles removing the same fraction of the remaining
weights each, retraining epochs per cycle or a total split evenly with the
remainder on the last cycle) into epoch boundaries once, here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from tfimp.core import criteria as _criteria
from tfimp.core import retraining as _retraining
from tfimp.core import structures as _structures

OPTIMIZER_STATES = ("fresh_then_keep", "reset_each_cycle", "keep")
ALLR_NORM_DROPS = ("since_dense", "this_cycle")


@dataclasses.dataclass(frozen=True)
class Plan:
    """An IMP run: dense phase, then ``cycles`` prune-retrain cycles.

    Attributes:
      target_sparsity: final sparsity S, in (0, 1).
      cycles: J >= 1 (1 = one-shot pruning).
      dense_epochs: epochs of dense training before the first pruning (0 when
        starting from an already trained model).
      retrain_epochs: epochs of retraining per cycle; or
      retrain_epochs_total: a total split evenly over the cycles, the
        remainder going to the last cycle. Give exactly one of the two.
      criterion: selection criterion (``tfimp.criteria.known()``).
      retrain_schedule: retraining LR schedule (``tfimp.lr.known()``).
      original_epochs: length T of the original training, the reference of
        LRW/SLR/FT and of ALLR's floor; defaults to ``dense_epochs``.
      optimizer_state: ``fresh_then_keep`` (optimizer slots reset once when
        retraining starts, then kept across cycles: the authors' later code),
        ``reset_each_cycle`` (their earlier code) or ``keep``.
      allr_norm_drop: the relative norm drop d in ALLR's initial rate.
        ``since_dense`` (default, the authors' later code): d =
        sqrt(| ||theta_0||^2 - ||theta_pruned||^2 |) / ||theta_0||, with
        theta_0 the model before the first pruning and theta_pruned the model
        right after this cycle's pruning; ``this_cycle``: the norm this
        cycle's pruning removed, relative to the model just before it. Both
        are over all trainable parameters and agree in the first cycle.
      recalibrate_bn: after each pruning step, pass the training data through
        the model in training mode (no gradients) to re-estimate BatchNorm
        statistics before the post-pruning accuracy is measured.
      min_kept_per_layer: opt-in guard against layer collapse: every wrapped
        weight keeps at least this many weights (int) or this fraction (float
        in (0, 1)) at each pruning step (see :func:`tfimp.prune`). ``None``
        (default): the paper's plain criterion.
      structure: which weights are pruned together (:mod:`tfimp.core.structures`):
        ``"unstructured"`` (default), ``"N:M"`` (e.g. ``"2:4"``; the target
        must then be ``1 - N/M``, and cycle ``j`` prunes ``round(M *
        sparsity_after(j))`` weights of every group: 2:4 over two cycles is
        3:4, then 2:4) or ``"block:RxC"`` (whole blocks; the sparsities are
        counted in blocks).
    """

    target_sparsity: float
    cycles: int
    dense_epochs: int = 0
    retrain_epochs: Optional[int] = None
    retrain_epochs_total: Optional[int] = None
    criterion: str = "global"
    retrain_schedule: str = "slr"
    original_epochs: Optional[int] = None
    optimizer_state: str = "fresh_then_keep"
    recalibrate_bn: bool = True
    allr_norm_drop: str = "since_dense"
    min_kept_per_layer: Optional[float] = None
    structure: str = _structures.UNSTRUCTURED

    def __post_init__(self):
        if not isinstance(self.cycles, int) or self.cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {self.cycles!r}")
        if not 0.0 < float(self.target_sparsity) < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity!r}")
        if (self.retrain_epochs is None) == (self.retrain_epochs_total is None):
            raise ValueError(
                "give exactly one of retrain_epochs (per cycle) and retrain_epochs_total, got "
                f"retrain_epochs={self.retrain_epochs!r}, retrain_epochs_total={self.retrain_epochs_total!r}"
            )
        if self.retrain_epochs is not None and self.retrain_epochs < 1:
            raise ValueError(f"retrain_epochs must be >= 1, got {self.retrain_epochs!r}")
        if self.retrain_epochs_total is not None and self.retrain_epochs_total < self.cycles:
            raise ValueError(
                f"retrain_epochs_total={self.retrain_epochs_total!r} leaves a cycle without retraining: "
                f"it must be >= cycles ({self.cycles})"
            )
        if self.dense_epochs < 0:
            raise ValueError(f"dense_epochs must be >= 0, got {self.dense_epochs!r}")
        if self.original_epochs is not None and self.original_epochs < 1:
            raise ValueError(f"original_epochs must be >= 1, got {self.original_epochs!r}")
        if self.dense_epochs == 0 and self.original_epochs is None:
            raise ValueError(
                "without a dense phase, give original_epochs: the length of the training that "
                "produced the model, which the retraining schedules refer to"
            )
        if self.optimizer_state not in OPTIMIZER_STATES:
            raise ValueError(f"optimizer_state must be one of {OPTIMIZER_STATES}, got {self.optimizer_state!r}")
        if self.allr_norm_drop not in ALLR_NORM_DROPS:
            raise ValueError(f"allr_norm_drop must be one of {ALLR_NORM_DROPS}, got {self.allr_norm_drop!r}")
        _criteria.get(self.criterion)
        _retraining.check_name(self.retrain_schedule)
        keep = self.min_kept_per_layer
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, (int, float)) or keep < 0
                                 or (not float(keep).is_integer() and not 0 < keep < 1)):
            raise ValueError(f"min_kept_per_layer must be None, a count >= 0 or a fraction in (0, 1), got {keep!r}")
        object.__setattr__(self, "structure", _structures.name_of(self.structure))
        _structures.check_target(self.structure, self.target_sparsity)

    @property
    def reference_epochs(self) -> int:
        """T: the original training length the retraining schedules refer to."""
        return self.original_epochs if self.original_epochs is not None else self.dense_epochs

    @property
    def pruning_rate(self) -> float:
        """q: the fraction of the remaining weights each cycle removes."""
        return 1.0 - (1.0 - self.target_sparsity) ** (1.0 / self.cycles)

    def sparsity_after(self, cycle: int) -> float:
        """Target sparsity after cycle ``cycle`` (1-based): ``1 - (1 - q)**cycle``."""
        if cycle == self.cycles:
            return float(self.target_sparsity)  # exact, free of rounding in q
        return 1.0 - (1.0 - self.pruning_rate) ** cycle

    def cycle_epochs(self) -> list[int]:
        """Retraining epochs of each cycle."""
        if self.retrain_epochs is not None:
            return [self.retrain_epochs] * self.cycles
        share, remainder = divmod(self.retrain_epochs_total, self.cycles)
        return [share] * (self.cycles - 1) + [share + remainder]

    def cycle_start_epochs(self) -> list[int]:
        """The epoch (0-based) at which each cycle prunes and starts retraining."""
        starts, epoch = [], self.dense_epochs
        for epochs in self.cycle_epochs():
            starts.append(epoch)
            epoch += epochs
        return starts

    @property
    def total_epochs(self) -> int:
        return self.dense_epochs + sum(self.cycle_epochs())

    def phase_of(self, epoch: int) -> int:
        """0 for the dense phase, else the cycle (1-based) that ``epoch`` belongs to."""
        phase = 0
        for cycle, start in enumerate(self.cycle_start_epochs(), start=1):
            if epoch >= start:
                phase = cycle
        return phase

    def phase_bounds(self, phase: int) -> tuple[int, int]:
        """First epoch and number of epochs of a phase (0 = dense)."""
        if phase == 0:
            return 0, self.dense_epochs
        return self.cycle_start_epochs()[phase - 1], self.cycle_epochs()[phase - 1]

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        if values["min_kept_per_layer"] is None:
            del values["min_kept_per_layer"]  # unset: the same identity as plans written before the guard existed
        if values["structure"] == _structures.UNSTRUCTURED:
            del values["structure"]  # the default: the same identity as plans written before structures existed
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Plan":
        return cls(**values)

    @classmethod
    def renda(cls, target_sparsity: float, **kwargs) -> "Plan":
        """Renda-style plan: 20% of the remaining weights per cycle, J = ceil(log(1-S)/log(0.8))."""
        cycles = int(math.ceil(math.log(1.0 - target_sparsity) / math.log(0.8) - 1e-12))
        return cls(target_sparsity=target_sparsity, cycles=cycles, **kwargs)

    @classmethod
    def bimp(cls, target_sparsity: float, cycles: int, *, total_epochs: int, dense_epochs: int,
             criterion: str = "global", **kwargs) -> "Plan":
        """BIMP: dense for T_d epochs (linear-to-zero schedule), J cycles share the rest, ALLR.

        The whole run takes ``total_epochs``, the budget of a pruning-during-training
        method; ALLR's floor uses ``dense_epochs`` as T.
        """
        if not 0 < dense_epochs < total_epochs:
            raise ValueError(f"BIMP needs 0 < dense_epochs < total_epochs, got {dense_epochs} and {total_epochs}")
        return cls(target_sparsity=target_sparsity, cycles=cycles, dense_epochs=dense_epochs,
                   retrain_epochs_total=total_epochs - dense_epochs, criterion=criterion,
                   retrain_schedule="allr", original_epochs=dense_epochs, **kwargs)


#: Plan fields that ``IMP.bimp`` takes beside the runner's settings.
BIMP_PLAN_FIELDS = ("optimizer_state", "recalibrate_bn", "allr_norm_drop", "min_kept_per_layer", "structure")


def runner_plan(plan: Optional[Plan], arguments: dict, setting_names) -> tuple[Plan, dict]:
    """``(plan, runner settings)`` from a runner's ``IMP(plan=None, **arguments)``.

    ``arguments`` holds the runner's settings (``setting_names``) and, without
    ``plan``, the plan's fields.

    Raises:
      TypeError: both a plan and plan fields were given.
    """
    settings = {k: arguments.pop(k) for k in list(arguments) if k in setting_names}
    if plan is None:
        plan = Plan(**arguments)
    elif arguments:
        raise TypeError(f"give a plan or plan fields, not both (got {sorted(arguments)})")
    return plan, settings


def bimp_plan(target_sparsity: float, cycles: int, total_epochs: int, dense_epochs: int, criterion: str,
              settings: dict) -> tuple[Plan, dict]:
    """``(BIMP's plan, the runner settings left)``; the dense schedule defaults to linear-to-zero."""
    plan = Plan.bimp(target_sparsity, cycles, total_epochs=total_epochs, dense_epochs=dense_epochs,
                     criterion=criterion, **{k: settings.pop(k) for k in list(settings) if k in BIMP_PLAN_FIELDS})
    settings.setdefault("dense_schedule", "linear")
    return plan, settings
