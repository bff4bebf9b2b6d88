"""The runners, for users who do not want to write the ``fit`` call: written once, for both front ends.

``tfimp.IMP(...).run(model, train, validation, test, workdir=...)`` wraps the
model if needed, compiles it with SGD as PyTorch defines it (momentum,
Nesterov when weight decay is used, coupled weight decay on every variable:
see ``tfimp.optimizers``), builds the dense learning-rate schedule, and runs
the whole plan through one ``model.fit`` with the IMP callback
(:class:`tfimp.core.driver.IMPDriver`). ``tfimp.Dense`` and
``tfimp.DuringTraining`` run their budget the same way with their own run
callbacks. Rerunning the same call with the same workdir resumes; a finished
run returns its rows without training.

:class:`Runner` holds the settings and the order of the work; a front end's
runner base class supplies the framework's part through the hooks below
(``_check_model``, ``_data``, ``_for_fit``, ``_wrap``, ``_compile``, ...).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Sequence, Union

from tfimp.core import during_training as _during
from tfimp.core.optimizers import OptimizerRegistry
from tfimp.core import results as _results
from tfimp.core import schedules as _rules
from tfimp.core import workdir as _workdir
from tfimp.core.plan import Plan, bimp_plan, runner_plan

DENSE_SCHEDULES = _rules.DENSE_SCHEDULES

#: The keyword settings every runner takes (see :class:`Runner`).
SETTINGS = ("learning_rate", "dense_schedule", "warmup_epochs", "optimizer", "momentum", "weight_decay", "nesterov",
            "loss", "metrics", "batch_size", "steps_per_epoch", "seed", "steps_per_execution", "jit_compile",
            "chance_guard")
#: The settings that define a run (``identity.json``); ``steps_per_execution`` and ``chance_guard`` do not.
_IDENTITY_SETTINGS = ("optimizer", "learning_rate", "dense_schedule", "warmup_epochs", "momentum", "weight_decay",
                      "nesterov", "loss", "metrics", "batch_size", "steps_per_epoch", "seed", "jit_compile")


class Runner:
    """Optimizer, loss, dense schedule and data settings, and the one ``run`` of every runner.

    Args:
      learning_rate: eta_max of the dense schedule.
      dense_schedule: ``step``, ``cosine``, ``linear``, ``constant`` or a Keras
        schedule in steps (then ``learning_rate`` is unused).
      warmup_epochs: linear warm-up of the named dense schedules.
      optimizer: ``torch_sgd`` (default: ``torch.optim.SGD``'s update, coupled
        L2 decay on every variable through the momentum buffer, as in the
        authors' runs) or ``keras_sgd_decoupled`` (Keras' SGD, decay outside
        the buffer); see ``tfimp.optimizers``.
      momentum: SGD's momentum.
      weight_decay: SGD's weight decay.
      nesterov: Nesterov momentum; defaults to ``weight_decay > 0`` as in the paper's code.
      loss: compile argument (default: sparse categorical cross-entropy on logits).
      metrics: compile argument (default: accuracy).
      batch_size: for data given as arrays.
      steps_per_epoch: for data of unknown length.
      seed: the shuffling seed of data given as arrays.
      steps_per_execution: training steps per call of the compiled function.
      jit_compile: compile the training step with XLA (the front end's Keras
        default when not given).
      chance_guard: stop a run whose training loss stays at ln(classes) for a
        whole epoch (:class:`tfimp.core.guards.ChanceLevelError`); on by default.
    """

    #: how the runner names itself in messages and results.json ("imp", "dense", "gmp", ...).
    label: str = ""
    #: the front end's default for ``jit_compile``.
    _DEFAULT_JIT: Any = False
    #: the front end's optimizers by name (``tfimp.optimizers``).
    _optimizers: OptimizerRegistry

    def __init__(self, *, learning_rate: float = 0.1, dense_schedule: Union[str, Any] = "step",
                 warmup_epochs: int = 0, optimizer: str = "torch_sgd", momentum: float = 0.9,
                 weight_decay: float = 5e-4, nesterov: Optional[bool] = None, loss=None,
                 metrics: Sequence = ("accuracy",), batch_size: int = 128, steps_per_epoch: Optional[int] = None,
                 seed: int = 0, steps_per_execution: int = 1, jit_compile: Any = None, chance_guard: bool = True):
        if isinstance(dense_schedule, str) and dense_schedule not in DENSE_SCHEDULES:
            raise ValueError(f"unknown dense schedule {dense_schedule!r}; known: {list(DENSE_SCHEDULES)}")
        self._optimizers.get(optimizer)  # fail on a bad name now, not at compile
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.optimizer, self.learning_rate, self.dense_schedule = optimizer, float(learning_rate), dense_schedule
        self.warmup_epochs, self.momentum, self.weight_decay = int(warmup_epochs), float(momentum), float(weight_decay)
        self.nesterov = nesterov  # None: the optimizer factory decides (on with weight decay and momentum)
        self.loss, self.metrics = loss, list(metrics)
        self.batch_size, self.steps_per_epoch, self.seed = int(batch_size), steps_per_epoch, seed
        self.steps_per_execution = int(steps_per_execution)
        self.jit_compile = self._DEFAULT_JIT if jit_compile is None else jit_compile
        self.chance_guard = bool(chance_guard)
        self.model = None
        self.callback = None  # the run callback of the last run (rows, workdir)

    # -- what a front end supplies -----------------------------------------------------------

    def _check_model(self, model) -> None:
        """Refuses a model of the other Keras, naming it."""
        raise NotImplementedError

    def _data(self, train, validation, test) -> tuple:
        """(training data, validation, test, steps per epoch): arrays become epoch-ordered data that a resumed
        run replays exactly."""
        raise NotImplementedError

    def _for_fit(self, train, first_epoch: int, end_epoch: int, steps: int) -> tuple:
        """(data, steps_per_epoch) to give ``fit`` for epochs ``first_epoch .. end_epoch - 1``."""
        raise NotImplementedError

    def _one_pass(self, train):
        """One finite pass over the training data (BatchNorm re-estimation, building)."""
        raise NotImplementedError

    def _dense_schedule(self, name: str, learning_rate: float, total_steps: int, warmup_steps: int):
        raise NotImplementedError

    def _tabulate(self, schedule, steps: int):
        raise NotImplementedError

    def _default_loss(self):
        """Sparse categorical cross-entropy on logits, in the front end's Keras."""
        raise NotImplementedError

    def _compile(self, model, learning_rate) -> None:
        with self._scope(model):
            model.compile(optimizer=self._optimizers.make(self.optimizer, learning_rate, momentum=self.momentum,
                                                          nesterov=self.nesterov, weight_decay=self.weight_decay),
                          loss=self.loss or self._default_loss(), metrics=self.metrics,
                          steps_per_execution=self.steps_per_execution, jit_compile=self.jit_compile)

    def _scope(self, model):
        """The context the model's variables and callbacks are made in (a distribution strategy's scope)."""
        return contextlib.nullcontext()

    @staticmethod
    def _fresh_session(seed: int) -> None:
        """Clears the framework's global state and seeds it, before each run of a search."""
        raise NotImplementedError

    def _fit(self, model, data, *, epochs: int, initial_epoch: int, steps_per_epoch: Optional[int], validation,
             callbacks: list, verbose: int) -> None:
        model.fit(data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=validation, callbacks=callbacks, verbose=verbose)

    def _chance_guard_callback(self):
        raise NotImplementedError

    def _guards(self) -> list:
        """Callbacks that stop a failed epoch before the run callback saves it."""
        return []

    def _identity_extra(self) -> dict:
        return {}

    # -- what a runner supplies ----------------------------------------------------------------

    def _prepare(self, model, train, steps: int, verbose: int):
        """The model to train (wrapped and built where the runner needs masks)."""
        return model

    def _compile_rate(self, steps: int):
        """The learning rate the model is compiled with."""
        raise NotImplementedError

    def _progress(self, steps: int, train, test, workdir: Optional[str], overwrite: bool, verbose: int,
                  cycle_end_hooks: Sequence, identity: dict):
        """The run callback (an :mod:`tfimp.core.driver` one) that holds the workdir and makes the rows."""
        raise NotImplementedError

    def _callbacks(self, steps: int) -> list:
        """The runner's own callbacks, before the run callback."""
        return []

    def _epochs(self) -> int:
        return self.epochs

    def _after_fit(self, model, rows: list[dict], verbose: int, cycle_end_hooks: Sequence, finished: bool) -> None:
        """What follows a run (a one-fit run's hooks, table and checks)."""

    # -- the run ----------------------------------------------------------------------------------

    def _schedule(self, epochs: int, steps_per_epoch: int):
        if not isinstance(self.dense_schedule, str):
            return self.dense_schedule
        return self._dense_schedule(self.dense_schedule, self.learning_rate, epochs * steps_per_epoch,
                                    self.warmup_epochs * steps_per_epoch)

    def identity(self, **extra) -> dict:
        """What defines a run of this runner, for the workdir (see :mod:`tfimp.core.workdir`)."""
        settings = {name: _workdir.describe(getattr(self, name)) for name in _IDENTITY_SETTINGS}
        return {"runner": type(self).__name__, **self._identity_extra(), **settings, **extra}

    def run(self, model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1, callbacks: Sequence = (), cycle_end_hooks: Sequence = (),
            identity: Optional[dict] = None) -> list[dict]:
        """Trains (and prunes) ``model``; returns the results rows (see :mod:`tfimp.core.results`).

        The trained, wrapped model is ``self.model`` afterwards.

        Args:
          model: a model of this process's Keras (IMP wraps it unless it is wrapped already).
          train: a batched dataset, epoch-ordered data (``tfimp.data``) or an
            ``(x, y)`` tuple of arrays (replayed exactly on resume).
          validation: a dataset or an ``(x, y)`` tuple (optional).
          test: a dataset or an ``(x, y)`` tuple (optional).
          workdir: checkpoint every epoch there and resume from it; a finished
            run's rows come back without training; a workdir holding another
            run is refused. Each finished cycle is written as ``cycle_N/``
            (``tfimp.load_cycle``).
          overwrite: remove whatever run ``workdir`` holds first.
          verbose: 0 silent, 1 progress and tables.
          callbacks: more Keras callbacks (after tfimp's own: they see the
            ``sparsity`` and ``learning_rate`` epoch logs).
          cycle_end_hooks: ``hook(model, row)`` after each cycle's row (a
            one-fit run: once, for the final model).
          identity: more of what defines the run (the CLI passes its config).
        """
        self._check_model(model)
        train, validation, test, steps = self._data(train, validation, test)
        with _workdir.Locked(workdir, verbose):
            model = self._prepare(model, train, steps, verbose)
            self._compile(model, self._compile_rate(steps))
            self.model = model
            with self._scope(model):  # the callback tells the chief from the strategy
                progress = self.callback = self._progress(
                    steps, train, test, workdir, overwrite, verbose, cycle_end_hooks,
                    self.identity(steps_per_epoch=steps, user=identity or {}))
            try:
                initial_epoch = progress.restore(model)
                if progress.finished:
                    if verbose:
                        print(f"[tfimp] {workdir!r} holds this finished run ({self.label}); its rows are returned "
                              f"without training:\n{_results.format_table(list(progress.rows))}", flush=True)
                else:
                    data, fit_steps = self._for_fit(train, initial_epoch, self._epochs(), steps)
                    self._fit(model, data, epochs=self._epochs(), initial_epoch=initial_epoch,
                              steps_per_epoch=self.steps_per_epoch or fit_steps, validation=validation,
                              callbacks=[*self._guards(), *self._callbacks(steps), progress, *callbacks], verbose=verbose)
            finally:
                progress.release()
        rows = list(progress.rows)
        self._after_fit(model, rows, verbose, cycle_end_hooks, finished=progress.finished)
        return rows


