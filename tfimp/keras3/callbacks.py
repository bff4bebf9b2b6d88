"""The IMP callback on Keras 3: an IMP/BIMP/one-shot plan inside Keras 3's own ``model.fit``, on every backend.

The same contract as the tf_keras ``tfimp.callbacks.IMP``: it prunes at
cycle boundaries (exactly, :func:`tfimp.prune`), owns the optimizer's
learning rate (the dense schedule, then each cycle's retraining schedule,
ALLR's initial rate from the norm the pruning removed), resets or keeps
the optimizer state by the plan, and records one row per cycle
(:mod:`tfimp.core.results`). ``tfimp.callbacks`` is this module in a Keras 3
process.

How the rate gets into the traced step: each phase's rates become a
:class:`tfimp.lr.Tabulated` schedule (a constant of the trace), and the
train function is rebuilt once per phase (``make_train_function(force=True)``),
so nothing runs in Python per step, with ``jit_compile`` and
``steps_per_execution`` too.

With ``workdir=``, every epoch is checkpointed (weights, masks, optimizer
state, seed generators, rows) and each finished cycle written as
``cycle_N/``, in the tf_keras front end's layout; ``imp.restore(model)``
resumes exactly.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Optional, Sequence

import keras
import numpy as np

from tfimp.keras3 import _private
from tfimp.core import checkpoint as _core_checkpoint
from tfimp.core import cycles as _cycles
from tfimp.core import guards as _guards
from tfimp.core import masking as _masking
from tfimp.core import notices as _notices
from tfimp.core import results as _results
from tfimp.core import workdir as _workdir
from tfimp.core.plan import Plan
from tfimp.keras3 import batchnorm as _batchnorm
from tfimp.keras3 import checkpoint as _checkpoint
from tfimp.keras3 import lr as _lr
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import optimizers as _optimizers


class ChanceGuard(keras.callbacks.Callback):
    """:func:`tfimp.core.guards.check_epoch` at the end of every epoch, for runs without the IMP callback."""

    def on_epoch_end(self, epoch, logs=None):
        _guards.check_epoch(self.model, logs or {}, epoch)


class _ClaimsWorkdir:
    """The workdir claim both run callbacks hold: taken at construction, released by training's end or the runner."""

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


class EpochRun(keras.callbacks.Callback, _ClaimsWorkdir):
    """A one-``fit`` run's workdir on Keras 3: per-epoch checkpoints, exact resume, its rows, ``cycle_N/``.

    Every epoch is checkpointed (weights, masks, optimizer, seed generators,
    the rows, the run's wall time) in the IMP callback's layout, so
    :meth:`restore` resumes exactly; after the last epoch the final row's
    cycle is written as ``cycle_N/`` and the rows as ``results.json``.
    Subclasses say which rows an epoch adds (:meth:`_rows_after`); the
    dense run and the pruning-during-training runs are two of them.

    Args:
      epochs: the run's epochs (``fit`` must run as many).
      steps_per_epoch: batches per epoch (the rows' ``steps``).
      test_data: evaluated after the last epoch (``test_*`` columns).
      workdir, overwrite, verbose: as for :class:`IMP`.
      identity: what defines the run, for ``identity.json``.
      metadata: written beside the rows in ``results.json``.

    Raises:
      IdentityMismatch: ``workdir`` holds a different run.
      WorkdirInUse: another live process holds ``workdir``.
    """

    def __init__(self, epochs: int, steps_per_epoch: int, *, test_data=None, workdir: Optional[str] = None,
                 overwrite: bool = False, verbose: int = 1, identity: Optional[dict] = None,
                 metadata: Optional[dict] = None):
        super().__init__()
        self.epochs, self.steps_per_epoch = int(epochs), int(steps_per_epoch)
        self.test_data, self.workdir, self.verbose = test_data, workdir, verbose
        self.metadata = dict(metadata or {})
        self.rows: list[dict] = []
        self._wall = 0.0
        self._epoch_start = 0.0
        self._restored_epoch: Optional[int] = None
        self._restored_global_rng = None
        self._claim({"keras": keras.__version__.split(".")[0], **(identity or {})}, overwrite, verbose)

    def restore(self, model: keras.Model) -> int:
        """Loads the workdir's newest checkpoint into ``model`` (compiled); returns the epoch ``fit`` starts at."""
        if self.workdir is None:
            return 0
        saved = _checkpoint.restore(self.workdir, model)
        self._restored_epoch = 0 if saved is None else int(saved["next_epoch"])
        if saved is not None:
            self._restored_global_rng = _checkpoint.global_rng_state()  # re-applied after fit's symbolic build
            self.rows, self._wall = list(saved["rows"]), float(saved["wall_s"])
            if self.finished:  # the checkpoint is the end of the run: its cycle and results can be written again
                _core_checkpoint.check_outputs(
                    self.workdir, self.rows, self.metadata, finished=True, restorable_cycle=self.rows[-1]["cycle"],
                    rewrite_cycle=lambda row: _checkpoint.write_cycle(self.workdir, model, row))
            if self.verbose and not self.finished:
                print(f"[tfimp] resuming from {self.workdir!r} at epoch {self._restored_epoch + 1}/{self.epochs}",
                      flush=True)
        return self._restored_epoch

    @property
    def finished(self) -> bool:
        return self._restored_epoch is not None and self._restored_epoch >= self.epochs

    def on_train_begin(self, logs=None):
        _checkpoint.set_global_rng_state(self._restored_global_rng)
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
        test = _evaluate(self.model, self.test_data) if last and self.test_data is not None else None
        self.rows = [row for row in self.rows if row["cycle"] <= epoch]  # a resumed epoch's row, once
        self.rows += self._rows_after(epoch, dict(logs or {}), test, epoch_wall, last)
        if self.workdir is None:
            return
        if last:
            _checkpoint.write_cycle(self.workdir, self.model, self.rows[-1])
        _checkpoint.save(self.workdir, self.model, {"next_epoch": epoch + 1, "rows": self.rows,
                                                    "wall_s": self._wall, "finished": last})
        if last:
            _results.write_results(self.workdir, self.rows, self.metadata)

    def _rows_after(self, epoch: int, logs: dict, test: Optional[dict], epoch_wall: float, last: bool) -> list:
        """The rows epoch ``epoch`` adds (``test``: the test metrics, after the last epoch only)."""
        raise NotImplementedError

    def on_train_end(self, logs=None):
        self.release()


