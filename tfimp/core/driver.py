"""The run driver: what a tfimp run does at each epoch boundary, written once for every front end.

Two Keras callbacks carry every run tfimp makes, on both front ends:

* :class:`IMPDriver` runs an IMP (or BIMP, or one-shot) plan inside one
  ``fit``: at a cycle's first epoch it prunes (exactly, by the plan's
  criterion), re-estimates BatchNorm, measures the pruned model, resets or
  keeps the optimizer state and loads the cycle's retraining rates; at each
  epoch's end it checks the loss and the weights, writes the cycle's row and
  ``cycle_N/`` when a cycle ends, and checkpoints the epoch.
* :class:`EpochRunDriver` runs a budget in one ``fit`` (dense training and
  the pruning-during-training methods): one checkpoint per epoch, the rows
  a subclass makes, ``cycle_N/`` and ``results.json`` after the last epoch.

Both resume exactly from the newest checkpoint (``restore`` returns the
epoch ``fit`` starts at). They are mixins of a front end's Keras callback:
what needs the framework (reading masks, pruning, evaluating, installing
the learning rate, writing a checkpoint) goes through the front end's
:class:`FrameworkOps`, so the order of the work and the rows' meanings are
the same on tf_keras and on Keras 3 by construction.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from tfimp.core import checkpoint as _checkpoint
from tfimp.core import cycles as _cycles
from tfimp.core import guards as _guards
from tfimp.core import masking as _masking
from tfimp.core import notices as _notices
from tfimp.core import results as _results
from tfimp.core import retraining as _retraining
from tfimp.core import storage as _storage
from tfimp.core import structures as _structures
from tfimp.core import workdir as _workdir
from tfimp.core.plan import Plan


#: Batch size of the evaluations of ``(x, y)`` arrays. Keras' default of 32 made each of the fidelity protocol's
#: nine evaluations take 1.2 s on Keras 3's TensorFlow backend, 0.5 s at 256; the batch size does not change the
#: metrics (BatchNorm runs in inference mode).
EVALUATION_BATCH_SIZE = 256


class FrameworkOps:
    """What the driver asks of one Keras: each front end subclasses this once (``tfimp.<front end>.framework``).

    Every method takes the model the callback runs on; arrays come back as
    numpy. The defaults delegate to the front end's modules named by the
    class attributes below (its ``lr``, ``batchnorm`` and ``checkpoint``),
    and do what a single-process run needs.
    """

    keras_major: str = ""
    lr: Any  #: the front end's ``tfimp.lr`` (``tabulate``, ``warmup_steps_of``)
    batchnorm: Any  #: its ``tfimp.batchnorm`` (``reestimate``, ``batch_norm_layers``)
    checkpoint: Any  #: its checkpoint module (``save``, ``restore``, ``write_cycle``, ``load_weights``)

    # -- the model ----------------------------------------------------------------
    def masks_and_weights(self, model, with_weights: bool) -> tuple[list[np.ndarray], Optional[list[np.ndarray]]]:
        """The prunable kernels' masks as booleans (kept = True) and, with ``with_weights``, their values."""
        raise NotImplementedError

    def named_trainable_arrays(self, model) -> Iterable[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def prunable_shapes(self, model) -> list[tuple]:
        """The shapes of the prunable kernels (empty for a model that is not wrapped)."""
        raise NotImplementedError

    def prune(self, model, target: float, criterion: str, min_kept_per_layer: int,
              structure: str = "unstructured") -> dict:
        raise NotImplementedError

    def sparsity(self, model, structure: str = "unstructured") -> float:
        """The model's sparsity over its prunable weights, in ``structure``'s unit (0 for a model not wrapped)."""
        raise NotImplementedError

    def hold_channels(self, model) -> None:
        """Holds the biases and BatchNormalization of pruned channels at zero while ``model`` trains (a
        ``structure="channels"`` run resumed in a new process: no prune has installed the hold yet)."""

    def evaluate(self, model, data) -> dict:
        """``model.evaluate`` of ``data`` (a dataset, a ``PyDataset`` or an ``(x, y)`` pair) as a dict."""
        if isinstance(data, tuple) and len(data) == 2:
            return model.evaluate(data[0], data[1], batch_size=EVALUATION_BATCH_SIZE, verbose=0, return_dict=True)
        return model.evaluate(data, verbose=0, return_dict=True)

    def reestimate_batchnorm(self, model, data) -> bool:
        """Re-estimates BatchNorm statistics on ``data``; False when the model has no BatchNorm."""
        return bool(self.batchnorm.reestimate(model, data))

    def has_batchnorm(self, model) -> bool:
        return bool(self.batchnorm.batch_norm_layers(model))

    # -- the learning rate and the optimizer ---------------------------------------------
    def tabulate(self, schedule, steps: int) -> np.ndarray:
        """The rates of ``schedule`` (a Keras schedule, a callable of the step or a number) at steps 0..steps-1."""
        return self.lr.tabulate(schedule, steps)

    def warmup_steps_of(self, schedule) -> int:
        return self.lr.warmup_steps_of(schedule)

    def optimizer(self, model):
        """The model's optimizer (unwrapped from a loss-scale wrapper); an error naming the cure if uncompiled."""
        if model.optimizer is None:
            raise ValueError("compile the model before IMP runs: it drives the compiled optimizer's learning rate")
        return getattr(model.optimizer, "inner_optimizer", model.optimizer)

    def learning_rate(self, model) -> float:
        raise NotImplementedError

    def step(self, model) -> int:
        raise NotImplementedError

    def reset_optimizer_state(self, model) -> None:
        """Zeroes the optimizer's slots (momentum, ...); keeps its step counter and the current rate."""
        raise NotImplementedError

    def take_over_learning_rate(self, model, schedule) -> tuple[Any, Any]:
        """Puts tfimp's phase-rate schedule into the optimizer; returns ``(original schedule, handle)``.

        ``schedule`` ``None`` means the compiled rate is the original
        schedule; one that is already an IMP callback's is refused.
        """
        raise NotImplementedError

    def set_phase_rates(self, model, handle, rates: np.ndarray, start_step: int, name: str) -> None:
        """Makes ``rates`` the per-step rates from optimizer step ``start_step`` on."""
        raise NotImplementedError

    def other_rate_setters(self, callback) -> Optional[list[str]]:
        """Names of other callbacks of this ``fit`` that set the learning rate (``None``: cannot tell)."""
        return []

    # -- files and workers ----------------------------------------------------------
    def save(self, workdir: str, model, state: dict) -> None:
        self.checkpoint.save(workdir, model, state)

    def restore(self, workdir: str, model) -> Optional[dict]:
        return self.checkpoint.restore(workdir, model)

    def write_cycle(self, workdir: str, model, row: dict) -> None:
        self.checkpoint.write_cycle(workdir, model, row)

    def load_final_weights(self, model, path: str) -> None:
        """Loads the final weights an older tfimp kept for a finished dense or baseline run."""
        self.checkpoint.load_weights(model, path)

    def write_dir(self, workdir: str, model) -> str:
        """Where this process writes (the workdir; a scratch directory on the other workers of a cluster)."""
        return workdir

    def sync_workers(self, model) -> None:
        """A barrier between the workers of a cluster (nothing with one process)."""

    def end_of_run(self, workdir: str, model) -> None:
        """Cleans up what this process wrote outside the workdir's layout (a worker's scratch)."""

    def global_rng_state(self):
        """The backend's global generator, where Keras draws from it (torch), else ``None``."""
        return None

    def set_global_rng_state(self, state) -> None:
        """Puts back a :meth:`global_rng_state`."""


class ClaimsWorkdir:
    """The workdir claim of a run callback: taken at construction, released when training ends or by the runner."""

    workdir: Optional[str]
    _owns_lock = False

    def _claim(self, identity: dict, overwrite: bool, verbose: int) -> None:
        if self.workdir is not None:  # claimed now: a mismatch is refused before anything is written
            self._owns_lock = _workdir.acquire_and_claim(self.workdir, identity, overwrite, verbose)

    def release(self) -> None:
        """Gives up the workdir's lock (training's end does it; a runner does it when ``fit`` never ends well)."""
        if self._owns_lock:
            _workdir.release(self.workdir)
            self._owns_lock = False


def check_finite_epoch(ops: FrameworkOps, model, epoch: int, logs: Optional[dict], where: str,
                       saved_note: str) -> None:
    """Stops a run whose loss or weights stopped being finite, before anything of the epoch is saved."""
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
        model.stop_training = True
        raise FloatingPointError(f"loss became {loss} in epoch {epoch + 1}{where}; training stopped, {saved_note}. "
                                 "Lower the learning rate or check the data.")
    # A finite loss can hide weights a NaN gradient reached: nothing of such an epoch is saved or pruned.
    _masking.check_finite(ops.named_trainable_arrays(model), f"save epoch {epoch + 1}{where}")


class IMPDriver(_cycles.ResumableProgress, ClaimsWorkdir):
    """Runs an IMP (or BIMP, or one-shot) plan inside ``model.fit``: the body of ``tfimp.callbacks.IMP``.

    Example::

        plan = tfimp.Plan(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
        imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.StepDecay(0.1, [500, 750]), workdir="run")
        model = tfimp.wrap(model)
        model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
        model.fit(x, y, epochs=plan.total_epochs, initial_epoch=imp.restore(model), callbacks=[imp])
        imp.rows   # one dict per cycle

    Args:
      plan: the :class:`tfimp.Plan`; ``fit`` must run ``plan.total_epochs`` epochs.
      schedule: the original (dense) learning-rate schedule, in steps: a Keras
        schedule, a callable of the step, or a number. The dense phase follows
        it; the retraining schedules are built from it over
        ``plan.reference_epochs`` epochs. Default: the rate the model was
        compiled with (a schedule or a number).
      steps_per_epoch: needed only when ``fit`` cannot tell it (data of unknown length).
      test_data: evaluated at the end of each cycle (``test_*`` columns) and
        right after each pruning (``test_accuracy_pruned``, and
        ``test_accuracy_bn_reestimated`` after the re-estimation).
      recalibration_data: the training batches (or an ``(x, y)`` pair) from
        which BatchNorm statistics are re-estimated right after each pruning
        step when ``plan.recalibrate_bn`` is set (the default, as in the
        authors' runs).
      workdir: where to checkpoint every epoch (weights, masks, optimizer
        state, seed generators, rows) and write ``cycle_N/``,
        ``results.json`` and ``results.csv`` (:mod:`tfimp.core.workdir`);
        ``None`` keeps everything in memory. Call
        ``initial_epoch = imp.restore(model)`` before ``fit`` to resume.
      overwrite: remove whatever run ``workdir`` holds and start over.
      verbose: 0 silent, 1 one line per cycle and a final table.
      cycle_end_hooks: functions ``hook(model, row)`` called after each
        cycle's row (e.g. the CLI's model report and TensorBoard scalars).
      identity: more of what defines the run (the optimizer settings, the
        CLI's whole config), stored with the plan and the schedule in
        ``identity.json``; a later run in ``workdir`` with any difference is
        refused. The callback holds the workdir's lock from construction
        until training ends.
      chance_guard: stop with :class:`tfimp.core.guards.ChanceLevelError`
        when an epoch's training loss sits at ln(classes) (the network
        learned nothing), before that epoch is saved or pruned.

    The callback owns the learning rate: each phase's per-step rates are
    loaded once, when the phase begins, so nothing runs in Python per step
    (``steps_per_execution`` and ``jit_compile`` work). Another callback that
    sets the learning rate (``LearningRateScheduler``, ``ReduceLROnPlateau``,
    your own) is an error. A NaN or infinite loss or weight stops the run at
    the end of its epoch, before the checkpoint is written.

    Raises:
      IdentityMismatch: ``workdir`` holds a different run.
      WorkdirInUse: another live process holds ``workdir``.
    """

    ops: FrameworkOps

    def __init__(self, plan: Plan, *, schedule=None, steps_per_epoch: Optional[int] = None, test_data=None,
                 recalibration_data=None, workdir: Optional[str] = None, overwrite: bool = False, verbose: int = 1,
                 cycle_end_hooks: Sequence[Callable] = (), identity: Optional[dict] = None, chance_guard: bool = True):
        super().__init__()  # the Keras callback's own state
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a tfimp.Plan, got {type(plan).__name__}")
        self.plan, self.schedule, self.steps_per_epoch = plan, schedule, steps_per_epoch
        self.test_data, self.recalibration_data = test_data, recalibration_data
        self.workdir, self.verbose, self.chance_guard = workdir, verbose, bool(chance_guard)
        self.cycle_end_hooks = list(cycle_end_hooks)
        self.rows: list[dict] = []
        self._cycles: dict[int, dict] = {}  # per pruned cycle: target, initial_lr, norm drop, ...
        self._dense_norm_sq: Optional[float] = None  # ALLR's reference norm (since_dense)
        self._phase: Optional[int] = None
        self._phase_wall = 0.0
        self._epoch = 0
        self._epoch_start = 0.0
        self._original: Optional[_retraining.Original] = None
        self._installed_on = None  # the optimizer that runs the phase rates
        self._rate_handle = None
        self._rate_seen: Optional[float] = None
        self._restored_epoch: Optional[int] = None
        self._restored_global_rng = None
        self._claim({"plan": plan.to_dict(), "schedule": _workdir.describe(schedule),
                     **({"keras": self.ops.keras_major} if self.ops.keras_major else {}), **(identity or {})},
                    overwrite, verbose)

    # -- resume -------------------------------------------------------------------------

    def restore(self, model) -> int:
        """Loads the workdir's newest checkpoint into ``model`` (compiled) and this callback.

        Returns:
          The epoch to pass to ``fit`` as ``initial_epoch`` (0 without a checkpoint;
          ``plan.total_epochs`` for a finished run, so ``fit`` does nothing).
        """
        if self.workdir is None:
            return 0
        self._install_schedule(model)  # before reading: the checkpoint holds the optimizer as it runs
        self.ops.sync_workers(model)  # the chief has claimed the workdir
        saved = self.ops.restore(self.workdir, model)
        if saved is not None:
            # fit builds the model symbolically before on_train_begin, which on torch can draw from torch's
            # global generator: the restored state is put back there, right before the first step.
            self._restored_global_rng = self.ops.global_rng_state()
        return self._resume_from(saved, model)

    def _install_schedule(self, model) -> None:
        """Takes over the learning rate once per optimizer (the compiled rate is the default original schedule)."""
        optimizer = self.ops.optimizer(model)
        if self._installed_on is optimizer:
            return
        self.schedule, self._rate_handle = self.ops.take_over_learning_rate(model, self.schedule)
        self._installed_on = optimizer

    # -- fit hooks ------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.ops.set_global_rng_state(self._restored_global_rng)
        self._restored_global_rng = None
        epochs = self.params.get("epochs")
        if epochs != self.plan.total_epochs:
            raise ValueError(f"the IMP plan takes {self.plan.total_epochs} epochs (dense {self.plan.dense_epochs} + "
                             f"retraining {self.plan.cycle_epochs()}), but fit was called with epochs={epochs}")
        steps = self.params.get("steps") or self.steps_per_epoch
        if not steps:
            raise ValueError("cannot tell the steps per epoch from the data; pass steps_per_epoch to IMP")
        self.steps_per_epoch = int(steps)
        self._refuse_other_rate_setters()
        shapes = self.ops.prunable_shapes(self.model)
        if not shapes:
            raise ValueError("IMP needs a wrapped model: call `model = tfimp.wrap(model)` before compile")
        _masking.check_reachable(shapes, self.plan.target_sparsity, self.plan.criterion,
                                 self.plan.min_kept_per_layer, self.plan.structure)
        if isinstance(_structures.get(self.plan.structure), _structures.Channels):
            self.ops.hold_channels(self.model)
        self._install_schedule(self.model)
        if (self.verbose and self.plan.recalibrate_bn and self.recalibration_data is None
                and self.ops.has_batchnorm(self.model)):
            _notices.say("[tfimp] note: the plan re-estimates BatchNorm statistics after pruning, but no "
                         "recalibration_data was given; pass the training data as recalibration_data")
        if self.workdir is not None and self._restored_epoch is None:
            self.ops.sync_workers(self.model)
            saved = _checkpoint.load_state(self.workdir)
            if saved is not None:
                raise ValueError(f"workdir {self.workdir!r} holds a checkpoint at epoch {saved['next_epoch']}; "
                                 "call `initial_epoch = imp.restore(model)` and pass it to fit to resume")
        self._original = _retraining.Original(
            self.ops.tabulate(self.schedule, max(1, self.plan.reference_epochs) * self.steps_per_epoch),
            self.ops.warmup_steps_of(self.schedule))

    def _refuse_other_rate_setters(self) -> None:
        others = self.ops.other_rate_setters(self)
        if others is None:
            _notices.warn("tfimp could not find the other callbacks of this fit (a Keras change?), so it "
                          "cannot check that no LearningRateScheduler/ReduceLROnPlateau fights the IMP schedule")
        elif others:
            raise ValueError(
                f"{others[0]} sets the learning rate, and so does the IMP callback (the dense schedule, then each "
                "cycle's retraining schedule): remove it, and give its schedule to IMP as schedule= (a Keras "
                "LearningRateSchedule in steps)")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.perf_counter()
        current = self.ops.learning_rate(self.model)
        if self._rate_seen is not None and current != self._rate_seen:
            raise ValueError(
                f"something else set the learning rate between epochs ({self._rate_seen:.6g} -> {current:.6g}); "
                "the IMP callback owns it: remove the other learning-rate callback, or give its schedule to "
                "IMP as schedule=")
        phase = self.plan.phase_of(epoch)
        if phase == self._phase:
            return  # same phase, same learning-rate table
        start, _ = self.plan.phase_bounds(phase)
        if phase > 0 and epoch == start and phase not in self._cycles:
            self._prune(phase)
            # fit reset the metrics before this hook, and _prune's test evaluations filled them: the epoch's
            # train_* figures must count training batches only
            self.model.reset_metrics()
        self._phase = phase
        table = _cycles.phase_rates(self.plan, self._original, phase, self.steps_per_epoch, self._cycles.get(phase))
        start_step = self.ops.step(self.model) - (epoch - start) * self.steps_per_epoch
        self.ops.set_phase_rates(self.model, self._rate_handle, table, start_step,
                                 self.plan.retrain_schedule if phase else "dense")
        self._rate_seen = self.ops.learning_rate(self.model)
        if phase:
            # The rate the cycle starts from after its warm-up: its peak, for every built-in schedule.
            self._cycles[phase]["initial_lr"] = float(np.max(table))
            if self.verbose:
                print("\n".join(_cycles.announcement(self.plan, phase, self._cycles[phase])), flush=True)

    def on_epoch_end(self, epoch, logs=None):
        saved_note = (f"the last good checkpoint (epoch {self._epoch}) stays in {self.workdir!r}" if self.workdir
                      else "no workdir, nothing was saved")
        check_finite_epoch(self.ops, self.model, epoch, logs, f" (cycle {self._phase})", saved_note)
        if self.chance_guard:  # before any save: the last good checkpoint stays, no pruning follows
            _guards.check_epoch(self.model, logs or {}, epoch, f" (cycle {self._phase})")
        self._rate_seen = self.ops.learning_rate(self.model)
        if logs is not None:  # later callbacks (TensorBoard, CSVLogger) see these too
            logs["sparsity"] = self.ops.sparsity(self.model)
            logs["learning_rate"] = self._rate_seen
        self._phase_wall += time.perf_counter() - self._epoch_start
        start, length = self.plan.phase_bounds(self._phase)
        cycle_ends = epoch == start + length - 1
        out = None if self.workdir is None else self.ops.write_dir(self.workdir, self.model)
        if cycle_ends:
            self.rows.append(self._row(self._phase, dict(logs or {})))
            self._phase_wall = 0.0
            if out is not None:  # first: hooks may read cycle_N/ (the CLI's reporter does)
                self._write_cycle(self.model, self.rows[-1])
            for hook in self.cycle_end_hooks:
                hook(self.model, self.rows[-1])
        if out is not None:
            self.ops.save(out, self.model, self._progress_state(epoch + 1))
            if cycle_ends:
                _results.write_results(out, self.rows, {"plan": self.plan.to_dict()})

    def _write_cycle(self, model, row: dict) -> None:
        self.ops.write_cycle(self.ops.write_dir(self.workdir, model), model, row)

    def on_train_end(self, logs=None):
        if self.workdir is not None:
            self.ops.end_of_run(self.workdir, self.model)
        self.release()
        if self.verbose and len(self.rows) == self.plan.cycles + (self.plan.dense_epochs > 0):
            print("[tfimp] IMP finished:\n" + _results.format_table(self.rows), flush=True)

    # -- the work ---------------------------------------------------------------------------

    def _prune(self, cycle: int) -> None:
        """Prunes to the cycle's target and records what ALLR and the rows need."""
        ops, model = self.ops, self.model
        # Only the per-cycle norm drop needs the pruned values themselves.
        alive_before, weights_before = ops.masks_and_weights(model, self.plan.allr_norm_drop == "this_cycle")
        norm_sq_before = _squared_norm(ops.named_trainable_arrays(model))
        if self._dense_norm_sq is None:  # theta_0: the model before the first pruning
            self._dense_norm_sq = norm_sq_before
        target = self.plan.sparsity_after(cycle)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="tfimp.prune: pruning .* removed every weight")
            layer_sparsities = ops.prune(model, target, self.plan.criterion, self.plan.min_kept_per_layer,
                                         self.plan.structure)
        emptied = _masking.emptied_layers(layer_sparsities)
        if emptied:  # said once here, with the cycle, and kept in the cycle's row
            _notices.warn(_cycles.collapse_warning(cycle, target, emptied))
        record = self._cycles[cycle] = _cycles.pruning_record(
            self.plan, cycle, eta_max=self._original.eta_max, alive_before=alive_before,
            alive_after=ops.masks_and_weights(model, False)[0], weights_before=weights_before,
            norm_sq_before=norm_sq_before, norm_sq_after=_squared_norm(ops.named_trainable_arrays(model)),
            dense_norm_sq=self._dense_norm_sq, emptied=emptied)
        if _cycles.resets_optimizer(self.plan, cycle):
            ops.reset_optimizer_state(model)
        # The paper's pruned-accuracy curves: right after pruning, and after BatchNorm re-estimation.
        if self.test_data is not None:
            record["test_accuracy_pruned"] = _results.loss_and_accuracy(ops.evaluate(model, self.test_data))[1]
        reestimate = self.plan.recalibrate_bn and self.recalibration_data is not None
        if reestimate and ops.reestimate_batchnorm(model, self.recalibration_data) and self.test_data is not None:
            record["test_accuracy_bn_reestimated"] = _results.loss_and_accuracy(
                ops.evaluate(model, self.test_data))[1]

    def _row(self, phase: int, logs: dict) -> dict:
        record = self._cycles.get(phase, {})
        test = self.ops.evaluate(self.model, self.test_data) if self.test_data is not None else None
        settings = _cycles.row_settings(self.plan, phase, record, self._original.values.max(), self.steps_per_epoch,
                                        self._phase_wall)
        row = _cycles.finish_row(
            _results.make_row(logs, sparsity=self.ops.sparsity(self.model), test_metrics=test, **settings), record)
        return _with_structure(row, self.plan.structure, self.ops, self.model)


