"""Pruning-during-training baselines, the paper's comparison set.

* ``gmp`` — gradual magnitude pruning (Zhu & Gupta 2017, arXiv:1710.01878):
  sparsity ramps as ``s(t) = S - S * (1 - (t - t0) / (t1 - t0))**3`` from
  step t0 to t1, pruning every ``frequency`` steps with any tfimp criterion
  (global by default, as the paper uses it).
* ``tfmot_gmp`` — the same ramp as tfmot's per-layer ``PolynomialDecay``,
  the comparison a Keras user would otherwise reach for.
* ``dpf`` — dynamic pruning with feedback (Lin et al. 2020,
  arXiv:2006.07253): masked forward pass, gradient applied to the dense
  weights, mask recomputed from the dense weights every 16 steps along the
  same ramp.
* ``str`` — soft threshold reparametrisation (Kusupati et al. 2020,
  arXiv:2002.03231) with one learnable threshold per layer; the sparsity it
  reaches is what it reports.

All run inside one ``model.fit`` of ``epochs`` (the whole budget), record one
row per epoch like IMP's rows, and end with exact masks and zeroed weights
(``tfimp.strip`` then gives the sparse model).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Optional

import numpy as np

from tfimp import _private
from tfimp import methods as _methods
from tfimp import results as _results
from tfimp import checkpoint as _checkpoint
from tfimp.core import criteria as _criteria
from tfimp.core import notices as _notices
from tfimp import pruning as _pruning
from tfimp import reparametrisations as _reparametrisations
from tfimp import tfmot_glue
from tfimp import wrapping as _wrapping
from tfimp.core.registry import Registry
from tfimp import workdir as _workdir
from tfimp._backend import keras
from tfimp.imp import OneFitRunner, RowCollector


def finalize_reparams(model: keras.Model) -> None:
    """Finalizes every :class:`ReparamPruneLowMagnitude` of ``model``.

    The forward pass changes (STR's soft threshold is baked into the weights),
    so evaluation and prediction functions Keras traced before are dropped:
    reused, they would apply the threshold a second time.
    """
    changed = False
    for _, wrapper in _wrapping.wrappers(model):
        if isinstance(wrapper, tfmot_glue.ReparamPruneLowMagnitude) and wrapper.reparam != "none":
            wrapper.finalize()
            changed = True
    if changed:
        _private.reset_compiled_functions(model)


def str_thresholds(model: keras.Model) -> list:
    """The learnable STR threshold variables of ``model``."""
    return [w.str_threshold for _, w in _wrapping.wrappers(model)
            if isinstance(w, tfmot_glue.ReparamPruneLowMagnitude) and w.str_threshold is not None]


def cubic_sparsity(step: int, target: float, begin: int, end: int) -> float:
    """Zhu & Gupta's ramp: 0 before ``begin``, ``target`` from ``end`` on, cubic between."""
    if step <= begin:
        return 0.0
    if step >= end:
        return float(target)
    return float(target - target * (1.0 - (step - begin) / (end - begin)) ** 3)


def auto_frequency(ramp_steps: int, updates: int = 30, most: int = 100) -> int:
    """Steps between mask updates for a ramp of ``ramp_steps``: at least ``updates`` updates, never rarer than ``most``.

    Zhu & Gupta prune every 100 steps over ramps of tens of thousands of
    steps; a short budget needs proportionally more frequent updates, or the
    ramp degenerates into a few large one-shot prunings.
    """
    return max(1, min(most, ramp_steps // updates))


class GradualPruning(keras.callbacks.Callback):
    """Prunes along the cubic ramp (GMP), or recomputes DPF's masks, inside ``fit``.

    GMP: every ``frequency`` steps between ``begin_step`` and ``end_step`` the
    masks grow (monotone) to the ramp's sparsity; at the end of training the
    model holds exactly ``target_sparsity``.

    DPF (``dpf=True``, Lin et al. 2020, as in the authors' code): the mask is
    recomputed from the *dense* weights every ``frequency`` (16) steps for the
    whole run, and whenever the ramp's level rises, at the ramp's current
    sparsity; pruned weights keep learning
    and may come back. At the end of training the mask the model was last
    trained with is kept (a final recomputation from the drifted dense weights
    would give the model a mask it never saw); if the ramp had not reached the
    target, the remaining weights are pruned by magnitude on top of it.

    Args:
      target_sparsity: S, reached at ``end_step`` and exactly at the end of training.
      begin_step, end_step: the ramp, in optimizer steps.
      frequency: steps between mask updates (Zhu & Gupta: 100; DPF: 16;
        :func:`auto_frequency` for short budgets).
      criterion: tfimp criterion for each mask update.
      dpf: DPF's dense-weight recomputation; the model must be wrapped with
        ``ReparamPruneLowMagnitude(reparam="dpf")``.
      level_every: the ramp's sparsity is updated every ``level_every`` steps
        (piecewise constant in between; the authors' DPF and GMP update it at
        epoch ends); 1 = a continuous ramp.
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int, frequency: int = 100,
                 criterion: str = "global", dpf: bool = False, level_every: int = 1):
        super().__init__()
        if not 0.0 < target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
        if frequency < 1 or level_every < 1 or not 0 <= begin_step <= end_step:
            raise ValueError(f"need frequency >= 1, level_every >= 1 and 0 <= begin_step <= end_step, got "
                             f"{frequency}, {level_every}, {begin_step}, {end_step}")
        _criteria.get(criterion)
        self.target_sparsity = float(target_sparsity)
        self.begin_step, self.end_step, self.frequency = int(begin_step), int(end_step), int(frequency)
        self.level_every = int(level_every)
        self.criterion = criterion
        self.dpf = dpf
        self._step = 0

    def level(self, step: int) -> float:
        """The ramp's sparsity at ``step`` (piecewise constant over ``level_every`` steps)."""
        return cubic_sparsity(step - step % self.level_every, self.target_sparsity, self.begin_step, self.end_step)

    def on_train_begin(self, logs=None):
        self._step = int(keras.backend.get_value(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step
        self._step += 1
        level = self.level(step)
        if self.dpf:  # the whole run, from the dense weights; also as soon as the level rises
            if level > 0 and (step % self.frequency == 0 or level != self.level(step - 1)):
                _pruning.prune(self.model, level, self.criterion, allow_revival=True, zero_pruned=False)
            return
        due = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        if self.begin_step <= step <= self.end_step and due and level > 0:
            _pruning.prune(self.model, level, self.criterion)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.params.get("epochs"):
            self._finish()  # before later callbacks measure the final model

    def on_train_end(self, logs=None):
        self._finish()

    def _finish(self) -> None:
        """Exact target at the end (idempotent)."""
        finalize_reparams(self.model)  # DPF: keep the mask it trained with, zero the rest
        if _pruning.sparsity(self.model) < self.target_sparsity:
            _pruning.prune(self.model, self.target_sparsity, self.criterion)


def current_sparsity(model: keras.Model) -> float:
    """Sparsity the forward pass sees now (STR: zeros of the soft-thresholded kernels)."""
    str_wrappers = [w for _, w in _wrapping.wrappers(model) if isinstance(w, tfmot_glue.ReparamPruneLowMagnitude)
                    and w.reparam in _reparametrisations.MASK_FROM_EFFECTIVE]
    if not str_wrappers:
        return _pruning.sparsity(model)
    zeros = total = 0
    for _, wrapper in _wrapping.wrappers(model):
        kernels = (wrapper.effective_kernels() if wrapper in str_wrappers
                   else tfmot_glue.masked_values(wrapper))
        for kernel in kernels:
            values = np.asarray(kernel)
            zeros += values.size - int(np.count_nonzero(values))
            total += values.size
    return zeros / total


class EpochRows(RowCollector):
    """One row per epoch (``cycle`` = epoch number), IMP's columns; test metrics on the last epoch.

    With a workdir the rows are written to ``results.json``/``results.csv``
    after every epoch and picked up again when a run resumes.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, test_data=None,
                 workdir: Optional[str] = None, criterion: Optional[str] = None):
        super().__init__()
        self.method, self.target_sparsity, self.epochs = method, target_sparsity, epochs
        self.test_data, self.workdir, self.criterion = test_data, workdir, criterion
        self.expected_rows = epochs
        self.rows: list[dict] = []
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:  # the workdir is claimed by now; a resumed run redoes epochs from `epoch` on
            saved = (_checkpoint.load_results(self.workdir) or []) if self.workdir else []
            self.rows = [row for row in saved if row["cycle"] <= epoch]
            self._first_epoch = False
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") or 0
        last = epoch + 1 == self.epochs
        if last:
            finalize_reparams(self.model)  # exact masks before the final measurement
        row = _results.row_from_logs(
            self.model, dict(logs or {}), self.test_data if last else None, cycle=epoch + 1,
            target=self.target_sparsity, schedule=self.method,
            initial_lr=float(keras.backend.get_value(self.model.optimizer.learning_rate)),
            epochs=1, steps=steps, wall_s=time.perf_counter() - self._start, criterion=self.criterion)
        row["sparsity"] = current_sparsity(self.model)
        self.rows.append(row)
        if self.workdir:  # every worker writes; the chief into the workdir
            _checkpoint.write_results(_workdir.write_dir(self.workdir, self.model.distribute_strategy), self.rows,
                                      {"method": self.method})


@dataclasses.dataclass(frozen=True)
class DuringTrainingMethod:
    """What makes one pruning-during-training method: its ramp's defaults, its wrapper and its callbacks.

    Attributes:
      default_fractions: ``epochs -> (begin_fraction, end_fraction)`` of the ramp when the user gives none.
      default_frequency: steps between mask updates (``None``: :func:`auto_frequency` of the ramp).
      wrapper: ``(runner, begin, end, frequency) -> wrapper factory`` for ``tfimp.wrap`` (``None``: tfimp's
        policy wrapper).
      callbacks: ``(runner, begin, end, frequency, steps_per_epoch) -> callbacks`` that prune during ``fit``.
      uses_criterion: the method prunes by ``criterion`` (its rows name it).
      reaches_its_own_sparsity: the sparsity is where the method ends up (STR), not a schedule's target.
    """

    default_fractions: Callable[[int], tuple[float, float]]
    default_frequency: Optional[int]
    wrapper: Callable[..., Optional[Callable]]
    callbacks: Callable[..., list]
    uses_criterion: bool
    reaches_its_own_sparsity: bool = False


def _zhu_gupta_fractions(epochs: int) -> tuple[float, float]:
    return 0.1, 0.75


def _reparametrised(runner: "DuringTraining", begin: int, end: int, frequency: int) -> Callable:
    return lambda layer: tfmot_glue.ReparamPruneLowMagnitude(
        layer, reparam=runner.method, str_init=runner.str_init, str_weight_decay=runner.str_weight_decay)


#: ``method name -> DuringTrainingMethod``: a new baseline is one entry (and its runner in ``tfimp.methods``).
DURING_TRAINING_METHODS: Registry[DuringTrainingMethod] = Registry("during-training method")
DURING_TRAINING_METHODS.register("gmp", DuringTrainingMethod(
    default_fractions=_zhu_gupta_fractions, default_frequency=None, wrapper=lambda runner, *ramp: None,
    callbacks=lambda runner, begin, end, frequency, steps: [
        GradualPruning(runner.target_sparsity, begin, end, frequency, runner.criterion)],
    uses_criterion=True))
DURING_TRAINING_METHODS.register("tfmot_gmp", DuringTrainingMethod(
    default_fractions=_zhu_gupta_fractions, default_frequency=None,
    wrapper=lambda runner, begin, end, frequency: tfmot_glue.tfmot_polynomial_wrapper(
        runner.target_sparsity, begin, end, frequency),
    callbacks=lambda runner, *ramp_and_steps: [tfmot_glue.tfmot_step_callback()], uses_criterion=False))
DURING_TRAINING_METHODS.register("dpf", DuringTrainingMethod(
    # From the start to one epoch before the end, the level raised at epoch ends, as in the authors' code.
    default_fractions=lambda epochs: (0.0, (epochs - 1) / epochs if epochs > 1 else 1.0), default_frequency=16,
    wrapper=_reparametrised,
    callbacks=lambda runner, begin, end, frequency, steps: [
        GradualPruning(runner.target_sparsity, begin, end, frequency, runner.criterion, dpf=True,
                       level_every=steps)],
    uses_criterion=True))
DURING_TRAINING_METHODS.register("str", DuringTrainingMethod(
    default_fractions=_zhu_gupta_fractions, default_frequency=None, wrapper=_reparametrised,
    callbacks=lambda runner, *ramp_and_steps: [], uses_criterion=False, reaches_its_own_sparsity=True))

#: The built-in during-training methods, in the CLI's order (``tfimp.methods.DURING_TRAINING``; a test keeps
#: them equal to the registry's built-in entries).
METHODS = _methods.DURING_TRAINING


def known_methods() -> list[str]:
    """Every registered during-training method: the built-in ones first, in the CLI's order."""
    return [m for m in METHODS if m in DURING_TRAINING_METHODS] + sorted(
        set(DURING_TRAINING_METHODS.known()) - set(METHODS))


class DuringTraining(OneFitRunner):
    """Runs one pruning-during-training baseline for a budget of ``epochs``.

    Example:
      >>> rows = tfimp.DuringTraining("gmp", 0.9, epochs=10).run(model, (x, y), test=(xt, yt))

    Args:
      method: ``gmp``, ``tfmot_gmp``, ``dpf`` or ``str``.
      target_sparsity: S (STR reports what it reaches instead; see
        :func:`calibrate_str_init` to aim it at S).
      epochs: the whole budget.
      criterion: for ``gmp`` and ``dpf``.
      begin_fraction, end_fraction: the ramp, as fractions of the budget.
        Defaults: GMP 0.1 to 0.75 (Zhu & Gupta); DPF from 0 to one epoch
        before the end, its sparsity raised at epoch ends, as in the authors'
        code (which never freezes DPF's mask).
      frequency: steps between mask updates. Defaults: DPF 16 (its paper);
        GMP and tfmot GMP :func:`auto_frequency` of the ramp (at least 30
        updates along it, at most every 100 steps).
      str_init: initial value of STR's threshold parameters (threshold =
        sigmoid(str_init)); more negative means less sparsity.
      str_weight_decay: extra L2 on STR's threshold parameters, on top of
        the optimizer's weight decay; more means more sparsity over time.
      **settings: optimizer and data settings, as for :class:`tfimp.IMP`.

    ``run`` returns one row per epoch; the final model is written as
    ``cycle_E/`` (E = the last epoch). It resumes through Keras'
    ``BackupAndRestore``.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, *, criterion: str = "global",
                 begin_fraction: Optional[float] = None, end_fraction: Optional[float] = None,
                 frequency: Optional[int] = None, str_init: float = -5.0, str_weight_decay: float = 0.0, **settings):
        if method not in DURING_TRAINING_METHODS:
            raise ValueError(f"unknown during-training method {method!r}; known: {known_methods()}")
        if not 0.0 < target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        spec = DURING_TRAINING_METHODS.get(method)
        begin_default, end_default = spec.default_fractions(int(epochs))
        begin_fraction = begin_default if begin_fraction is None else begin_fraction
        end_fraction = end_default if end_fraction is None else end_fraction
        if not 0.0 <= begin_fraction <= end_fraction <= 1.0:
            raise ValueError(f"need 0 <= begin_fraction <= end_fraction <= 1, got {begin_fraction}, {end_fraction}")
        if frequency is not None and frequency < 1:
            raise ValueError(f"frequency must be >= 1 (or None for the method's default), got {frequency}")
        if str_weight_decay < 0:
            raise ValueError(f"str_weight_decay must be >= 0, got {str_weight_decay}")
        _criteria.get(criterion)
        super().__init__(**settings)
        self.method, self.target_sparsity, self.epochs = method, float(target_sparsity), int(epochs)
        self.spec = spec
        self.criterion = criterion
        self.begin_fraction, self.end_fraction = begin_fraction, end_fraction
        self.frequency = frequency
        self.str_init, self.str_weight_decay = float(str_init), float(str_weight_decay)
        #: What calibrated ``str_weight_decay`` (e.g. "8 runs of calibrate_str"), for the short-of-target warning.
        self.calibration: Optional[str] = None

    def ramp(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(begin step, end step, steps between mask updates) for this budget."""
        begin = int(round(self.begin_fraction * self.epochs * steps_per_epoch))
        end = max(begin, int(round(self.end_fraction * self.epochs * steps_per_epoch)))
        if self.frequency is not None:
            return begin, end, self.frequency
        if self.spec.default_frequency is not None:
            return begin, end, self.spec.default_frequency
        return begin, end, auto_frequency(end - begin)

    def _wrapper_factory(self, begin: int, end: int, frequency: int):
        return self.spec.wrapper(self, begin, end, frequency)

    def _prepare(self, model: keras.Model, train, steps: int) -> keras.Model:
        begin, end, frequency = self.ramp(steps)
        with model.distribute_strategy.scope():
            model = _wrapping.wrap(model, wrapper=self._wrapper_factory(begin, end, frequency))
            self._build_on(model, train)
        return model

    def _run_identity(self, steps: int) -> dict:
        begin, end, frequency = self.ramp(steps)
        return {"method": self.method, "target_sparsity": self.target_sparsity, "epochs": self.epochs,
                "criterion": self.criterion, "begin": begin, "end": end, "frequency": frequency,
                "str_init": self.str_init, "str_weight_decay": self.str_weight_decay}

    def _callbacks(self, steps: int) -> list:
        return self.spec.callbacks(self, *self.ramp(steps), steps)

    def _rows_callback(self, steps: int, test, workdir: Optional[str]) -> RowCollector:
        return EpochRows(self.method, self.target_sparsity, self.epochs, test, workdir,
                         self.criterion if self.spec.uses_criterion else None)

    def _before_restore(self, model: keras.Model) -> None:
        finalize_reparams(model)  # the saved weights are the finalized model's

    def _check_result(self, final_row: dict, verbose: int) -> None:
        reached = float(final_row["sparsity"])
        if abs(reached - self.target_sparsity) <= TARGET_TOLERANCE:
            return
        if not self.spec.reaches_its_own_sparsity:
            advice = ""
        elif self.calibration:
            advice = (f" Its decay was calibrated ({self.calibration}) and got no closer: give the calibration "
                      "more runs, or the run more epochs")
        else:
            advice = (" STR reaches what its threshold start and decay lead to: calibrate the decay with "
                      "tfimp.baselines.calibrate_str (CLI: --config.calibrate_str=8)")
        message = (f"{self.method} ended at sparsity {reached:.4f}, {abs(reached - self.target_sparsity):.4f} away "
                   f"from its target {self.target_sparsity}.{advice}")
        _notices.warn(message)
        if verbose:
            print(f"[tfimp] warning: {message}", flush=True)

    @property
    def label(self) -> str:
        return self.method


#: STR's threshold parameter at the start of a calibrated run: sigmoid(-8) = 3e-4, a nearly dense start.
#: A during-training run that ends farther than this from its target sparsity warns.
TARGET_TOLERANCE = 0.01

STR_DENSE_START = -8.0


def calibrate_str(build_model: Callable[[], keras.Model], train, target_sparsity: float, epochs: int, *,
                  str_init: float = STR_DENSE_START, low: float = 1e-3, high: float = 1.0, tolerance: float = 0.01,
                  max_runs: int = 8, seed: int = 0, verbose: int = 1, **settings) -> tuple[float, float]:
    """Finds the decay on STR's thresholds whose run reaches ``target_sparsity``, by bisection on short runs.

    STR's sparsity is set by where its thresholds start and by the decay
    that pulls them up during training; its authors tune them per target.
    tfimp starts the thresholds nearly at zero (``str_init``) and bisects the
    decay ``str_weight_decay`` on a log scale in ``[low, high]``: the reached
    sparsity grows with it, and the thresholds rise while the loss gradient
    holds back each layer's own threshold, as in STR's design. (A threshold
    set high from the start instead empties the layers whose weights are
    small, a 3136x32 dense layer first, and the network is stuck at chance:
    measured in the equal-budget benchmark.) Stops when the reached sparsity
    is within ``tolerance`` of the target or after ``max_runs`` runs and
    returns the best ``(str_weight_decay, reached sparsity)``. Use the budget
    of the real run: the thresholds move during all of it.

    Example:
      >>> decay, reached = tfimp.baselines.calibrate_str(build, (x, y), 0.9, epochs=8)
      >>> tfimp.DuringTraining("str", 0.9, 8, str_init=tfimp.baselines.STR_DENSE_START,
      ...                      str_weight_decay=decay).run(build(), (x, y))

    Args:
      build_model: returns a fresh, unwrapped model (called once per run).
      train: the training data, as for :meth:`DuringTraining.run`.
      target_sparsity: the sparsity to aim at, in (0, 1).
      epochs: the budget of each calibration run.
      str_init: the thresholds' starting parameter in every run.
      low, high: the bracket of ``str_weight_decay`` (> 0).
      tolerance: stop when the reached sparsity is this close to the target.
      max_runs: at most this many runs.
      seed: the random seed of every run.
      verbose: 1 prints one line per run.
      **settings: passed to :class:`DuringTraining` (optimizer and data settings).

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
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        with warnings.catch_warnings():  # a calibration run short of the target is the bisection's business
            warnings.filterwarnings("ignore", message="str ended at sparsity")
            rows = DuringTraining("str", target_sparsity, epochs, str_init=str_init, str_weight_decay=decay,
                                  seed=seed, **settings).run(build_model(), train, verbose=0)
        reached = float(rows[-1]["sparsity"])
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