class DenseRun(EpochRun):
    """A dense run's workdir and its one row on Keras 3 (what :class:`tfimp.Dense` runs ``fit`` with).

    An :class:`EpochRun` whose one row (cycle 0, ``schedule="dense"``) is
    made after the last epoch.

    Args:
      epochs, steps_per_epoch, test_data, workdir, overwrite, verbose, identity: as for :class:`EpochRun`.
      initial_lr: the dense schedule's first rate (the row's ``initial_lr``).
    """

    def __init__(self, epochs: int, steps_per_epoch: int, *, initial_lr: float, test_data=None,
                 workdir: Optional[str] = None, overwrite: bool = False, verbose: int = 1,
                 identity: Optional[dict] = None):
        self.initial_lr = float(initial_lr)
        super().__init__(epochs, steps_per_epoch, test_data=test_data, workdir=workdir, overwrite=overwrite,
                         verbose=verbose, identity={"method": "dense", "epochs": int(epochs), **(identity or {})},
                         metadata={"method": "dense"})

    def _rows_after(self, epoch: int, logs: dict, test: Optional[dict], epoch_wall: float, last: bool) -> list:
        if not last:
            return []
        return [_results.make_row(logs, sparsity=_masks.sparsity(self.model), test_metrics=test, cycle=0, target=0.0,
                                  schedule="dense", initial_lr=self.initial_lr, epochs=self.epochs,
                                  steps=self.epochs * self.steps_per_epoch, wall_s=self._wall)]


