"""The IMP driver for users who do not want to write the ``fit`` call.

``IMP(...).run(model, train, validation, test, workdir=...)`` wraps the model
if needed, compiles it with SGD as PyTorch defines it (momentum, Nesterov when
weight decay is used, coupled weight decay on every variable: see
:mod:`tfimp.optimizers`), builds the dense learning-rate schedule, and runs the
whole plan through one ``model.fit`` with :class:`tfimp.callbacks.IMP`.
Rerunning the same call with the same workdir resumes; a finished run is
not redone.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence, Union

import numpy as np

from tfimp.tf_keras import guards as _guards
from tfimp.tf_keras import distribute as _distribute
from tfimp.tf_keras import callbacks as _callbacks
from tfimp.tf_keras import results as _results
from tfimp.tf_keras import data as _data
from tfimp.tf_keras import checkpoint as _checkpoint
from tfimp.tf_keras import lr as _lr
from tfimp.tf_keras import optimizers as _optimizers
from tfimp.tf_keras import wrapping
from tfimp.core import storage as _storage
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras._backend import keras, tf
from tfimp.core import checkpoint as _core_checkpoint
from tfimp.core import notices as _notices
from tfimp.core import results as _core_results
from tfimp.core import schedules as _rules
from tfimp.core.plan import Plan, bimp_plan, runner_plan

DENSE_SCHEDULES = _rules.DENSE_SCHEDULES


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """A dense-phase schedule by name (``step``, ``cosine``, ``linear``, ``constant``; see
    ``tfimp.core.schedules.dense_schedule``)."""
    return _rules.dense_schedule(name, learning_rate, total_steps, warmup_steps, step_decay=_lr.StepDecay,
                                 cosine=_lr.Cosine, linear_to_zero=_lr.LinearToZero)


def _as_dataset(data, batch_size: int):
    """Evaluation data (validation, test) as batches, in order; training data goes through ``_datasets``."""
    if data is None or isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = tf.data.Dataset.from_tensor_slices((np.asarray(data[0]), np.asarray(data[1])))
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    raise TypeError(f"data must be a batched tf.data.Dataset or an (x, y) tuple of arrays, got {type(data).__name__}")


def _steps_per_epoch(dataset) -> Optional[int]:
    cardinality = int(tf.data.experimental.cardinality(dataset))
    return cardinality if cardinality > 0 else None


def final_weights_path(workdir: str) -> str:
    """Where runners that resume through ``BackupAndRestore`` keep the finished model's weights."""
    return _workdir.path(workdir, _workdir.FINAL_WEIGHTS)