class OneFitRunner(Runner):
    """A runner whose whole budget is one ``fit`` with one row at the end or one per epoch (dense, the baselines).

    Its hooks run once, for the final model; the final table is printed and
    :meth:`_check_result` may warn.
    """

    epochs: int

    def _compile_rate(self, steps: int):
        return self._schedule(self.epochs, steps)

    def _guards(self) -> list:
        return [self._chance_guard_callback()] if self.chance_guard else []  # the IMP callback guards itself

    def _after_fit(self, model, rows, verbose, cycle_end_hooks, finished):
        if finished:
            return
        for hook in cycle_end_hooks:  # cycle_N/ is written by now
            hook(model, rows[-1])
        if verbose:
            print(f"[tfimp] {self.label} finished:\n" + _results.format_table(rows), flush=True)
        self._check_result(rows[-1], verbose)

    def _check_result(self, final_row: dict, verbose: int) -> None:
        """Says so when the run ended short of what it was asked for (nothing by default)."""


class IMPRunner(Runner):
    """Prune-retrain with one call.

    Example:
      >>> imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
      >>> rows = imp.run(model, (x_train, y_train), test=(x_test, y_test), workdir="runs/imp")
      >>> imp.model    # the trained, wrapped model

    Args:
      plan: a :class:`tfimp.Plan`; or give its fields as keyword arguments.
      **kwargs: optimizer, schedule and data settings (see :class:`Runner`).
    """

    label = "IMP"

    def __init__(self, plan: Optional[Plan] = None, **kwargs):
        plan, settings = runner_plan(plan, kwargs, SETTINGS)
        super().__init__(**settings)
        self.plan = plan

    @classmethod
    def bimp(cls, target_sparsity: float, cycles: int, *, total_epochs: int, dense_epochs: int,
             criterion: str = "global", **settings) -> "IMPRunner":
        """BIMP with the linear-to-zero dense schedule and ALLR retraining."""
        plan, settings = bimp_plan(target_sparsity, cycles, total_epochs, dense_epochs, criterion, settings)
        return cls(plan, **settings)

    def _epochs(self) -> int:
        return self.plan.total_epochs

    def _compile_rate(self, steps: int):
        return self.learning_rate  # the callback takes the rate over

    def _imp_callback(self, plan: Plan, **arguments):
        raise NotImplementedError

    def _progress(self, steps, train, test, workdir, overwrite, verbose, cycle_end_hooks, identity):
        return self._imp_callback(
            self.plan, schedule=self._schedule(self.plan.reference_epochs, steps), steps_per_epoch=steps,
            test_data=test, recalibration_data=self._one_pass(train) if self.plan.recalibrate_bn else None,
            workdir=workdir, overwrite=overwrite, verbose=verbose, cycle_end_hooks=cycle_end_hooks,
            identity=identity, chance_guard=self.chance_guard)