class IMP(keras.callbacks.Callback, _cycles.ResumableProgress, _ClaimsWorkdir):
    """Runs an IMP plan inside Keras 3's ``model.fit`` (see the tf_keras ``tfimp.callbacks.IMP``).

    Example::

        plan = tfimp.Plan(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
        imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.StepDecay(0.1, [500, 750]))
        model = tfimp.wrap(model)
        model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
        model.fit(x, y, epochs=plan.total_epochs, callbacks=[imp])
        imp.rows   # one dict per cycle

    Args:
      plan: the :class:`tfimp.Plan`; ``fit`` must run ``plan.total_epochs`` epochs.
      schedule: the original (dense) learning-rate schedule, in steps (a
        Keras schedule, a callable of the step, or a number); default: the
        rate the model was compiled with.
      steps_per_epoch: needed only when ``fit`` cannot tell it.
      test_data: evaluated at the end of each cycle (``test_*`` columns) and
        right after each pruning (``test_accuracy_pruned``, and
        ``test_accuracy_bn_reestimated`` after the re-estimation).
      recalibration_data: the training batches (or an ``(x, y)`` pair) from
        which BatchNorm statistics are re-estimated right after each pruning
        step when ``plan.recalibrate_bn`` is set (:func:`tfimp.batchnorm.reestimate`).
      workdir: where to checkpoint every epoch (weights, masks, optimizer,
        rows) and write ``cycle_N/``, ``results.json`` and ``results.csv``
        (the tf_keras layout, :mod:`tfimp.core.workdir`); ``None`` keeps
        everything in memory. Call ``initial_epoch = imp.restore(model)``
        before ``fit`` to resume.
      overwrite: remove whatever run ``workdir`` holds and start over.
      verbose: 0 silent, 1 one line per cycle and a final table.
      cycle_end_hooks: functions ``hook(model, row)`` called after each cycle's row.
      identity: more of what defines the run, stored in ``identity.json``; a
        later run in ``workdir`` with any difference is refused. The callback
        holds the workdir's lock from construction until training ends.
      chance_guard: stop with :class:`tfimp.core.guards.ChanceLevelError` when
        an epoch's training loss sits at ln(classes) (the network learned
        nothing), before that epoch is saved or pruned.

    Raises:
      IdentityMismatch: ``workdir`` holds a different run.
      WorkdirInUse: another live process holds ``workdir``.
    """

    def __init__(self, plan: Plan, *, schedule: Optional[_lr.Schedule] = None, steps_per_epoch: Optional[int] = None,
                 test_data=None, recalibration_data=None, workdir: Optional[str] = None, overwrite: bool = False,
                 verbose: int = 1, cycle_end_hooks: Sequence[Callable] = (), identity: Optional[dict] = None,
                 chance_guard: bool = True):
        super().__init__()
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a tfimp.Plan, got {type(plan).__name__}")
        self.plan = plan
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.test_data = test_data
        self.recalibration_data = recalibration_data
        self.verbose = verbose
        self.cycle_end_hooks = list(cycle_end_hooks)
        self.chance_guard = bool(chance_guard)
        self.rows: list[dict] = []
        self._cycles: dict[int, dict] = {}
        self._dense_norm_sq: Optional[float] = None
        self._phase: Optional[int] = None
        self._phase_wall = 0.0
        self._epoch_start = 0.0
        self._original: Optional[_lr.Original] = None
        self._installed_on = None
        self._restored_epoch: Optional[int] = None
        self._restored_global_rng = None
        self.workdir = workdir
        self._claim({"plan": plan.to_dict(), "schedule": _workdir.describe(schedule),
                     "keras": keras.__version__.split(".")[0], **(identity or {})}, overwrite, verbose)

    # -- resume ---------------------------------------------------------------

    def restore(self, model: keras.Model) -> int:
        """Loads the workdir's newest checkpoint into ``model`` (compiled) and this callback.

        Returns:
          The epoch to pass to ``fit`` as ``initial_epoch`` (0 without a checkpoint;
          ``plan.total_epochs`` for a finished run, so ``fit`` does nothing).
        """
        if self.workdir is None:
            return 0
        self._install_schedule(model)  # before reading: the save holds the optimizer as it runs
        saved = _checkpoint.restore(self.workdir, model)
        if saved is not None:
            # fit builds the model symbolically before on_train_begin, which on torch can draw from torch's
            # global generator: the restored state is put back there, right before the first step.
            self._restored_global_rng = _checkpoint.global_rng_state()
        return self._resume_from(saved, model)

    def _install_schedule(self, model: keras.Model) -> None:
        """Takes over the learning rate once per optimizer: reads the compiled one (the default original
        schedule) and puts a tabulated schedule in its place (so saves list the same optimizer variables)."""
        if model.optimizer is None:
            raise ValueError("compile the model before IMP runs: it drives the compiled optimizer's learning rate")
        optimizer = _optimizers.unwrapped(model.optimizer)
        if self._installed_on is optimizer:
            return
        if self.schedule is None:
            compiled = _private.optimizer_learning_rate(optimizer)  # the schedule object, which has no public getter
            if isinstance(compiled, _lr.Tabulated):
                raise ValueError("the optimizer runs another IMP callback's schedule; compile a fresh optimizer "
                                 "or pass schedule= (the original dense schedule)")
            self.schedule = (compiled if isinstance(compiled, keras.optimizers.schedules.LearningRateSchedule)
                             else float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        optimizer.learning_rate = _lr.Tabulated(_lr.tabulate(self.schedule, 1), name="dense")
        self._installed_on = optimizer

    # -- fit hooks --------------------------------------------------------------

    def on_train_begin(self, logs=None):
        _checkpoint.set_global_rng_state(self._restored_global_rng)
        self._restored_global_rng = None
        epochs = self.params.get("epochs")
        if epochs != self.plan.total_epochs:
            raise ValueError(
                f"the IMP plan takes {self.plan.total_epochs} epochs (dense {self.plan.dense_epochs} + "
                f"retraining {self.plan.cycle_epochs()}), but fit was called with epochs={epochs}")
        steps = self.params.get("steps") or self.steps_per_epoch
        if not steps:
            raise ValueError("cannot tell the steps per epoch from the data; pass steps_per_epoch to IMP")
        self.steps_per_epoch = int(steps)
        if not _masks.prunable_kernels(self.model):
            raise ValueError("IMP needs a wrapped model: call `model = tfimp.wrap(model)` before compile")
        _masking.check_reachable([k.shape for k in _masks.prunable_kernels(self.model)], self.plan.target_sparsity,
                                 self.plan.criterion, self.plan.min_kept_per_layer)
        self._install_schedule(self.model)
        if self.workdir is not None and self._restored_epoch is None:
            saved = _checkpoint.load_state(self.workdir)
            if saved is not None:
                raise ValueError(f"workdir {self.workdir!r} holds a checkpoint at epoch {saved['next_epoch']}; "
                                 "call `initial_epoch = imp.restore(model)` and pass it to fit to resume")
        self._original = _lr.Original(
            _lr.tabulate(self.schedule, max(1, self.plan.reference_epochs) * self.steps_per_epoch),
            _lr.warmup_steps_of(self.schedule))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        phase = self.plan.phase_of(epoch)
        if phase == self._phase:
            return
        start, _ = self.plan.phase_bounds(phase)
        if phase > 0 and epoch == start and phase not in self._cycles:
            self._prune(phase)
            # fit reset the metrics before this hook, and _prune's test evaluations filled them: the epoch's
            # train_* figures must count training batches only
            self.model.reset_metrics()
        self._phase = phase
        optimizer = _optimizers.unwrapped(self.model.optimizer)
        step_now = int(keras.ops.convert_to_numpy(optimizer.iterations))
        table = self._phase_table(phase)
        optimizer.learning_rate = _lr.Tabulated(table, start_step=step_now - (epoch - start) * self.steps_per_epoch,
                                                name=self.plan.retrain_schedule if phase else "dense")
        self.model.make_train_function(force=True)  # the new table is a constant of the new trace
        if phase:
            self._cycles[phase]["initial_lr"] = float(np.max(table))
            self._announce(phase)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise FloatingPointError(f"loss became {loss} in epoch {epoch + 1} (cycle {self._phase}); training "
                                     "stopped. Lower the learning rate or check the data.")
        # A finite loss can hide weights a NaN gradient reached: nothing of such an epoch is saved or pruned.
        _masking.check_finite(((v.path, keras.ops.convert_to_numpy(v.value)) for v in self.model.trainable_weights),
                              f"save epoch {epoch + 1} (cycle {self._phase})")
        if self.chance_guard:  # before any save: the last good checkpoint stays, no pruning follows
            _guards.check_epoch(self.model, logs or {}, epoch, f" (cycle {self._phase})")
        rate = float(keras.ops.convert_to_numpy(_optimizers.unwrapped(self.model.optimizer).learning_rate))
        if logs is not None:
            logs["sparsity"] = _masks.sparsity(self.model)
            logs["learning_rate"] = rate
        self._phase_wall += time.perf_counter() - self._epoch_start
        start, length = self.plan.phase_bounds(self._phase)
        if epoch == start + length - 1:
            self.rows.append(self._row(self._phase, dict(logs or {})))
            self._phase_wall = 0.0
            if self.workdir is not None:  # first: hooks may read cycle_N/
                self._write_cycle(self.model, self.rows[-1])
            for hook in self.cycle_end_hooks:
                hook(self.model, self.rows[-1])
        if self.workdir is not None:
            _checkpoint.save(self.workdir, self.model, self._progress_state(epoch + 1))
            if epoch == start + length - 1:
                _results.write_results(self.workdir, self.rows, {"plan": self.plan.to_dict()})

    def _write_cycle(self, model: keras.Model, row: dict) -> None:
        _checkpoint.write_cycle(self.workdir, model, row)

    def on_train_end(self, logs=None):
        self.release()
        if self.verbose and len(self.rows) == self.plan.cycles + (self.plan.dense_epochs > 0):
            print("[tfimp] IMP finished:\n" + _results.format_table(self.rows), flush=True)

    # -- the work ---------------------------------------------------------------

    def _prune(self, cycle: int) -> None:
        kernels = _masks.prunable_kernels(self.model)
        _masks._sync_training_state(self.model)
        alive_before = [keras.ops.convert_to_numpy(k.mask.value) != 0 for k in kernels]
        weights_before = ([keras.ops.convert_to_numpy(k.weight.value) for k in kernels]
                          if self.plan.allr_norm_drop == "this_cycle" else None)
        norm_sq_before = _squared_norm(self.model.trainable_variables)
        if self._dense_norm_sq is None:
            self._dense_norm_sq = norm_sq_before
        target = self.plan.sparsity_after(cycle)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="tfimp.prune: pruning .* removed every weight")
            layer_sparsities = _masks.prune(self.model, target, criterion=self.plan.criterion,
                                            min_kept_per_layer=self.plan.min_kept_per_layer)
        emptied = _masking.emptied_layers(layer_sparsities)
        if emptied:
            _notices.warn(_cycles.collapse_warning(cycle, target, emptied))
        self._cycles[cycle] = _cycles.pruning_record(
            self.plan, cycle, eta_max=self._original.eta_max, alive_before=alive_before,
            alive_after=[keras.ops.convert_to_numpy(k.mask.value) != 0 for k in kernels],
            weights_before=weights_before, norm_sq_before=norm_sq_before,
            norm_sq_after=_squared_norm(self.model.trainable_variables), dense_norm_sq=self._dense_norm_sq,
            emptied=emptied)
        if _cycles.resets_optimizer(self.plan, cycle):
            _reset_optimizer_state(self.model.optimizer)
        record = self._cycles[cycle]
        if self.test_data is not None:
            record["test_accuracy_pruned"] = _results.loss_and_accuracy(_evaluate(self.model, self.test_data))[1]
        reestimate = self.plan.recalibrate_bn and self.recalibration_data is not None
        if reestimate and _batchnorm.reestimate(self.model, self.recalibration_data) and self.test_data is not None:
            record["test_accuracy_bn_reestimated"] = _results.loss_and_accuracy(
                _evaluate(self.model, self.test_data))[1]

    def _announce(self, cycle: int) -> None:
        if self.verbose:
            print("\n".join(_cycles.announcement(self.plan, cycle, self._cycles[cycle])), flush=True)

    def _phase_table(self, phase: int) -> np.ndarray:
        return _cycles.phase_rates(self.plan, self._original, phase, self.steps_per_epoch, self._cycles.get(phase))

    def _row(self, phase: int, logs: dict) -> dict:
        record = self._cycles.get(phase, {})
        test = _evaluate(self.model, self.test_data) if self.test_data is not None else None
        settings = _cycles.row_settings(self.plan, phase, record, self._original.values.max(), self.steps_per_epoch,
                                        self._phase_wall)
        return _cycles.finish_row(
            _results.make_row(logs, sparsity=_masks.sparsity(self.model), test_metrics=test, **settings), record)


