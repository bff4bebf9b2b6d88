"""The pruning-during-training baselines without a framework: ramps, method rules, STR's calibration search.

Both front ends run the same comparison set (``tfimp.baselines`` on
tf_keras, ``tfimp.keras3.baselines`` on Keras 3); what a method *is* lives
here, as a :class:`MethodRule` in :data:`RULES`:

* ``gmp`` — gradual magnitude pruning (Zhu & Gupta 2017, arXiv:1710.01878),
  the cubic ramp :func:`cubic_sparsity`, global magnitude by default;
* ``tfmot_gmp`` — the same ramp per layer, as tfmot's ``PolynomialDecay``
  schedules it (tfmot itself on tf_keras; on Keras 3, which tfmot cannot
  wrap, its schedule reproduced with the ``uniform`` criterion);
* ``dpf`` — dynamic pruning with feedback (Lin et al. 2020, arXiv:2006.07253):
  the mask recomputed from the dense weights every 16 steps;
* ``str`` — soft threshold reparametrisation (Kusupati et al. 2020,
  arXiv:2002.03231): one learnable threshold per layer;
* ``dnw`` — discovering neural wirings (Wortsman et al. 2019,
  arXiv:1906.00586): from the first step the forward pass keeps the global
  top ``(1 - S) n`` weights by magnitude, recomputed every step from the
  dense weights, the gradient reaching every weight (DPF's machinery at
  frequency 1 without a ramp); the mask it trained with is kept at the end;
* ``lc`` and ``gsm`` — Learning-Compression and Global Sparse Momentum: dense
  training whose update favours the global top-k weights every step
  (:mod:`tfimp.core.gradient_rules`), then one global magnitude pruning
  step to the target when training ends.

A front end turns a rule into its wrapper and callbacks; a new method is a
rule here (and, where it needs one, a reparametrisation in
:mod:`tfimp.core.reparametrisations`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Optional, Sequence

from tfimp.core import criteria, notices, structures
from tfimp.core.registry import Registry

#: A during-training run that ends farther than this from its target sparsity warns.
TARGET_TOLERANCE = 0.01
#: STR's threshold parameter at the start of a calibrated run: sigmoid(-8) = 3e-4, a nearly dense start.
STR_DENSE_START = -8.0
#: How a method changes the masks during ``fit``: along the ramp (monotone), or DPF's recomputation.
PRUNING_KINDS = ("ramp", "dpf", None)


def cubic_sparsity(step: int, target: float, begin: int, end: int) -> float:
    """Zhu & Gupta's ramp: 0 before ``begin``, ``target`` from ``end`` on, ``S - S(1 - (t - t0)/(t1 - t0))^3`` between.

    A ramp with ``begin == end`` is a step: ``target`` from that step on (DNW's, from step 0).
    """
    if step >= end:
        return float(target)
    if step <= begin:
        return 0.0
    return float(target - target * (1.0 - (step - begin) / (end - begin)) ** 3)


@dataclasses.dataclass(frozen=True)
class PruningRamp:
    """When gradual pruning prunes and to what level: the step table both front ends' callbacks follow.

    GMP prunes to the cubic ramp's level every ``frequency`` steps from
    ``begin_step`` and at ``end_step``; DPF (``dpf=True``) recomputes its mask
    every ``frequency`` steps for the whole run and as soon as the level
    rises. The level is piecewise constant over ``level_every`` steps (the
    authors' GMP and DPF raise it at epoch ends; 1 = a continuous ramp).
    """

    target_sparsity: float
    begin_step: int
    end_step: int
    frequency: int = 100
    level_every: int = 1
    dpf: bool = False

    def __post_init__(self):
        if not 0.0 < self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        if self.frequency < 1 or self.level_every < 1 or not 0 <= self.begin_step <= self.end_step:
            raise ValueError(f"need frequency >= 1, level_every >= 1 and 0 <= begin_step <= end_step, got "
                             f"{self.frequency}, {self.level_every}, {self.begin_step}, {self.end_step}")

    def level(self, step: int) -> float:
        """The ramp's sparsity at ``step``."""
        return cubic_sparsity(step - step % self.level_every, self.target_sparsity, self.begin_step, self.end_step)

    def due(self, step: int) -> Optional[float]:
        """The level to prune to before ``step`` runs, or None when nothing is due then."""
        level = self.level(step)
        if level <= 0:
            return None
        if self.dpf:
            return level if step % self.frequency == 0 or level != self.level(step - 1) else None
        on_grid = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        return level if self.begin_step <= step <= self.end_step and on_grid else None


class RampSteps:
    """The framework-free half of a gradual-pruning callback: its ramp, its criterion and its step counter.

    Each front end's ``GradualPruning`` mixes it into its Keras' ``Callback``:
    it sets ``_step`` from the optimizer's iterations when training begins and
    asks :meth:`next_level` before each batch.
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int, frequency: int = 100,
                 criterion: str = "global", dpf: bool = False, level_every: int = 1,
                 structure: str = structures.UNSTRUCTURED):
        self.ramp = PruningRamp(float(target_sparsity), int(begin_step), int(end_step), int(frequency),
                                int(level_every), bool(dpf))
        criteria.get(criterion)
        self.target_sparsity, self.criterion, self.dpf = self.ramp.target_sparsity, criterion, self.ramp.dpf
        self.structure = structures.name_of(structure)
        structures.check_target(self.structure, self.target_sparsity)
        self._step = 0

    def next_level(self) -> Optional[float]:
        """The level to prune to before this batch (None: nothing due); advances the step counter."""
        level = self.ramp.due(self._step)
        self._step += 1
        return level

    def prune_options(self) -> dict:
        """DPF prunes from the dense weights, pruned weights free to come back; GMP's masks only grow. Both in the
        ramp's structure (the ramp's levels map to N:M as in ``tfimp.prune``)."""
        options = dict(allow_revival=True, zero_pruned=False) if self.dpf else {}
        return {**options, **self.structure_options()}

    def structure_options(self) -> dict:
        """``structure=`` for ``prune`` and ``sparsity``; none for unstructured ramps (their calls stay as they were)."""
        return {} if self.structure == structures.UNSTRUCTURED else {"structure": self.structure}


def auto_frequency(ramp_steps: int, updates: int = 30, most: int = 100) -> int:
    """Steps between mask updates for a ramp of ``ramp_steps``: at least ``updates`` updates, never rarer than ``most``.

    Zhu & Gupta prune every 100 steps over ramps of tens of thousands of
    steps; a short budget needs proportionally more frequent updates, or the
    ramp degenerates into a few large one-shot prunings.
    """
    return max(1, min(most, ramp_steps // updates))


def tfmot_end_step(begin_step: int, end_step: int, frequency: int) -> int:
    """``end_step`` moved up to the next multiple of ``frequency`` after ``begin_step``: tfmot's
    ``PolynomialDecay`` prunes only on those steps and would stop short of its target otherwise."""
    return begin_step + -(-(end_step - begin_step) // frequency) * frequency


def _zhu_gupta_fractions(epochs: int) -> tuple[float, float]:
    return 0.1, 0.75


def _from_the_start(epochs: int) -> tuple[float, float]:
    """The target from the first step (no ramp)."""
    return 0.0, 0.0


def _at_the_end(epochs: int) -> tuple[float, float]:
    """No ramp: one magnitude pruning step when training ends."""
    return 1.0, 1.0


def _dpf_fractions(epochs: int) -> tuple[float, float]:
    """From the start to one epoch before the end, as in the authors' DPF code."""
    return 0.0, (epochs - 1) / epochs if epochs > 1 else 1.0


@dataclasses.dataclass(frozen=True)
class MethodRule:
    """What one pruning-during-training method is, on any front end.

    Attributes:
      default_fractions: ``epochs -> (begin_fraction, end_fraction)`` of the ramp when the user gives none.
      default_frequency: steps between mask updates (``None``: :func:`auto_frequency` of the ramp).
      pruning: ``"ramp"`` (masks grow along the cubic ramp), ``"dpf"`` (recomputed from the dense
        weights, pruned weights may come back) or ``None`` (the method's forward pass decides).
      reparametrisation: the forward pass's kernel (:mod:`tfimp.core.reparametrisations`), or ``None``.
      uses_criterion: the method prunes by ``criterion`` (its rows name it).
      reaches_its_own_sparsity: the sparsity is where the method ends up (STR), not a schedule's target.
      fixed_criterion: the criterion the method always uses (``tfmot_gmp``: per layer), or ``None``.
      level_every_epoch: the ramp's level rises at epoch ends only (the authors' DPF), not every step.
      tfmot_steps: masks change only on tfmot's steps (:func:`tfmot_end_step`).
      gradient_rule: the update rule the optimizer applies every step (:mod:`tfimp.core.gradient_rules`), or
        ``None``.
    """

    default_fractions: Callable[[int], tuple[float, float]]
    default_frequency: Optional[int]
    pruning: Optional[str]
    reparametrisation: Optional[str] = None
    uses_criterion: bool = True
    reaches_its_own_sparsity: bool = False
    fixed_criterion: Optional[str] = None
    level_every_epoch: bool = False
    tfmot_steps: bool = False
    gradient_rule: Optional[str] = None

    def __post_init__(self):
        if self.pruning not in PRUNING_KINDS:
            raise ValueError(f"pruning must be one of {PRUNING_KINDS}, got {self.pruning!r}")


#: ``method name -> MethodRule``: the comparison set both front ends run.
RULES: Registry[MethodRule] = Registry("during-training method")
#: The built-in methods that prune while training, in the order the CLI and the benchmarks list them.
DURING_TRAINING = ("gmp", "tfmot_gmp", "dpf", "str", "dnw", "lc", "gsm")
RULES.register("gmp", MethodRule(_zhu_gupta_fractions, None, "ramp"))
RULES.register("tfmot_gmp", MethodRule(_zhu_gupta_fractions, None, "ramp", uses_criterion=False,
                                       fixed_criterion="uniform", tfmot_steps=True))
RULES.register("dpf", MethodRule(_dpf_fractions, 16, "dpf", reparametrisation="dpf", level_every_epoch=True))
RULES.register("str", MethodRule(_zhu_gupta_fractions, None, None, reparametrisation="str", uses_criterion=False,
                                 reaches_its_own_sparsity=True))
RULES.register("dnw", MethodRule(_from_the_start, 1, "dpf", reparametrisation="dpf", fixed_criterion="global"))
RULES.register("lc", MethodRule(_at_the_end, None, "ramp", fixed_criterion="global", gradient_rule="lc"))
RULES.register("gsm", MethodRule(_at_the_end, None, "ramp", fixed_criterion="global", gradient_rule="gsm"))


def takes_structure(method: str) -> bool:
    """Whether a method prunes with tfimp's selection (a ramp or DPF's recomputation, by a criterion), so that a
    ``structure`` (:mod:`tfimp.core.structures`) applies to it: not STR, nor tfmot's own ``tfmot_gmp``."""
    rule = RULES.get(method)
    return rule.pruning is not None and rule.uses_criterion


def known_methods(order: Sequence[str]) -> list[str]:
    """Every rule's name: those in ``order`` (the CLI's) first, in that order, then any added ones, sorted."""
    return [m for m in order if m in RULES] + sorted(set(RULES.known()) - set(order))


@dataclasses.dataclass(frozen=True)
class Budget:
    """A during-training run's settings, checked: the method, its target, its epochs and its ramp."""

    method: str
    target_sparsity: float
    epochs: int
    criterion: str
    begin_fraction: float
    end_fraction: float
    frequency: Optional[int]
    str_init: float
    str_weight_decay: float
    structure: str = structures.UNSTRUCTURED

    @property
    def rule(self) -> MethodRule:
        return RULES.get(self.method)

    def ramp(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(begin step, end step, steps between mask updates) for this budget."""
        begin = int(round(self.begin_fraction * self.epochs * steps_per_epoch))
        end = max(begin, int(round(self.end_fraction * self.epochs * steps_per_epoch)))
        if self.frequency is not None:
            frequency = self.frequency
        elif self.rule.default_frequency is not None:
            frequency = self.rule.default_frequency
        else:
            frequency = auto_frequency(end - begin)
        if self.rule.tfmot_steps:
            end = tfmot_end_step(begin, end, frequency)
        return begin, end, frequency

    def identity(self, steps_per_epoch: int) -> dict:
        begin, end, frequency = self.ramp(steps_per_epoch)
        identity = {"method": self.method, "target_sparsity": self.target_sparsity, "epochs": self.epochs,
                    "criterion": self.criterion, "begin": begin, "end": end, "frequency": frequency,
                    "str_init": self.str_init, "str_weight_decay": self.str_weight_decay}
        if self.structure != structures.UNSTRUCTURED:  # the default keeps the identities written before structures
            identity["structure"] = self.structure
        return identity


def budget(method: str, target_sparsity: float, epochs: int, *, criterion: str, begin_fraction: Optional[float],
           end_fraction: Optional[float], frequency: Optional[int], str_init: float, str_weight_decay: float,
           known: Callable[[], list] = lambda: RULES.known(), structure: str = structures.UNSTRUCTURED) -> Budget:
    """A checked :class:`Budget`, the method's defaults filled in.

    Raises:
      ValueError: an unknown method (``known()`` lists those there are), or a bad setting (named).
    """
    if method not in RULES:
        raise ValueError(f"unknown during-training method {method!r}; known: {known()}")
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    begin_default, end_default = RULES.get(method).default_fractions(int(epochs))
    begin_fraction = begin_default if begin_fraction is None else begin_fraction
    end_fraction = end_default if end_fraction is None else end_fraction
    if not 0.0 <= begin_fraction <= end_fraction <= 1.0:
        raise ValueError(f"need 0 <= begin_fraction <= end_fraction <= 1, got {begin_fraction}, {end_fraction}")
    if frequency is not None and frequency < 1:
        raise ValueError(f"frequency must be >= 1 (or None for the method's default), got {frequency}")
    if str_weight_decay < 0:
        raise ValueError(f"str_weight_decay must be >= 0, got {str_weight_decay}")
    structure = structures.name_of(structure)
    if structure != structures.UNSTRUCTURED:
        if not takes_structure(method):
            taking = [name for name in known_methods(DURING_TRAINING) if takes_structure(name)]
            raise ValueError(f"method {method!r} does not prune with tfimp's selection, so structure={structure!r} "
                             f"cannot apply to it; the methods that take a structure: {taking}")
        structures.check_target(structure, target_sparsity)
    return Budget(method, float(target_sparsity), int(epochs), criterion, float(begin_fraction), float(end_fraction),
                  frequency, float(str_init), float(str_weight_decay), structure)


def short_of_target(method: str, reached: float, target: float, rule: MethodRule,
                    calibration: Optional[str]) -> Optional[str]:
    """The warning for a run that ended farther than :data:`TARGET_TOLERANCE` from its target, or None."""
    if abs(reached - target) <= TARGET_TOLERANCE:
        return None
    if not rule.reaches_its_own_sparsity:
        advice = ""
    elif calibration:
        advice = (f" Its decay was calibrated ({calibration}) and got no closer: give the calibration "
                  "more runs, or the run more epochs")
    else:
        advice = (" STR reaches what its threshold start and decay lead to: calibrate the decay with "
                  "tfimp.baselines.calibrate_str (CLI: --config.calibrate_str=8)")
    return (f"{method} ended at sparsity {reached:.4f}, {abs(reached - target):.4f} away "
            f"from its target {target}.{advice}")


def bisect_str_decay(run_rows: Callable[[float], list], target_sparsity: float, *, low: float, high: float,
                     tolerance: float, max_runs: int, verbose: int = 1) -> tuple[float, float]:
    """STR's calibration search: the decay ``d`` in ``[low, high]`` whose run reaches ``target_sparsity``.

    Bisects on a log scale (the reached sparsity grows with the decay);
    ``run_rows(d)`` runs STR with decay ``d`` and returns its rows, whose last
    ``sparsity`` is what it reached (its warning that it fell short of the
    target is silenced: falling short is the search's business). Stops within ``tolerance`` or after ``max_runs`` runs; returns
    the best ``(decay, reached)``.

    Raises:
      ValueError: a bad target or bracket.
    """
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
    if not 0.0 < low < high or max_runs < 1:
        raise ValueError(f"need 0 < low < high and max_runs >= 1, got {low}, {high}, {max_runs}")
    best: Optional[tuple[float, float]] = None
    log_low, log_high = math.log(low), math.log(high)
    for run in range(max_runs):
        decay = math.exp((log_low + log_high) / 2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="str ended at sparsity")
            reached = float(run_rows(decay)[-1]["sparsity"])
        if verbose:
            print(f"[tfimp] STR calibration run {run + 1}: str_weight_decay {decay:.4g} reaches {reached:.4f} "
                  f"(target {target_sparsity:.4f})", flush=True)
        if best is None or abs(reached - target_sparsity) < abs(best[1] - target_sparsity):
            best = (decay, reached)
        if abs(reached - target_sparsity) <= tolerance:
            break
        if reached < target_sparsity:
            log_low = math.log(decay)
        else:
            log_high = math.log(decay)
    return best


class BudgetedMethod:
    """The framework-free half of each front end's ``DuringTraining``: its method, budget and final check.

    :meth:`set_budget` validates everything before any model is touched;
    :meth:`check_result` warns when the run ended away from its target.
    """

    calibration: Optional[str] = None  #: what calibrated STR's decay (e.g. "8 runs of calibrate_str"), for the warning

    def set_budget(self, method: str, target_sparsity: float, epochs: int, *, criterion: str,
                   begin_fraction: Optional[float], end_fraction: Optional[float], frequency: Optional[int],
                   str_init: float, str_weight_decay: float, known: Callable[[], list],
                   structure: str = structures.UNSTRUCTURED) -> None:
        self.budget = budget(method, target_sparsity, epochs, criterion=criterion, begin_fraction=begin_fraction,
                             end_fraction=end_fraction, frequency=frequency, str_init=str_init,
                             str_weight_decay=str_weight_decay, known=known, structure=structure)
        self.structure = self.budget.structure
        criteria.get(criterion)
        self.spec = self.budget.rule
        self.method, self.target_sparsity, self.epochs = method, self.budget.target_sparsity, self.budget.epochs
        self.criterion = criterion
        self.str_init, self.str_weight_decay = self.budget.str_init, self.budget.str_weight_decay
        self.calibration = None

    @property
    def label(self) -> str:
        return self.method

    def ramp(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(begin step, end step, steps between mask updates) for this budget."""
        return self.budget.ramp(steps_per_epoch)

    def check_result(self, final_row: dict, verbose: int) -> None:
        """Warns (and prints, when ``verbose``) if the run ended farther than :data:`TARGET_TOLERANCE` from its target."""
        message = short_of_target(self.method, float(final_row["sparsity"]), self.target_sparsity, self.spec,
                                  self.calibration)
        if message is None:
            return
        notices.warn(message)
        if verbose:
            print(f"[tfimp] warning: {message}", flush=True)