class DenseRunner(OneFitRunner):
    """Dense training for ``epochs`` (the reference every method is compared with), with IMP's rows and files.

    ``run`` returns one row (cycle 0, ``initial_lr`` the schedule's peak as
    in an IMP run's dense row) and writes ``cycle_0/`` and ``results.json``.
    """

    label = "dense"

    def __init__(self, epochs: int, **settings):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        super().__init__(**settings)
        self.epochs = int(epochs)

    def _dense_run_callback(self, epochs: int, steps: int, **arguments):
        raise NotImplementedError

    def _progress(self, steps, train, test, workdir, overwrite, verbose, cycle_end_hooks, identity):
        peak = float(self._tabulate(self._schedule(self.epochs, steps), self.epochs * steps).max())
        return self._dense_run_callback(self.epochs, steps, initial_lr=peak, test_data=test, workdir=workdir,
                                        overwrite=overwrite, verbose=verbose, identity=identity)


class DuringTrainingRunner(_during.BudgetedMethod, OneFitRunner):
    """Runs one pruning-during-training method of :mod:`tfimp.core.during_training` for a budget of ``epochs``.

    Example:
      >>> rows = tfimp.DuringTraining("gmp", 0.9, epochs=10).run(model, (x, y), test=(xt, yt))

    Args:
      method: a registered method (``gmp``, ``tfmot_gmp``, ``dpf``, ``str``, ...).
      target_sparsity: S (STR, CS and DST report what they reach instead; ``calibrate`` aims them at S).
      epochs: the whole budget.
      criterion: for the methods that select by a criterion (``gmp``, ``dpf``).
      begin_fraction: where the ramp begins, as a fraction of the budget.
      end_fraction: where the ramp ends, as a fraction of the budget.
        Defaults: GMP 0.1 to 0.75 (Zhu & Gupta); DPF from 0 to one epoch
        before the end, its sparsity raised at epoch ends, as in the authors'
        code (which never freezes DPF's mask).
      frequency: steps between mask updates. Defaults: DPF 16 (its paper);
        GMP :func:`tfimp.core.during_training.auto_frequency` of the ramp.
      str_init: initial value of STR's threshold parameters (threshold =
        sigmoid(str_init)); more negative means less sparsity.
      str_weight_decay: extra L2 on STR's threshold parameters, on top of
        the optimizer's weight decay; more means more sparsity over time.
      cs_init: CS's score start ``s_init`` (default 0: every gate at 1/2, the kernel unchanged).
      cs_lambda: CS's penalty ``lambda * sum(sigmoid(beta * s))``; more means more sparsity.
      cs_beta_final: CS's temperature at the end of the run (it rises as ``beta_final ** (t / T)``).
      dst_alpha: DST's penalty ``alpha * sum(exp(-t))`` on its thresholds; more means more sparsity.
        Each of the four defaults to :data:`tfimp.core.during_training.HYPERPARAMETERS` and is refused for
        another method.
      structure: which weights are pruned together, for the methods that
        prune with tfimp's selection (``gmp``, ``dpf``, ``dnw``, ``lc``,
        ``gsm``): ``"unstructured"`` (default), ``"N:M"`` (the target must be
        ``1 - N/M``; the ramp's levels prune ``round(level * M)`` of every
        group) or ``"block:RxC"`` (:mod:`tfimp.core.structures`).
      **settings: optimizer and data settings, as for :class:`IMPRunner`.

    ``run`` returns one row per epoch; the final model is written as
    ``cycle_E/`` (E = the last epoch).

    Raises:
      ValueError: an unknown method or a bad setting (named); ``steps_per_execution`` above 1 for a method
        that prunes between steps.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, *, criterion: str = "global",
                 begin_fraction: Optional[float] = None, end_fraction: Optional[float] = None,
                 frequency: Optional[int] = None, str_init: float = -5.0, str_weight_decay: float = 0.0,
                 cs_init: Optional[float] = None, cs_lambda: Optional[float] = None,
                 cs_beta_final: Optional[float] = None, dst_alpha: Optional[float] = None,
                 structure: str = "unstructured", **settings):
        self.set_budget(method, target_sparsity, epochs, criterion=criterion, begin_fraction=begin_fraction,
                        end_fraction=end_fraction, frequency=frequency, str_init=str_init,
                        str_weight_decay=str_weight_decay, known=self._known_methods,
                        hyperparameters=dict(cs_init=cs_init, cs_lambda=cs_lambda, cs_beta_final=cs_beta_final,
                                             dst_alpha=dst_alpha), structure=structure)
        super().__init__(**settings)
        self.begin_fraction, self.end_fraction = self.budget.begin_fraction, self.budget.end_fraction
        self.frequency = frequency
        if self.spec.pruning is not None and self.steps_per_execution > 1:
            raise ValueError(f"{method} prunes between training steps, which steps_per_execution="
                             f"{self.steps_per_execution} would skip; use steps_per_execution=1")

    @staticmethod
    def _known_methods() -> list[str]:
        return _during.known_methods(_during.DURING_TRAINING)

    @classmethod
    def calibrate(cls, method: str, build_model: Callable[[], Any], train, target_sparsity: float, epochs: int, *,
                  low: Optional[float] = None, high: Optional[float] = None, tolerance: float = 0.01,
                  max_runs: int = 8, seed: int = 0, verbose: int = 1, history: Optional[list] = None,
                  **settings) -> tuple[float, float]:
        """Finds the hyper-parameter of STR, CS or DST whose run reaches ``target_sparsity``, by bisection on runs.

        These methods reach the sparsity their hyper-parameters lead to; their
        authors tune them per target. The search moves one of them
        (:data:`tfimp.core.during_training.CALIBRATION`: STR's decay on its
        thresholds, started nearly at zero; CS's ``cs_lambda``; DST's
        ``dst_alpha``) on a log scale in ``[low, high]`` (default: the
        method's bracket), the reached sparsity growing with it, and stops
        when a run ends within ``tolerance`` of the target or after
        ``max_runs`` runs. Use the budget of the real run: the parameters move
        during all of it.

        Example:
          >>> value, reached = tfimp.baselines.calibrate("cs", build, (x, y), 0.9, epochs=8)
          >>> tfimp.DuringTraining("cs", 0.9, 8, cs_lambda=value).run(build(), (x, y))

        Args:
          method: ``"str"``, ``"cs"`` or ``"dst"``.
          build_model: returns a fresh, unwrapped model (called once per run).
          train: the training data, as for :meth:`run`.
          target_sparsity: the sparsity to aim at, in (0, 1).
          epochs: the budget of each calibration run.
          low: the bracket's lower end (> 0; default: the method's).
          high: the bracket's upper end.
          tolerance: stop when the reached sparsity is this close to the target.
          max_runs: at most this many runs.
          seed: the random seed of every run.
          verbose: 1 prints one line per run.
          history: a list each run is appended to (``{hyper-parameter: value, "reached_sparsity": ...}``).
          **settings: the runner's other arguments (the method's other hyper-parameters, optimizer and data
            settings).

        Returns:
          ``(value, reached sparsity)`` of the run that came closest.

        Raises:
          ValueError: a method with nothing to calibrate, a bad target or bracket.
        """
        fixed = {name: settings.pop(name) for name in list(settings) if name in _during.METHOD_ARGUMENTS}

        def run_rows(**hyperparameters) -> list:
            cls._fresh_session(seed)
            return cls(method, target_sparsity, epochs, seed=seed, **hyperparameters,
                       **settings).run(build_model(), train, verbose=0)

        return _during.calibrate(method, run_rows, target_sparsity, low=low, high=high, tolerance=tolerance,
                                 max_runs=max_runs, fixed=fixed, verbose=verbose, history=history)

    @classmethod
    def calibrate_str(cls, build_model: Callable[[], Any], train, target_sparsity: float, epochs: int, *,
                      str_init: float = _during.STR_DENSE_START, low: float = 1e-3, high: float = 1.0,
                      tolerance: float = 0.01, max_runs: int = 8, seed: int = 0, verbose: int = 1,
                      **settings) -> tuple[float, float]:
        """STR's calibration, :meth:`calibrate` of ``"str"`` (``str_weight_decay`` bisected in ``[low, high]``,
        the thresholds starting at ``str_init``); returns ``(str_weight_decay, reached)``."""
        return cls.calibrate("str", build_model, train, target_sparsity, epochs, low=low, high=high,
                             tolerance=tolerance, max_runs=max_runs, seed=seed, verbose=verbose, str_init=str_init,
                             **settings)

    def _run_callback(self, method: str, target_sparsity: float, epochs: int, steps: int, **arguments):
        raise NotImplementedError

    def _progress(self, steps, train, test, workdir, overwrite, verbose, cycle_end_hooks, identity):
        return self._run_callback(
            self.method, self.target_sparsity, self.epochs, steps,
            criterion=(self.spec.fixed_criterion or self.criterion) if self.spec.uses_criterion else None,
            structure=self.structure, test_data=test, workdir=workdir, overwrite=overwrite, verbose=verbose,
            identity={**identity, **self.budget.identity(steps)})

    def _check_result(self, final_row: dict, verbose: int) -> None:
        self.check_result(final_row, verbose)