#: Batch size of the test evaluations of ``(x, y)`` arrays. Keras' default of 32 made each of the
#: fidelity protocol's nine evaluations take 1.2 s on the TensorFlow backend, 0.5 s at 256; the
#: batch size does not change the metrics (BatchNorm runs in inference mode).
EVALUATION_BATCH_SIZE = 256


def _evaluate(model: keras.Model, data) -> dict:
    """``model.evaluate`` of a dataset, a ``PyDataset`` or an ``(x, y)`` pair, as a dict."""
    if isinstance(data, tuple) and len(data) == 2:
        return model.evaluate(data[0], data[1], batch_size=EVALUATION_BATCH_SIZE, verbose=0, return_dict=True)
    return model.evaluate(data, verbose=0, return_dict=True)


def _reset_optimizer_state(optimizer) -> None:
    """Zeroes the optimizer's slots (momentum, ...); keeps its step counter and the current rate."""
    optimizer = _optimizers.unwrapped(optimizer)
    keep = {id(optimizer.iterations)}
    keep.update(id(v) for v in optimizer.variables if "learning_rate" in v.path)
    for variable in optimizer.variables:
        if id(variable) not in keep:
            variable.assign(keras.ops.zeros_like(variable.value))


def _squared_norm(variables) -> float:
    return sum(float(np.sum(np.square(keras.ops.convert_to_numpy(v.value), dtype=np.float64))) for v in variables)
