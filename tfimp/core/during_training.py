"""The pruning-during-training baselines without a framework: ramps, method rules, the calibration search.

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
  step to the target when training ends;
* ``cs`` — continuous sparsification (Savarese et al. 2020,
  arXiv:1912.04427): one learnable score per weight gating it through a
  sigmoid whose temperature rises over the run, a penalty on the gates; the
  weights whose score ends above 0 are kept;
* ``dst`` — dynamic sparse training (Liu et al. 2020, arXiv:2005.06870):
  one learnable threshold per output unit, a step mask with a surrogate
  gradient, a penalty pulling the thresholds up, a layer's thresholds reset
  when it keeps at most 1% of its weights.

STR, CS and DST reach the sparsity their hyper-parameters lead to
(:data:`HYPERPARAMETERS`; :data:`CALIBRATION` names the one a calibration
search moves to hit a target).

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
DURING_TRAINING = ("gmp", "tfmot_gmp", "dpf", "str", "dnw", "lc", "gsm", "cs", "dst")
RULES.register("gmp", MethodRule(_zhu_gupta_fractions, None, "ramp"))
RULES.register("tfmot_gmp", MethodRule(_zhu_gupta_fractions, None, "ramp", uses_criterion=False,
                                       fixed_criterion="uniform", tfmot_steps=True))
RULES.register("dpf", MethodRule(_dpf_fractions, 16, "dpf", reparametrisation="dpf", level_every_epoch=True))
RULES.register("str", MethodRule(_zhu_gupta_fractions, None, None, reparametrisation="str", uses_criterion=False,
                                 reaches_its_own_sparsity=True))
RULES.register("dnw", MethodRule(_from_the_start, 1, "dpf", reparametrisation="dpf", fixed_criterion="global"))
RULES.register("lc", MethodRule(_at_the_end, None, "ramp", fixed_criterion="global", gradient_rule="lc"))
RULES.register("gsm", MethodRule(_at_the_end, None, "ramp", fixed_criterion="global", gradient_rule="gsm"))
RULES.register("cs", MethodRule(_zhu_gupta_fractions, None, None, reparametrisation="cs", uses_criterion=False,
                                reaches_its_own_sparsity=True))
RULES.register("dst", MethodRule(_zhu_gupta_fractions, None, None, reparametrisation="dst", uses_criterion=False,
                                 reaches_its_own_sparsity=True))

#: ``method -> {hyper-parameter: default}`` for the methods with hyper-parameters beyond the ramp (STR's two are
#: the runner's ``str_init`` and ``str_weight_decay``). The paper's authors keep no per-dataset values in their code
#: (they come from sweeps): ``cs_init`` 0 and ``cs_beta_final`` 200 are their code's CS defaults; the penalties
#: ``cs_lambda`` and ``dst_alpha`` are calibrated, not theirs: the values with which CS and DST reach about 90% on the
#: fidelity protocol (a 784-300-100-10 MLP, 10k Fashion-MNIST images, 5 epochs). The sparsity they reach depends on
#: the model and budget: calibrate the penalty for a target (:data:`CALIBRATION`).
HYPERPARAMETERS: dict[str, dict[str, float]] = {
    "cs": {"cs_init": 0.0, "cs_lambda": 5e-6, "cs_beta_final": 200.0},
    "dst": {"dst_alpha": 1.5e-3},
}
#: Each hyper-parameter's allowed range, checked by :func:`budget`: ``name -> (test, what is allowed)``.
HYPERPARAMETER_CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "cs_init": (math.isfinite, "a finite number"),
    "cs_lambda": (lambda v: v >= 0, ">= 0"),
    "cs_beta_final": (lambda v: v >= 1, ">= 1"),
    "dst_alpha": (lambda v: v >= 0, ">= 0"),
}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Which hyper-parameter a calibration search moves for a method that reaches its own sparsity.

    The reached sparsity grows with it; the search bisects it on a log
    scale in ``[low, high]`` (:func:`bisect_hyperparameter`).
    """

    hyperparameter: str
    low: float
    high: float
    settings: dict = dataclasses.field(default_factory=dict)  #: fixed for every calibration run (STR's nearly dense start)


