"""The IMP and dense runners on Keras 3: ``tfimp.IMP(...).run(model, (x, y), test=...)`` for a Keras 3 model.

The same contract as the tf_keras runners (:mod:`tfimp.tf_keras.imp`): the model is
wrapped if needed, compiled with the authors' optimizer (``torch_sgd`` by
default), given the dense schedule by name, and the whole plan runs in one
``fit`` with :class:`tfimp.keras3.callbacks.IMP`. Training arrays become an
:class:`tfimp.keras3.data.EpochOrdered` (per-epoch order from the seed and
the epoch). ``tfimp.IMP`` and ``tfimp.Dense`` are these classes in a Keras 3
process.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import keras

from tfimp.core import results as _results
from tfimp.core import schedules as _rules
from tfimp.core import workdir as _workdir
from tfimp.core.plan import Plan, bimp_plan, runner_plan
from tfimp.keras3 import callbacks as _callbacks
from tfimp.keras3 import data as _data
from tfimp.keras3 import lr as _lr
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import optimizers as _optimizers

DENSE_SCHEDULES = _rules.DENSE_SCHEDULES


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """A dense-phase schedule by name (see ``tfimp.core.schedules.dense_schedule``)."""
    return _rules.dense_schedule(name, learning_rate, total_steps, warmup_steps, step_decay=_lr.StepDecay,
                                 cosine=_lr.Cosine, linear_to_zero=_lr.LinearToZero)


class _Trainer:
    """Optimizer, loss, dense schedule and data handling shared by the Keras 3 runners (see the tf_keras ones)."""

    def __init__(self, *, learning_rate: float = 0.1, dense_schedule: Union[str, _lr.Schedule] = "step",
                 warmup_epochs: int = 0, optimizer: str = "torch_sgd", momentum: float = 0.9,
                 weight_decay: float = 5e-4, nesterov: Optional[bool] = None, loss=None,
                 metrics: Sequence = ("accuracy",), batch_size: int = 128, steps_per_epoch: Optional[int] = None,
                 seed: int = 0, steps_per_execution: int = 1, jit_compile: Union[bool, str] = "auto",
                 chance_guard: bool = True):
        if isinstance(dense_schedule, str) and dense_schedule not in DENSE_SCHEDULES:
            raise ValueError(f"unknown dense schedule {dense_schedule!r}; known: {list(DENSE_SCHEDULES)}")
        _optimizers.get(optimizer)
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.optimizer, self.learning_rate, self.dense_schedule = optimizer, float(learning_rate), dense_schedule
        self.warmup_epochs, self.momentum, self.weight_decay = int(warmup_epochs), float(momentum), float(weight_decay)
        self.nesterov, self.loss, self.metrics = nesterov, loss, list(metrics)
        self.batch_size, self.steps_per_epoch, self.seed = int(batch_size), steps_per_epoch, seed
        self.steps_per_execution, self.jit_compile = int(steps_per_execution), jit_compile
        self.chance_guard = bool(chance_guard)
        self.model: Optional[keras.Model] = None

    def _schedule(self, epochs: int, steps_per_epoch: int):
        if not isinstance(self.dense_schedule, str):
            return self.dense_schedule
        return dense_schedule(self.dense_schedule, self.learning_rate, epochs * steps_per_epoch,
                              self.warmup_epochs * steps_per_epoch)

    def _training_data(self, train):
        """(training data, steps per epoch): arrays become an EpochOrdered, a ``tfimp.data.load`` ``tf.data``
        pipeline its epoch-ordered twin (a :class:`tfimp.tfdata.pipelines.EpochOrdered`)."""
        if isinstance(train, (tuple, list)) and len(train) == 2:
            train = _data.EpochOrdered(train[0], train[1], self.batch_size, self.seed)
        elif (twin := _data.tf_data_epochs(train)) is not None:
            train = twin
        if self.steps_per_epoch:
            steps = self.steps_per_epoch
        elif hasattr(train, "steps_per_epoch"):  # either EpochOrdered: the numpy one or the tf.data one
            steps = train.steps_per_epoch
        else:
            steps = len(train) if hasattr(train, "__len__") else None
        if not steps:
            raise ValueError("the training data has unknown length; pass steps_per_epoch")
        return train, int(steps)

    def _for_fit(self, train, first_epoch: int, end_epoch: int, steps: int):
        """(data, steps_per_epoch) to give ``fit`` for epochs ``first_epoch .. end_epoch - 1``: epoch-ordered
        data starts at that epoch's batches, so a resumed run sees what the uninterrupted one saw."""
        if _data.tf_data_epochs(train) is not None:
            return train.epochs(first_epoch, end_epoch), steps
        if isinstance(train, _data.EpochOrdered):
            train.epoch = first_epoch
        return train, self.steps_per_epoch

    def _resume_and_fit(self, model: keras.Model, progress, train, steps: int, epochs: int, validation, *,
                        callbacks: Sequence, verbose: int, finished_message: Callable[[list], str]) -> list[dict]:
        """Restores ``progress`` (an IMP or DenseRun callback holding the workdir) into ``model``, returns a
        finished run's rows, or fits from the restored epoch; the lock goes however ``fit`` ends."""
        try:
            initial_epoch = progress.restore(model)
        except BaseException:
            progress.release()
            raise
        if progress.finished:
            progress.release()
            if verbose:
                print(finished_message(progress.rows), flush=True)
            return list(progress.rows)
        fit_data, fit_steps = self._for_fit(train, initial_epoch, epochs, steps)  # the batches the run saw from here
        try:
            model.fit(fit_data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=fit_steps,
                      validation_data=self._validation(validation), callbacks=list(callbacks), verbose=verbose,
                      shuffle=False)
        finally:
            progress.release()
        return list(progress.rows)

    @staticmethod
    def _one_pass(train):
        """One finite pass over the training data (BatchNorm re-estimation)."""
        return train.epoch(0) if _data.tf_data_epochs(train) is not None else train

    def _compile(self, model: keras.Model, learning_rate) -> None:
        model.compile(
            optimizer=_optimizers.make(self.optimizer, learning_rate, momentum=self.momentum, nesterov=self.nesterov,
                                       weight_decay=self.weight_decay),
            loss=self.loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=self.metrics, steps_per_execution=self.steps_per_execution, jit_compile=self.jit_compile)

    def identity(self, **extra) -> dict:
        """What defines a run of this runner, for the workdir (see :mod:`tfimp.core.workdir`)."""
        settings = {name: _workdir.describe(getattr(self, name)) for name in (
            "optimizer", "learning_rate", "dense_schedule", "warmup_epochs", "momentum", "weight_decay", "nesterov",
            "loss", "metrics", "batch_size", "steps_per_epoch", "seed", "jit_compile")}
        return {"runner": type(self).__name__, "backend": keras.backend.backend(), **settings, **extra}

    @staticmethod
    def _validation(validation):
        return tuple(validation) if isinstance(validation, list) else validation