class EpochRunDriver(ClaimsWorkdir):
    """A one-``fit`` run's workdir: per-epoch checkpoints, exact resume, its rows, ``cycle_N/``.

    Every epoch is checkpointed (weights, masks, optimizer, the rows, the
    run's wall time) in the IMP callback's layout, so :meth:`restore`
    resumes exactly; after the last epoch the final row's cycle is written
    as ``cycle_N/`` and the rows as ``results.json``. Subclasses say which
    rows an epoch adds (:meth:`_rows_after`); the dense run and the
    pruning-during-training runs are two of them.
    """

    ops: FrameworkOps

    def __init__(self, epochs: int, steps_per_epoch: int, *, test_data=None, workdir: Optional[str] = None,
                 overwrite: bool = False, verbose: int = 1, identity: Optional[dict] = None,
                 metadata: Optional[dict] = None):
        super().__init__()  # the Keras callback's own state
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self.test_data, self.workdir, self.verbose = test_data, workdir, verbose
        self.metadata = dict(metadata or {})
        self.rows: list[dict] = []
        self._wall = 0.0
        self._epoch_start = 0.0
        self._restored_epoch: Optional[int] = None
        self._restored_global_rng = None
        self._claim({**({"keras": self.ops.keras_major} if self.ops.keras_major else {}), **(identity or {})},
                    overwrite, verbose)

    def restore(self, model) -> int:
        """Loads the workdir's newest checkpoint into ``model`` (compiled); returns the epoch ``fit`` starts at."""
        if self.workdir is None:
            return 0
        self.ops.sync_workers(model)  # the chief has claimed the workdir
        if (_checkpoint.load_state(self.workdir) or {}).get("finished"):
            self._restored_finished(model)  # before reading: the saved weights are the finished model's
        saved = self.ops.restore(self.workdir, model)
        if saved is None:
            saved = self._older_finished_run(model)
        self._restored_epoch = 0 if saved is None else int(saved["next_epoch"])
        if saved is not None:
            self._restored_global_rng = self.ops.global_rng_state()  # re-applied after fit's symbolic build
            self.rows, self._wall = list(saved["rows"]), float(saved["wall_s"])
            if self.finished:
                if _workdir.is_chief():  # the end of the run: its cycle and results can be written again
                    _checkpoint.check_outputs(
                        self.workdir, self.rows, self.metadata, finished=True,
                        restorable_cycle=self.rows[-1]["cycle"],
                        rewrite_cycle=lambda row: self.ops.write_cycle(self.workdir, model, row))
            elif self.verbose:
                print(f"[tfimp] resuming from {self.workdir!r} at epoch {self._restored_epoch + 1}/{self.epochs}",
                      flush=True)
        return self._restored_epoch

    def _older_finished_run(self, model) -> Optional[dict]:
        """A run an older tfimp finished (its final weights and rows, no checkpoint) as a restored state."""
        final = _workdir.path(self.workdir, _workdir.FINAL_WEIGHTS)
        rows = _results.load_results(self.workdir)
        if not rows or not _storage.exists(final) or rows[-1]["cycle"] != self._last_cycle():
            return None
        self._restored_finished(model)  # the saved weights are the finished model's
        try:
            self.ops.load_final_weights(model, final)
        except (OSError, ValueError, IndexError, KeyError) as error:
            raise _storage.damaged(final, f"{type(error).__name__}: {error}") from None
        return {"next_epoch": self.epochs, "rows": rows, "wall_s": sum(row.get("wall_s") or 0 for row in rows)}

    def _last_cycle(self) -> int:
        """The ``cycle`` of a finished run's last row."""
        return self.epochs

    def _restored_finished(self, model) -> None:
        """Brings a model to the state a finished run ended in, before its saved weights are read (nothing by
        default)."""

    @property
    def finished(self) -> bool:
        return self._restored_epoch is not None and self._restored_epoch >= self.epochs

    def on_train_begin(self, logs=None):
        self.ops.set_global_rng_state(self._restored_global_rng)
        self._restored_global_rng = None
        if self.params.get("epochs") != self.epochs:
            raise ValueError(f"the run takes {self.epochs} epochs, but fit was called with "
                             f"epochs={self.params.get('epochs')}")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        epoch_wall = time.perf_counter() - self._epoch_start
        self._wall += epoch_wall
        last = epoch + 1 == self.epochs
        if last:
            self._before_final_row()
        test = self.ops.evaluate(self.model, self.test_data) if last and self.test_data is not None else None
        self.rows = [row for row in self.rows if row["cycle"] <= epoch]  # a resumed epoch's row, once
        self.rows += self._rows_after(epoch, dict(logs or {}), test, epoch_wall, last)
        if self.workdir is None:
            return
        out = self.ops.write_dir(self.workdir, self.model)
        if last:
            self.ops.write_cycle(out, self.model, self.rows[-1])
        self.ops.save(out, self.model, {"next_epoch": epoch + 1, "rows": self.rows, "wall_s": self._wall,
                                        "finished": last})
        if last:
            _results.write_results(out, self.rows, self.metadata)

    def _before_final_row(self) -> None:
        """Makes the model final before the last row measures it (nothing by default)."""

    def _rows_after(self, epoch: int, logs: dict, test: Optional[dict], epoch_wall: float, last: bool) -> list:
        """The rows epoch ``epoch`` adds (``test``: the test metrics, after the last epoch only)."""
        raise NotImplementedError

    def on_train_end(self, logs=None):
        if self.workdir is not None:
            self.ops.end_of_run(self.workdir, self.model)
        self.release()