#: ``method -> Calibration``: STR's decay on its thresholds, CS's gate penalty, DST's threshold penalty.
CALIBRATION: Registry[Calibration] = Registry("calibrated method")
CALIBRATION.register("str", Calibration("str_weight_decay", 1e-3, 1.0, {"str_init": STR_DENSE_START}))
CALIBRATION.register("cs", Calibration("cs_lambda", 1e-10, 1e-2))
CALIBRATION.register("dst", Calibration("dst_alpha", 1e-7, 1e-1))


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
    hyperparameters: dict = dataclasses.field(default_factory=dict)  #: the method's (:data:`HYPERPARAMETERS`), filled in
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
                    "str_init": self.str_init, "str_weight_decay": self.str_weight_decay, **self.hyperparameters}
        if self.structure != structures.UNSTRUCTURED:  # the default keeps the identities written before structures
            identity["structure"] = self.structure
        return identity


def method_hyperparameters(method: str, given: Optional[dict] = None) -> dict:
    """``method``'s hyper-parameters (:data:`HYPERPARAMETERS`): its defaults, overridden by ``given``'s non-None values.

    Raises:
      ValueError: a value given for a hyper-parameter ``method`` does not have, or outside its range (named).
    """
    defaults = HYPERPARAMETERS.get(method, {})
    chosen = dict(defaults)
    for name, value in (given or {}).items():
        if value is None:
            continue
        if name not in defaults:
            owners = [m for m, names in HYPERPARAMETERS.items() if name in names]
            raise ValueError(f"{name}={value!r} is a hyper-parameter of {owners or 'no method'}, not of {method!r}"
                             + (f" (its are {sorted(defaults)})" if defaults else ""))
        test, allowed = HYPERPARAMETER_CHECKS[name]
        if not test(float(value)):
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
        chosen[name] = float(value)
    return chosen


def budget(method: str, target_sparsity: float, epochs: int, *, criterion: str, begin_fraction: Optional[float],
           end_fraction: Optional[float], frequency: Optional[int], str_init: float, str_weight_decay: float,
           known: Callable[[], list] = lambda: RULES.known(), hyperparameters: Optional[dict] = None,
           structure: str = structures.UNSTRUCTURED) -> Budget:
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
                  frequency, float(str_init), float(str_weight_decay),
                  hyperparameters=method_hyperparameters(method, hyperparameters), structure=structure)


def short_of_target(method: str, reached: float, target: float, rule: MethodRule,
                    calibration: Optional[str]) -> Optional[str]:
    """The warning for a run that ended farther than :data:`TARGET_TOLERANCE` from its target, or None."""
    if abs(reached - target) <= TARGET_TOLERANCE:
        return None
    if not rule.reaches_its_own_sparsity:
        advice = ""
    elif calibration:
        advice = (f" Its {CALIBRATION.get(method).hyperparameter if method in CALIBRATION else 'setting'} was "
                  f"calibrated ({calibration}) and got no closer: give the calibration more runs, or the run more epochs")
    elif method in CALIBRATION:
        advice = (f" {method} reaches what its {CALIBRATION.get(method).hyperparameter} leads to: calibrate it with "
                  f"tfimp.baselines.calibrate (CLI: --config.calibrate=8)")
    else:
        advice = f" {method} reaches what its hyper-parameters lead to"
    return (f"{method} ended at sparsity {reached:.4f}, {abs(reached - target):.4f} away "
            f"from its target {target}.{advice}")


def bisect_hyperparameter(run_rows: Callable[[float], list], target_sparsity: float, *, low: float, high: float,
                          tolerance: float, max_runs: int, name: str = "the hyper-parameter", method: str = "",
                          verbose: int = 1, history: Optional[list] = None) -> tuple[float, float]:
    """A calibration search: the value ``v`` in ``[low, high]`` whose run reaches ``target_sparsity``.

    Bisects on a log scale (the reached sparsity grows with ``v``);
    ``run_rows(v)`` runs the method with ``v`` and returns its rows, whose last
    ``sparsity`` is what it reached (its warning that it fell short of the
    target is silenced: falling short is the search's business). Stops within
    ``tolerance`` or after ``max_runs`` runs; returns the best ``(v, reached)``.
    Each run is appended to ``history`` (when given) as ``{name: v, "reached_sparsity": reached}``.

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
        value = math.exp((log_low + log_high) / 2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\w+ ended at sparsity")
            reached = float(run_rows(value)[-1]["sparsity"])
        if history is not None:
            history.append({name: value, "reached_sparsity": reached})
        if verbose:
            print(f"[tfimp] {method} calibration run {run + 1}: {name} {value:.4g} reaches {reached:.4f} "
                  f"(target {target_sparsity:.4f})", flush=True)
        if best is None or abs(reached - target_sparsity) < abs(best[1] - target_sparsity):
            best = (value, reached)
        if abs(reached - target_sparsity) <= tolerance:
            break
        if reached < target_sparsity:
            log_low = math.log(value)
        else:
            log_high = math.log(value)
    return best


def bisect_str_decay(run_rows: Callable[[float], list], target_sparsity: float, *, low: float, high: float,
                     tolerance: float, max_runs: int, verbose: int = 1) -> tuple[float, float]:
    """STR's calibration search (:func:`bisect_hyperparameter` of ``str_weight_decay``)."""
    return bisect_hyperparameter(run_rows, target_sparsity, low=low, high=high, tolerance=tolerance,
                                 max_runs=max_runs, name="str_weight_decay", method="STR", verbose=verbose)