class CheckedBackup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` whose files are checked before they are read back.

    After each backup the digests of its files go to ``files.json`` in the
    backup directory; a backup whose files no longer match (a cut or changed
    file) is dropped, with a message, and the run starts over instead of
    reading it. A backup without digests (an older tfimp) is read as it is.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir)
        self._directory = backup_dir

    def on_train_begin(self, logs=None):
        digests = os.path.join(self._directory, _workdir.CYCLE_FILES)
        if _workdir.is_chief() and _storage.exists(self._directory):
            try:
                recorded = _storage.read_json(digests)
                why = None if recorded is None else _storage.check_digests(self._directory, recorded)
            except _storage.DamagedFile as error:
                why = str(error)
            if why is not None:
                _notices.say(f"[tfimp] the backup in {self._directory} is damaged ({why}); starting the run over")
                _storage.remove(self._directory)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if _workdir.is_chief() and _storage.exists(self._directory):
            _storage.atomic_write_text(
                os.path.join(self._directory, _workdir.CYCLE_FILES),
                _core_results.to_json(_storage.file_digests(self._directory, skip=(_workdir.CYCLE_FILES,))))

    def on_train_end(self, logs=None):
        super().on_train_end(logs)  # Keras deletes its backup at the end of a finished fit: the digests go too
        if _workdir.is_chief() and set(_storage.listdir(self._directory)) <= {_workdir.CYCLE_FILES}:
            _storage.remove(self._directory)


def _say_finished(workdir: str, rows: Sequence[dict], verbose: int) -> None:
    """Says (with ``verbose``) that a finished run is not redone, with its rows."""
    if verbose:
        print(f"[tfimp] {workdir!r} holds a finished run; not redoing it:\n{_results.format_table(list(rows))}",
              flush=True)


class _Trainer:
    """Optimizer, loss, dense schedule and data handling shared by the runners.

    Args:
      learning_rate: eta_max of the dense schedule.
      dense_schedule: ``step``, ``cosine``, ``linear``, ``constant`` or a Keras
        schedule in steps (then ``learning_rate`` is unused).
      warmup_epochs: linear warm-up of the named dense schedules.
      optimizer: ``torch_sgd`` (default: ``torch.optim.SGD``'s update, coupled
        L2 decay on every variable through the momentum buffer, as in the
        authors' runs) or ``keras_sgd_decoupled`` (tf_keras' SGD, decay
        outside the buffer); see :mod:`tfimp.optimizers`.
      momentum, weight_decay, nesterov: SGD settings; Nesterov defaults to
        ``weight_decay > 0`` as in the paper's code.
      loss, metrics: compile arguments (default: sparse categorical
        cross-entropy on logits, accuracy).
      batch_size: for data given as arrays.
      steps_per_epoch: for datasets of unknown length.
      seed: shuffling seed for data given as arrays.
      steps_per_execution: training steps per call of the compiled function
        (Keras' compile argument; more hides per-step overhead on accelerators).
      jit_compile: compile the training step with XLA.
      chance_guard: stop a run whose training loss stays at ln(classes) for a
        whole epoch (:class:`tfimp.guards.ChanceLevelError`); on by default.
    """

    def __init__(self, *, learning_rate: float = 0.1, dense_schedule: Union[str, _lr.Schedule] = "step",
                 warmup_epochs: int = 0, optimizer: str = "torch_sgd", momentum: float = 0.9,
                 weight_decay: float = 5e-4,
                 nesterov: Optional[bool] = None, loss=None, metrics: Sequence = ("accuracy",),
                 batch_size: int = 128, steps_per_epoch: Optional[int] = None, seed: int = 0,
                 steps_per_execution: int = 1, jit_compile: bool = False, chance_guard: bool = True):
        if isinstance(dense_schedule, str) and dense_schedule not in DENSE_SCHEDULES:
            raise ValueError(f"unknown dense schedule {dense_schedule!r}; known: {list(DENSE_SCHEDULES)}")
        _optimizers.get(optimizer)  # fail on a bad name now, not at compile
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.dense_schedule = dense_schedule
        self.warmup_epochs = int(warmup_epochs)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = nesterov  # None: optimizers.make decides (on with weight decay and momentum)
        self.loss = loss
        self.metrics = list(metrics)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.steps_per_execution = int(steps_per_execution)
        self.jit_compile = bool(jit_compile)
        self.chance_guard = bool(chance_guard)
        self.model: Optional[keras.Model] = None

    def _schedule(self, epochs: int, steps_per_epoch: int):
        if not isinstance(self.dense_schedule, str):
            return self.dense_schedule
        return dense_schedule(self.dense_schedule, self.learning_rate, epochs * steps_per_epoch,
                              self.warmup_epochs * steps_per_epoch)

    def _datasets(self, train, validation, test):
        """(training data, validation, test, steps per epoch); arrays and :func:`tfimp.data.load`'s ``train``
        become :class:`tfimp.data.EpochOrdered`."""
        if isinstance(train, (tuple, list)) and len(train) == 2:
            train = _data.EpochOrdered.from_arrays(train[0], train[1], self.batch_size, self.seed)
        elif (twin := _data.epoch_ordered(train)) is not None:  # tfimp.data.load's pipeline: its epoch-ordered twin
            train = twin
        elif not isinstance(train, (_data.EpochOrdered, tf.data.Dataset)):
            raise TypeError(f"train must be a batched tf.data.Dataset, a tfimp.data.EpochOrdered or an (x, y) tuple "
                            f"of arrays, got {type(train).__name__}")
        validation = _as_dataset(validation, self.batch_size)
        test = _as_dataset(test, self.batch_size)
        if isinstance(train, _data.EpochOrdered):
            steps = self.steps_per_epoch or train.steps_per_epoch
        else:
            steps = self.steps_per_epoch or _steps_per_epoch(train)
        if not steps:
            raise ValueError("the training data has unknown length; pass steps_per_epoch")
        return train, validation, test, steps

    @staticmethod
    def _for_fit(train, first_epoch: int, end_epoch: int, steps: int):
        """(dataset, steps_per_epoch) to give ``fit`` for epochs ``first_epoch .. end_epoch - 1``.

        Epoch-ordered data starts at that epoch's batches, so a resumed run
        sees what the uninterrupted one saw; a plain dataset is passed as it is.
        """
        if isinstance(train, _data.EpochOrdered):
            return train.epochs(first_epoch, end_epoch), steps
        return train, None

    @staticmethod
    def _one_pass(train):
        """One finite pass over the training data (BatchNorm re-estimation, building)."""
        return train.epoch(0) if isinstance(train, _data.EpochOrdered) else train

    def run(self, model: keras.Model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = (),
            cycle_end_hooks: Sequence = (), identity: Optional[dict] = None) -> list[dict]:
        """Trains (and prunes) ``model``; returns the results rows (see :mod:`tfimp.results`).

        The one entry point of every runner: checks the model, prepares the
        data (arrays and :class:`tfimp.data.EpochOrdered` data replay exactly
        on resume), holds the workdir's lock and hands over to the runner's
        ``_run``. The trained, wrapped model is ``self.model`` afterwards.

        Args:
          model: a tf_keras model (IMP wraps it unless it is wrapped already).
          train: a batched ``tf.data.Dataset``, a :class:`tfimp.data.EpochOrdered`
            or an ``(x, y)`` tuple of arrays.
          validation, test: datasets or ``(x, y)`` tuples (optional).
          workdir: resume from it, return a finished run's rows without
            training, refuse one that holds a different run; each finished
            cycle is written as ``workdir/cycle_N/`` (:func:`tfimp.load_cycle`).
          overwrite: remove whatever run ``workdir`` holds first.
          verbose: 0 silent, 1 progress and tables.
          callbacks: more Keras callbacks (after tfimp's own: they see the
            ``sparsity`` and ``learning_rate`` epoch logs).
          cycle_end_hooks: ``hook(model, row)`` after each cycle's row.
          identity: more of what defines the run (the CLI passes its config).
        """
        wrapping.check_tf_keras_model(model)
        train, validation, test, steps = self._datasets(train, validation, test)
        with _workdir.Locked(workdir, verbose):
            return self._run(model, train, validation, test, steps, workdir, overwrite, verbose, callbacks,
                             cycle_end_hooks, identity)

    def _run(self, model, train, validation, test, steps, workdir, overwrite, verbose, callbacks, cycle_end_hooks,
             identity) -> list[dict]:
        raise NotImplementedError

    def identity(self, **extra) -> dict:
        """What defines a run of this runner, for the workdir (see :mod:`tfimp.workdir`)."""
        settings = {name: _workdir.describe(getattr(self, name)) for name in (
            "optimizer", "learning_rate", "dense_schedule", "warmup_epochs", "momentum", "weight_decay", "nesterov",
            "loss", "metrics", "batch_size", "steps_per_epoch", "seed", "jit_compile")}
        return {"runner": type(self).__name__, **settings, **extra}

    def _finished_run(self, model: keras.Model, workdir: str, identity: dict, overwrite: bool, verbose: int,
                      expected_rows: int, before_restore: Callable[[keras.Model], None] = lambda model: None):
        """Claims ``workdir`` for this run; for a finished run, restores its final weights and returns its rows.

        Runners that resume through Keras' ``BackupAndRestore`` (dense, the
        baselines) use this; IMP keeps its own per-epoch checkpoint.
        """
        _workdir.claim(workdir, identity, overwrite, verbose)
        _distribute.sync_workers(model.distribute_strategy)  # the chief has claimed it: now all may read
        rows = _checkpoint.load_results(workdir)
        if rows is None or len(rows) != expected_rows or not _storage.exists(final_weights_path(workdir)):
            return None
        _say_finished(workdir, rows, verbose)
        before_restore(model)
        final = final_weights_path(workdir)
        try:
            _checkpoint.load_weights(model, final)
        except (OSError, ValueError, IndexError, KeyError) as error:
            raise _storage.damaged(final, f"{type(error).__name__}: {error}") from None
        if _workdir.is_chief():  # the final weights are the end of the last row's cycle: it can be written again
            _core_checkpoint.check_outputs(workdir, rows, {"method": self.label},
                                           rewrite_cycle=lambda row: _checkpoint.write_cycle(workdir, model, row),
                                           restorable_cycle=rows[-1]["cycle"], finished=True)
        return rows

    @staticmethod
    def _build_on(model: keras.Model, train) -> None:
        """Builds a not-yet-called (subclassed) model on one training batch, so its wrappers have masks."""
        if model.built and not wrapping.unbuilt_wrappers(model):
            return
        features = next(iter(_Trainer._one_pass(train)))[0]
        model(features, training=False)

    def _compile(self, model: keras.Model, learning_rate) -> None:
        with model.distribute_strategy.scope():
            model.compile(
                optimizer=_optimizers.make(self.optimizer, learning_rate, momentum=self.momentum,
                                           nesterov=self.nesterov, weight_decay=self.weight_decay),
                loss=self.loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=self.metrics, steps_per_execution=self.steps_per_execution, jit_compile=self.jit_compile,
            )


class IMP(_Trainer):
    """Prune-retrain with one call.

    Example:
      >>> imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
      >>> rows = imp.run(model, (x_train, y_train), test=(x_test, y_test), workdir="runs/imp")
      >>> imp.model    # the trained, wrapped model

    Args:
      plan: a :class:`tfimp.Plan`; or give its fields as keyword arguments.
      **settings: optimizer, schedule and data settings (see ``_Trainer``):
        ``learning_rate``, ``dense_schedule``, ``warmup_epochs``, ``optimizer``, ``momentum``,
        ``weight_decay``, ``nesterov``, ``loss``, ``metrics``, ``batch_size``,
        ``steps_per_epoch``, ``seed``, ``steps_per_execution``, ``jit_compile``.
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

    def _run(self, model, train, validation, test, steps, workdir, overwrite, verbose, callbacks, cycle_end_hooks,
             identity) -> list[dict]:
        """The plan in one ``fit`` with the IMP callback (wrapping the model unless it is already)."""
        if not wrapping.wrappers(model):
            with model.distribute_strategy.scope():
                model = wrapping.wrap(model, verbose=verbose)
        with model.distribute_strategy.scope():
            self._build_on(model, train)
        self._compile(model, self.learning_rate)
        self.model = model
        with model.distribute_strategy.scope():  # the callback tells the chief from the strategy
            self.callback = _callbacks.IMP(
                self.plan, schedule=self._schedule(self.plan.reference_epochs, steps), steps_per_epoch=steps,
                test_data=test, recalibration_data=self._one_pass(train) if self.plan.recalibrate_bn else None,
                workdir=workdir, overwrite=overwrite, verbose=verbose, cycle_end_hooks=cycle_end_hooks,
                identity=self.identity(steps_per_epoch=steps, user=identity or {}), chance_guard=self.chance_guard,
            )
        initial_epoch = self.callback.restore(model)
        if self.callback.finished:
            _say_finished(workdir, self.callback.rows, verbose)
            return list(self.callback.rows)
        data, steps_for_fit = self._for_fit(train, initial_epoch, self.plan.total_epochs, steps)
        model.fit(data, epochs=self.plan.total_epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=self.steps_per_epoch or steps_for_fit, validation_data=validation,
                  callbacks=[self.callback, *callbacks], verbose=verbose)
        return list(self.callback.rows)


class OneFitRunner(_Trainer):
    """The skeleton of runners whose whole budget is one ``fit`` (dense training, the baselines).

    ``_run`` prepares the model (:meth:`_prepare`), compiles it with the
    dense schedule over ``self.epochs``, claims the workdir (a finished run
    returns its rows), resumes through Keras' ``BackupAndRestore``, fits
    with :meth:`_callbacks` and the row collector of :meth:`_rows_callback`,
    and writes the final model as ``cycle_N/``. A subclass overrides those
    small pieces and nothing else.
    """

    #: how the runner names itself in messages and results.json ("dense", "gmp", ...).
    label: str = ""
    epochs: int

    def _prepare(self, model: keras.Model, train, steps: int) -> keras.Model:
        """The model to train (wrapped and built where the runner needs masks)."""
        return model

    def _run_identity(self, steps: int) -> dict:
        """What besides the shared settings defines this runner's run."""
        raise NotImplementedError

    def _callbacks(self, steps: int) -> list:
        """The runner's own callbacks, before the row collector."""
        return []

    def _rows_callback(self, steps: int, test, workdir: Optional[str]) -> "RowCollector":
        raise NotImplementedError

    def _before_restore(self, model: keras.Model) -> None:
        """Brings a fresh model to the state whose weights a finished run saved."""

    def _run(self, model, train, validation, test, steps, workdir, overwrite, verbose, callbacks, cycle_end_hooks,
             identity) -> list[dict]:
        model = self._prepare(model, train, steps)
        self._compile(model, self._schedule(self.epochs, steps))
        self.model = model
        collector = self._rows_callback(steps, test, workdir)
        extra = [*([_guards.ChanceGuard()] if self.chance_guard else []), *self._callbacks(steps), collector]
        if workdir is not None:
            finished = self._finished_run(model, workdir, self.identity(**self._run_identity(steps),
                                                                       steps_per_epoch=steps, user=identity or {}),
                                          overwrite, verbose, expected_rows=collector.expected_rows,
                                          before_restore=self._before_restore)
            if finished is not None:
                return finished
            extra.insert(0, CheckedBackup(_workdir.path(workdir, _workdir.BACKUP)))
        data, steps_for_fit = self._for_fit(train, 0, self.epochs, steps)  # BackupAndRestore picks the epoch
        model.fit(data, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch or steps_for_fit,
                  validation_data=validation, callbacks=[*extra, *callbacks], verbose=verbose)
        if workdir is not None and not _storage.listdir(_workdir.path(workdir, _workdir.BACKUP)):
            _storage.remove(_workdir.path(workdir, _workdir.BACKUP))  # Keras empties it at the end, leaves the folder
        final_row = collector.rows[-1]
        if workdir is not None:  # first: hooks may read cycle_N/; every worker saves, the chief into workdir
            out = _workdir.write_dir(workdir, model.distribute_strategy)
            _checkpoint.write_cycle(out, model, final_row)
            _checkpoint.save_weights(model, final_weights_path(out))
            _checkpoint.write_results(out, collector.rows, {"method": self.label})
        for hook in cycle_end_hooks:  # no cycles: once, for the final model
            hook(model, final_row)
        if workdir is not None:
            _workdir.remove_worker_scratch(workdir, model.distribute_strategy)
        if verbose:
            print(f"[tfimp] {self.label} finished:\n" + _results.format_table([final_row]), flush=True)
        self._check_result(final_row, verbose)
        return list(collector.rows)

    def _check_result(self, final_row: dict, verbose: int) -> None:
        """Says so when the run ended short of what it was asked for (nothing by default)."""


class RowCollector(keras.callbacks.Callback):
    """Collects a one-fit runner's rows (``rows``; ``expected_rows`` of them in a finished run)."""

    expected_rows: int
    rows: list


class _DenseRow(RowCollector):
    """The dense run's one row (cycle 0), at the end of its last epoch."""

    expected_rows = 1

    def __init__(self, epochs: int, steps_per_epoch: int, test_data, initial_lr: float):
        super().__init__()
        self.epochs, self.steps_per_epoch, self.test_data, self.initial_lr = epochs, steps_per_epoch, test_data, \
            initial_lr
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.rows = [_results.row_from_logs(
                self.model, dict(logs or {}), self.test_data, cycle=0, target=0.0, schedule="dense",
                initial_lr=self.initial_lr, epochs=self.epochs, steps=self.epochs * self.steps_per_epoch,
                wall_s=time.perf_counter() - self._start)]

    def on_train_end(self, logs=None):
        if not self.rows:  # resumed after the last epoch had ended: measure the restored model
            self.on_epoch_end(self.epochs - 1, {})


class Dense(OneFitRunner):
    """Dense training (the baseline), with the same rows and workdir files as IMP.

    ``run`` trains for ``epochs`` and returns one row (cycle 0); it resumes
    from the workdir through Keras' ``BackupAndRestore``.
    """

    label = "dense"

    def __init__(self, epochs: int, **settings):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        super().__init__(**settings)
        self.epochs = int(epochs)

    def _run_identity(self, steps: int) -> dict:
        return {"method": "dense", "epochs": self.epochs}

    def _rows_callback(self, steps: int, test, workdir: Optional[str]) -> RowCollector:
        initial_lr = float(_lr.tabulate(self._schedule(self.epochs, steps), 1)[0])
        return _DenseRow(self.epochs, steps, test, initial_lr)