class DenseRunDriver(EpochRunDriver):
    """A dense run's one row (cycle 0, ``schedule="dense"``), made after the last epoch.

    ``initial_lr`` is the dense schedule's peak rate, as in an IMP run's dense row.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, *, initial_lr: float, test_data=None,
                 workdir: Optional[str] = None, overwrite: bool = False, verbose: int = 1,
                 identity: Optional[dict] = None):
        self.initial_lr = float(initial_lr)
        super().__init__(epochs, steps_per_epoch, test_data=test_data, workdir=workdir, overwrite=overwrite,
                    verbose=verbose, identity={"method": "dense", "epochs": int(epochs), **(identity or {})},
                    metadata={"method": "dense"})

    def _last_cycle(self) -> int:
        return 0

    def _rows_after(self, epoch: int, logs: dict, test: Optional[dict], epoch_wall: float, last: bool) -> list:
        if not last:
            return []
        return [_results.make_row(logs, sparsity=self.ops.sparsity(self.model), test_metrics=test, cycle=0,
                                  target=0.0, schedule="dense", initial_lr=self.initial_lr, epochs=self.epochs,
                                  steps=self.epochs * self.steps_per_epoch, wall_s=self._wall)]


def _with_structure(row: dict, structure: str, ops: FrameworkOps, model) -> dict:
    """A structured run's row names its structure and its sparsity in the structure's unit (``cycle_N/report.json``
    counts in it too); an unstructured row keeps the columns it always had."""
    if _structures.is_structured(structure):
        row["structure"] = structure
        row["unit_sparsity"] = ops.sparsity(model, structure)
    return row


def _squared_norm(named_arrays: Iterable[tuple[str, np.ndarray]]) -> float:
    return sum(float(np.sum(np.square(values, dtype=np.float64))) for _, values in named_arrays)


class DuringTrainingRunDriver(EpochRunDriver):
    """One row per epoch of a pruning-during-training run (``cycle`` = epoch number; test metrics on the last).

    The reparametrised methods (DPF, STR) are finalized (exact masks, the
    forward pass's weights baked in) before the last row measures the
    model, so the last checkpoint and ``cycle_E/`` hold the final model. A
    front end's subclass supplies :meth:`_finalize` and
    :meth:`_forward_sparsity`.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, steps_per_epoch: int, *,
                 criterion: Optional[str], test_data=None, workdir: Optional[str] = None, overwrite: bool = False,
                 verbose: int = 1, identity: Optional[dict] = None, structure: str = "unstructured"):
        self.method, self.target_sparsity, self.criterion = method, float(target_sparsity), criterion
        self.structure = _structures.name_of(structure)
        super().__init__(epochs, steps_per_epoch, test_data=test_data, workdir=workdir, overwrite=overwrite,
                    verbose=verbose, identity=identity, metadata={"method": method})

    def _finalize(self, model, bake: bool) -> None:
        raise NotImplementedError

    def _forward_sparsity(self, model) -> float:
        """The sparsity the forward pass sees now (STR: zeros of the soft-thresholded weights)."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if isinstance(_structures.get(self.structure), _structures.Channels) and self.ops.prunable_shapes(self.model):
            self.ops.hold_channels(self.model)

    def _restored_finished(self, model) -> None:
        self._finalize(model, bake=False)  # the saved weights are baked already

    def _before_final_row(self) -> None:
        self._finalize(self.model, bake=True)

    def _rows_after(self, epoch: int, logs: dict, test: Optional[dict], epoch_wall: float, last: bool) -> list:
        row = _results.make_row(
            logs, sparsity=self._forward_sparsity(self.model), test_metrics=test, cycle=epoch + 1,
            target=self.target_sparsity, schedule=self.method, initial_lr=self.ops.learning_rate(self.model),
            epochs=1, steps=self.steps_per_epoch, wall_s=epoch_wall, criterion=self.criterion)
        return [_with_structure(row, self.structure, self.ops, self.model)]