#: The runner arguments that are a method's hyper-parameters (the rest of a calibration's settings are the runs').
METHOD_ARGUMENTS = ("str_init", "str_weight_decay", *sorted({n for names in HYPERPARAMETERS.values() for n in names}))


def calibrate(method: str, run: Callable[..., list], target_sparsity: float, *, low: Optional[float] = None,
              high: Optional[float] = None, tolerance: float = 0.01, max_runs: int = 8, fixed: Optional[dict] = None,
              verbose: int = 1, history: Optional[list] = None) -> tuple[float, float]:
    """Calibrates ``method``'s :data:`CALIBRATION` hyper-parameter so that its run reaches ``target_sparsity``.

    ``run(**hyperparameters)`` runs the method once (a fresh model, the
    real budget) and returns its rows; it gets the calibration's settings
    (STR: its nearly dense start), overridden by ``fixed`` (the user's
    other hyper-parameters), and the value tried. Returns ``(value, reached)``.

    Raises:
      ValueError: a method with nothing to calibrate (those there are named), a bad target or bracket.
    """
    if method not in CALIBRATION:
        raise ValueError(f"{method!r} has nothing to calibrate: it ends at its target by construction; "
                         f"calibration is for {CALIBRATION.known()}")
    calibration = CALIBRATION.get(method)
    return bisect_hyperparameter(
        lambda value: run(**{**calibration.settings, **(fixed or {}), calibration.hyperparameter: value}),
        target_sparsity,
        low=calibration.low if low is None else low, high=calibration.high if high is None else high,
        tolerance=tolerance, max_runs=max_runs, name=calibration.hyperparameter, method=method, verbose=verbose,
        history=history)


class BudgetedMethod:
    """The framework-free half of each front end's ``DuringTraining``: its method, budget and final check.

    :meth:`set_budget` validates everything before any model is touched;
    :meth:`check_result` warns when the run ended away from its target.
    """

    calibration: Optional[str] = None  #: what calibrated the method (e.g. "--config.calibrate=8"), for the warning

    def set_budget(self, method: str, target_sparsity: float, epochs: int, *, criterion: str,
                   begin_fraction: Optional[float], end_fraction: Optional[float], frequency: Optional[int],
                   str_init: float, str_weight_decay: float, known: Callable[[], list],
                   hyperparameters: Optional[dict] = None, structure: str = structures.UNSTRUCTURED) -> None:
        self.budget = budget(method, target_sparsity, epochs, criterion=criterion, begin_fraction=begin_fraction,
                             end_fraction=end_fraction, frequency=frequency, str_init=str_init,
                             str_weight_decay=str_weight_decay, known=known, hyperparameters=hyperparameters,
                             structure=structure)
        self.hyperparameters = dict(self.budget.hyperparameters)
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
        """Warns (and prints, when ``verbose``) if the run ended farther than :data:`TARGET_TOLERANCE` from its target.

        A structured run's target is in its structure's unit, so its row's ``unit_sparsity`` is compared.
        """
        reached = final_row.get("unit_sparsity")
        reached = final_row["sparsity"] if reached is None else reached
        message = short_of_target(self.method, float(reached), self.target_sparsity, self.spec, self.calibration)
        if message is None:
            return
        notices.warn(message)
        if verbose:
            print(f"[tfimp] warning: {message}", flush=True)