class IMP(_Trainer):
    """Prune-retrain with one call on Keras 3 (the arguments of the tf_keras ``tfimp.IMP``).

    Example:
      >>> imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
      >>> rows = imp.run(model, (x_train, y_train), test=(x_test, y_test))
      >>> imp.model    # the trained, wrapped model
    """

    _SETTINGS = ("learning_rate", "dense_schedule", "warmup_epochs", "optimizer", "momentum", "weight_decay",
                 "nesterov", "loss", "metrics", "batch_size", "steps_per_epoch", "seed", "steps_per_execution",
                 "jit_compile", "chance_guard")

    def __init__(self, plan: Optional[Plan] = None, **kwargs):
        plan, settings = runner_plan(plan, kwargs, self._SETTINGS)
        super().__init__(**settings)
        self.plan = plan
        self.callback: Optional[_callbacks.IMP] = None

    @classmethod
    def bimp(cls, target_sparsity: float, cycles: int, *, total_epochs: int, dense_epochs: int,
             criterion: str = "global", **settings) -> "IMP":
        """BIMP with the linear-to-zero dense schedule and ALLR retraining."""
        plan, settings = bimp_plan(target_sparsity, cycles, total_epochs, dense_epochs, criterion, settings)
        return cls(plan, **settings)

    def run(self, model: keras.Model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = (),
            cycle_end_hooks: Sequence = (), identity: Optional[dict] = None) -> list[dict]:
        """Runs the plan on ``model`` (wrapped unless it is already); returns the rows, one per cycle.

        With ``workdir``, rerunning the same call resumes where the last run
        stopped (training arrays and :class:`tfimp.keras3.data.EpochOrdered`
        data replay exactly); a finished run returns its rows without
        training; a workdir holding another run is refused.
        """
        _masks.check_keras3_model(model)
        train, steps = self._training_data(train)
        if not _masks.wrappers(model):
            model = _masks.wrap(model, verbose=verbose)
        self._compile(model, self.learning_rate)
        self.model = model
        self.callback = _callbacks.IMP(
            self.plan, schedule=self._schedule(self.plan.reference_epochs, steps), steps_per_epoch=steps,
            test_data=test, recalibration_data=self._one_pass(train) if self.plan.recalibrate_bn else None,
            workdir=workdir,
            overwrite=overwrite, verbose=verbose, cycle_end_hooks=cycle_end_hooks,
            identity=self.identity(steps_per_epoch=steps, user=identity or {}), chance_guard=self.chance_guard)
        return self._resume_and_fit(
            model, self.callback, train, steps, self.plan.total_epochs, validation,
            callbacks=[self.callback, *callbacks], verbose=verbose,
            finished_message=lambda rows: f"[tfimp] {workdir!r} holds this finished run; its {len(rows)} rows are "
                                         "returned without training")


class Dense(_Trainer):
    """Dense training for ``epochs`` (the reference every method is compared with), on Keras 3."""

    def __init__(self, epochs: int, **settings):
        super().__init__(**settings)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.epochs = int(epochs)

    def run(self, model: keras.Model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = (),
            identity: Optional[dict] = None) -> list[dict]:
        """Trains ``model``; returns one row (cycle 0).

        With ``workdir``, every epoch is checkpointed and rerunning the same
        call resumes (arrays and epoch-ordered data replay exactly); a
        finished run returns its row without training; the run is written as
        ``cycle_0/`` and ``results.json``, as an IMP run's dense phase is.
        """
        _masks.check_keras3_model(model)
        train, steps = self._training_data(train)
        schedule = self._schedule(self.epochs, steps)
        self._compile(model, schedule)
        self.model = model
        progress = _callbacks.DenseRun(
            self.epochs, steps, initial_lr=float(_lr.tabulate(schedule, self.epochs * steps).max()), test_data=test,
            workdir=workdir, overwrite=overwrite, verbose=verbose,
            identity=self.identity(epochs=self.epochs, steps_per_epoch=steps, user=identity or {}))
        guard = [_callbacks.ChanceGuard()] if self.chance_guard else []  # first: a failed epoch is not saved
        rows = self._resume_and_fit(
            model, progress, train, steps, self.epochs, validation, callbacks=[*guard, progress, *callbacks],
            verbose=verbose,
            finished_message=lambda rows: f"[tfimp] {workdir!r} holds this finished dense run; its row is returned "
                                         "without training")
        if verbose and not progress.finished:
            print("[tfimp] dense finished:\n" + _results.format_table(rows), flush=True)
        return rows
