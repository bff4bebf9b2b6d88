"""Keras callbacks that run IMP inside an ordinary ``model.fit``.

:class:`IMP` drives a whole IMP/BIMP run from one ``fit`` call: it prunes at
cycle boundaries, owns the optimizer's learning rate (the dense schedule,
then each cycle's retraining schedule), resets or keeps the optimizer state,
records one row per cycle, checkpoints every epoch and resumes.

Example::

    plan = tfimp.Plan(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
    imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.StepDecay(0.1, [500, 750]), workdir="run")
    model = tfimp.wrap(model)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
    model.fit(train, epochs=plan.total_epochs, initial_epoch=imp.restore(model),
              validation_data=val, callbacks=[imp])
    imp.rows   # one dict per cycle
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from tfimp.tf_keras import _private
from tfimp.tf_keras import guards as _guards
from tfimp.tf_keras import distribute as _distribute
from tfimp.tf_keras import batchnorm as _batchnorm
from tfimp.tf_keras import checkpoint as _checkpoint
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras import lr as _lr
from tfimp.tf_keras import optimizers as _optimizers
from tfimp.tf_keras import pruning as _pruning
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras, tf
from tfimp.core import cycles as _cycles
from tfimp.core import masking as _masking
from tfimp.core import notices as _notices
from tfimp.core.plan import Plan
from tfimp.tf_keras.results import _count, _test_loss_and_accuracy, format_table, row_from_logs  # noqa: F401

class IMP(keras.callbacks.Callback, _cycles.ResumableProgress):
    """Runs an IMP (or BIMP, or one-shot) plan inside ``model.fit``.

    Args:
      plan: the :class:`tfimp.Plan`; ``fit`` must run ``plan.total_epochs`` epochs.
      schedule: the original (dense) learning-rate schedule, in steps: a Keras
        schedule, a callable of the step, or a constant. The dense phase
        follows it; the retraining schedules are built from it over
        ``plan.reference_epochs`` epochs. Default: the learning rate the
        model was compiled with (a schedule or a number).
      steps_per_epoch: needed only when ``fit`` cannot tell it (data of
        unknown length).
      test_data: evaluated at the end of each cycle (``test_*`` columns).
      recalibration_data: the training batches from which BatchNorm
        statistics are re-estimated (:func:`tfimp.batchnorm.reestimate`)
        right after each pruning step when ``plan.recalibrate_bn`` is set
        (the default, as in the authors' runs).
      workdir: where to checkpoint every epoch and write ``results.json``
        and ``results.csv``; ``None`` keeps everything in memory.
      overwrite: remove whatever run ``workdir`` holds and start over.
      verbose: 0 silent, 1 one header line per cycle and a final table.
      cycle_end_hooks: functions ``hook(model, row)`` called after each
        cycle's row (e.g. the CLI's model report and TensorBoard scalars).
      identity: more of what defines the run (e.g. the optimizer settings,
        the CLI's whole config), stored with the plan and the schedule in
        ``identity.json``; a later run in ``workdir`` with any difference is
        refused (see :mod:`tfimp.workdir`). The callback holds the workdir's
        lock from construction until training ends.
      chance_guard: stop with :class:`tfimp.guards.ChanceLevelError` when an
        epoch's training loss sits at ln(classes) (a network that learned
        nothing, see :mod:`tfimp.guards`), before anything is saved or pruned.

    The callback owns the learning rate: it installs an in-graph
    :class:`tfimp.lr.PhaseSchedule` in the optimizer (a tf_keras optimizer)
    and loads each phase's rates into it once, when the phase begins; nothing
    runs in Python per step, so ``steps_per_execution`` and ``jit_compile``
    work. Another callback that sets the learning rate
    (``LearningRateScheduler``, ``ReduceLROnPlateau``, your own) is an error.
    A NaN or infinite loss stops the run at the end of its epoch, before the
    checkpoint is written.
    """

    def __init__(self, plan: Plan, *, schedule: Optional[_lr.Schedule] = None, steps_per_epoch: Optional[int] = None,
                 test_data=None, recalibration_data=None, workdir: Optional[str] = None,
                 overwrite: bool = False, verbose: int = 1, cycle_end_hooks: Sequence[Callable] = (),
                 identity: Optional[dict] = None, chance_guard: bool = True):
        super().__init__()
        self.chance_guard = bool(chance_guard)
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a tfimp.Plan, got {type(plan).__name__}")
        self.plan = plan
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.test_data = test_data
        self.recalibration_data = recalibration_data
        self.workdir = workdir
        self.overwrite = overwrite
        self.verbose = verbose
        self.cycle_end_hooks = list(cycle_end_hooks)
        self.rows: list[dict] = []
        self._cycles: dict[int, dict] = {}  # per pruned cycle: target, initial_lr, ...
        self._phase_wall = 0.0
        self._dense_norm_sq: Optional[float] = None  # ALLR's reference norm (since_dense)
        self._restored_epoch: Optional[int] = None
        self._epoch_start = 0.0
        self._table: Optional[np.ndarray] = None
        self._phase = 0
        self._phase_start_epoch = 0
        self._epoch = 0
        self._phase_schedule: Optional[_lr.PhaseSchedule] = None
        self._installed_on = None  # the optimizer that runs the phase schedule
        self._rate_seen: Optional[float] = None
        self._owns_lock = False
        # Multi-worker: every worker saves (saving all-reduces BatchNorm statistics), only the chief into workdir.
        self._write_dir = None if workdir is None else _workdir.write_dir(workdir)
        if workdir is not None:  # claimed now: a mismatch is refused before anything is written
            self._owns_lock = _workdir.acquire_and_claim(workdir, {**self._description(), **(identity or {})},
                                                         overwrite, verbose)

    # -- resume ---------------------------------------------------------------

    def _description(self) -> dict:
        return {"plan": self.plan.to_dict(), "schedule": _workdir.describe(self.schedule)}

    def restore(self, model: keras.Model) -> int:
        """Loads the workdir's checkpoint into ``model`` (compiled) and this callback.

        Returns:
          The epoch to pass to ``fit`` as ``initial_epoch`` (0 without a checkpoint;
          ``plan.total_epochs`` for a finished run, so ``fit`` does nothing).
        """
        if self.workdir is None:
            return 0
        self._install_schedule(model)  # before reading: the checkpoint holds the optimizer as it runs
        _build_optimizer(model)
        _distribute.sync_workers(model.distribute_strategy)  # the chief has claimed the workdir
        return self._resume_from(_checkpoint.restore(self.workdir, model), model)

    # -- fit hooks --------------------------------------------------------------

    def on_train_begin(self, logs=None):
        epochs = self.params.get("epochs")
        if epochs != self.plan.total_epochs:
            raise ValueError(
                f"the IMP plan takes {self.plan.total_epochs} epochs (dense {self.plan.dense_epochs} + "
                f"retraining {self.plan.cycle_epochs()}), but fit was called with epochs={epochs}"
            )
        steps = self.params.get("steps") or self.steps_per_epoch
        if not steps:
            raise ValueError("cannot tell the steps per epoch from the data; pass steps_per_epoch to IMP")
        self.steps_per_epoch = int(steps)
        self._refuse_other_rate_setters()
        self._install_schedule(self.model)
        if not wrapping.prunable_kernels(self.model):
            raise ValueError("IMP needs a wrapped model: call `model = tfimp.wrap(model)` before compile")
        _masking.check_reachable([k.shape for k in wrapping.prunable_kernels(self.model)],
                                 self.plan.target_sparsity, self.plan.criterion, self.plan.min_kept_per_layer)
        if (self.verbose and self.plan.recalibrate_bn and self.recalibration_data is None
                and _batchnorm.batch_norm_layers(self.model)):
            print("[tfimp] note: the plan re-estimates BatchNorm statistics after pruning, but no "
                  "recalibration_data was given; pass the training data as recalibration_data", flush=True)
        if self.workdir is not None and self._restored_epoch is None:
            _distribute.sync_workers(self.model.distribute_strategy)
            saved = _checkpoint.load_state(self.workdir)
            if saved is not None:
                raise ValueError(
                    f"workdir {self.workdir!r} holds a checkpoint at epoch {saved['next_epoch']}; "
                    "call `initial_epoch = imp.restore(model)` and pass it to fit to resume"
                )
        self._original = _lr.Original(
            _lr.tabulate(self.schedule, max(1, self.plan.reference_epochs) * self.steps_per_epoch),
            _lr.warmup_steps_of(self.schedule),
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.perf_counter()
        current = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        if self._rate_seen is not None and current != self._rate_seen:
            raise ValueError(
                f"something else set the learning rate between epochs ({self._rate_seen:.6g} -> {current:.6g}); "
                "the IMP callback owns it: remove the other learning-rate callback, or give its schedule to "
                "IMP as schedule=")
        phase = self.plan.phase_of(epoch)
        if self._table is not None and phase == self._phase:
            return  # same phase, same learning-rate table
        start, _ = self.plan.phase_bounds(phase)
        pruned_now = phase > 0 and epoch == start and phase not in self._cycles
        if pruned_now:
            self._prune(phase)
            # fit reset the metrics before this hook, and _prune's test evaluations filled them: the epoch's
            # train_* figures must count training batches only
            self.model.reset_metrics()
        self._phase, self._phase_start_epoch = phase, start
        self._table = self._phase_table(phase)
        # Once per phase (and after a resume): the graph reads the rates from here.
        step_now = int(self.model.optimizer.iterations.numpy())
        self._phase_schedule.set_phase(self._table, step_now - (epoch - start) * self.steps_per_epoch)
        self._rate_seen = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        if pruned_now:
            self._announce(phase)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            where = (f"the last good checkpoint (epoch {self._epoch}) stays in {self.workdir!r}"
                     if self.workdir else "no workdir, nothing was saved")
            raise FloatingPointError(
                f"loss became {loss} in epoch {epoch + 1} (cycle {self._phase}); training stopped, {where}. "
                "Lower the learning rate or check the data."
            )
        # A finite loss can hide weights a NaN gradient reached: nothing of such an epoch is saved or pruned.
        _masking.check_finite(((w.name.split(":")[0], w.numpy()) for w in self.model.trainable_weights),
                              f"save epoch {epoch + 1} (cycle {self._phase})")
        if self.chance_guard:  # before any save: the last good checkpoint stays, no pruning follows
            _guards.check_epoch(self.model, logs or {}, epoch, f" (cycle {self._phase})")
        self._rate_seen = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        if logs is not None:  # later callbacks (TensorBoard, CSVLogger) see these too
            logs["sparsity"] = _pruning.sparsity(self.model)
            logs["learning_rate"] = self._rate_seen
        logs = dict(logs or {})
        self._phase_wall += time.perf_counter() - self._epoch_start
        start, length = self.plan.phase_bounds(self._phase)
        if epoch == start + length - 1:
            self.rows.append(self._row(self._phase, logs))
            self._phase_wall = 0.0
            if self.workdir is not None:  # first: hooks may read cycle_N/ (the CLI's reporter does)
                self._write_cycle(self.model, self.rows[-1])
            for hook in self.cycle_end_hooks:
                hook(self.model, self.rows[-1])
        if self.workdir is not None:
            _checkpoint.save(self._write_dir, self.model, self._progress_state(epoch + 1))
            if epoch == start + length - 1:
                _checkpoint.write_results(self._write_dir, self.rows, {"plan": self.plan.to_dict()})

    def _write_cycle(self, model: keras.Model, row: dict) -> None:
        _checkpoint.write_cycle(self._write_dir, model, row)

    def on_train_end(self, logs=None):
        if self.workdir is not None:
            _workdir.remove_worker_scratch(self.workdir)
        if self._owns_lock:
            _workdir.release(self.workdir)
            self._owns_lock = False
        if self.verbose and self.rows and len(self.rows) == self.plan.cycles + (self.plan.dense_epochs > 0):
            print("[tfimp] IMP finished:\n" + format_table(self.rows), flush=True)

    # -- the learning rate ------------------------------------------------------

    def _install_schedule(self, model: keras.Model) -> None:
        """Puts the in-graph phase schedule into ``model``'s optimizer (once per optimizer)."""
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("compile the model before IMP runs: it drives the compiled optimizer's learning rate")
        if self._installed_on is optimizer:
            return
        if self.schedule is None:  # the compiled rate is the original schedule
            compiled = _optimizers.current_schedule(optimizer)
            if isinstance(compiled, _lr.PhaseSchedule):
                raise ValueError("the optimizer runs another IMP callback's schedule; compile a fresh optimizer "
                                 "or pass schedule= (the original dense schedule)")
            self.schedule = compiled
        with model.distribute_strategy.scope():
            self._phase_schedule = _lr.PhaseSchedule(float(_lr.tabulate(self.schedule, 1)[0]))
        _optimizers.install_schedule(optimizer, self._phase_schedule)
        self._installed_on = optimizer

    def _refuse_other_rate_setters(self) -> None:
        """Keras' own rate-setting callbacks in the same fit would fight the phase schedule."""
        running = _private.running_callbacks(self)
        if running is None:
            _notices.warn("tfimp could not find the other callbacks of this fit (a Keras change?), so it "
                          "cannot check that no LearningRateScheduler/ReduceLROnPlateau fights the IMP "
                          "schedule")
            return
        for other in (c for c in running if c is not self):
            if isinstance(other, (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau)):
                raise ValueError(
                    f"{type(other).__name__} sets the learning rate, and so does the IMP callback (the dense "
                    "schedule, then each cycle's retraining schedule): remove it, and give its schedule to IMP "
                    "as schedule= (a Keras LearningRateSchedule in steps)")

    # -- the work ---------------------------------------------------------------

    def _prune(self, cycle: int) -> None:
        """Prunes to the cycle's target and records what ALLR and the rows need."""
        kernels = wrapping.prunable_kernels(self.model)
        alive_before = [k.mask.numpy() != 0 for k in kernels]
        # Only the per-cycle norm drop needs the pruned values themselves.
        weights_before = [k.weight.numpy() for k in kernels] if self.plan.allr_norm_drop == "this_cycle" else None
        norm_sq_before = _squared_norm(self.model.trainable_variables)
        if self._dense_norm_sq is None:  # theta_0: the model before the first pruning
            self._dense_norm_sq = norm_sq_before
        target = self.plan.sparsity_after(cycle)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="tfimp.prune: pruning .* removed every weight")
            layer_sparsities = _pruning.prune(self.model, target, criterion=self.plan.criterion,
                                              min_kept_per_layer=self.plan.min_kept_per_layer)
        emptied = _pruning.emptied_layers(layer_sparsities)
        if emptied:  # said once here, with the cycle, and kept in the cycle's row
            _notices.warn(_cycles.collapse_warning(cycle, target, emptied))
        self._cycles[cycle] = _cycles.pruning_record(
            self.plan, cycle, eta_max=self._original.eta_max, alive_before=alive_before,
            alive_after=[k.mask.numpy() != 0 for k in kernels], weights_before=weights_before,
            norm_sq_before=norm_sq_before, norm_sq_after=_squared_norm(self.model.trainable_variables),
            dense_norm_sq=self._dense_norm_sq, emptied=emptied)
        if _cycles.resets_optimizer(self.plan, cycle):
            _reset_optimizer_state(self.model.optimizer)
        self._measure_after_pruning(cycle)

    def _measure_after_pruning(self, cycle: int) -> None:
        """Test accuracy right after pruning and after BatchNorm re-estimation (the paper's pruned-accuracy curves)."""
        record = self._cycles[cycle]
        reestimate = self.plan.recalibrate_bn and self.recalibration_data is not None  # 0 batches: no BatchNorm
        if self.test_data is not None:
            record["test_accuracy_pruned"] = _test_loss_and_accuracy(self.model, self.test_data)[1]
        if reestimate and _batchnorm.reestimate(self.model, self.recalibration_data) and self.test_data is not None:
            record["test_accuracy_bn_reestimated"] = _test_loss_and_accuracy(self.model, self.test_data)[1]

    def _announce(self, cycle: int) -> None:
        # The rate the cycle starts from after its warm-up: its peak, for every built-in schedule.
        self._cycles[cycle]["initial_lr"] = float(self._table.max())
        if self.verbose:
            print("\n".join(_cycles.announcement(self.plan, cycle, self._cycles[cycle])), flush=True)

    def _phase_table(self, phase: int) -> np.ndarray:
        return _cycles.phase_rates(self.plan, self._original, phase, self.steps_per_epoch, self._cycles.get(phase))

    def _row(self, phase: int, logs: dict) -> dict:
        record = self._cycles.get(phase, {})
        settings = _cycles.row_settings(self.plan, phase, record, self._original.values.max(), self.steps_per_epoch,
                                        self._phase_wall)
        return _cycles.finish_row(row_from_logs(self.model, logs, self.test_data, **settings), record)



def _build_optimizer(model: keras.Model) -> None:
    """Creates the optimizer's slot variables so a checkpoint restores them at once."""
    optimizer = model.optimizer
    if optimizer is None:
        raise ValueError("compile the model before restoring an IMP checkpoint")
    if hasattr(optimizer, "build") and not getattr(optimizer, "_built", False):
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def _reset_optimizer_state(optimizer) -> None:
    """Zeroes the optimizer's slot variables (momentum, ...); keeps its step counter (and a loss scale)."""
    optimizer = _optimizers.unwrapped(optimizer)
    variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
    keep = {id(optimizer.iterations), id(optimizer.learning_rate)}  # the step counter and the current rate
    for variable in variables:
        if id(variable) not in keep:
            variable.assign(tf.zeros_like(variable))


def _squared_norm(variables) -> float:
    return sum(float(np.sum(np.square(v.numpy(), dtype=np.float64))) for v in variables)
