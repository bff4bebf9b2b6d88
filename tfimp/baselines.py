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

import os
import time
from typing import Optional, Sequence

import numpy as np

from tfimp import callbacks as _callbacks
from tfimp import checkpoint as _checkpoint
from tfimp import criteria as _criteria
from tfimp import pruning as _pruning
from tfimp import tfmot_glue
from tfimp._backend import keras
from tfimp.imp import _Trainer, final_weights_path

METHODS = ("gmp", "tfmot_gmp", "dpf", "str")


def cubic_sparsity(step: int, target: float, begin: int, end: int) -> float:
    """Zhu & Gupta's ramp: 0 before ``begin``, ``target`` from ``end`` on, cubic between."""
    if step <= begin:
        return 0.0
    if step >= end:
        return float(target)
    return float(target - target * (1.0 - (step - begin) / (end - begin)) ** 3)


class GradualPruning(keras.callbacks.Callback):
    """Prunes along the cubic ramp every ``frequency`` steps (GMP; DPF with ``dpf=True``).

    Args:
      target_sparsity: S, reached at ``end_step`` and exactly at the end of training.
      begin_step, end_step: the ramp, in optimizer steps.
      frequency: steps between mask updates (Zhu & Gupta: 100; DPF: 16).
      criterion: tfimp criterion for each mask update.
      dpf: recompute masks from the dense weights (pruned weights may return)
        without zeroing them; the model must be wrapped with
        ``ReparamPruneLowMagnitude(reparam="dpf")``.
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int, frequency: int = 100,
                 criterion: str = "global", dpf: bool = False):
        super().__init__()
        if not 0.0 < target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
        if frequency < 1 or not 0 <= begin_step <= end_step:
            raise ValueError(f"need frequency >= 1 and 0 <= begin_step <= end_step, got {frequency}, "
                             f"{begin_step}, {end_step}")
        _criteria.get(criterion)
        self.target_sparsity = float(target_sparsity)
        self.begin_step, self.end_step, self.frequency = int(begin_step), int(end_step), int(frequency)
        self.criterion = criterion
        self.dpf = dpf
        self._step = 0

    def on_train_begin(self, logs=None):
        self._step = int(keras.backend.get_value(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step
        due = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        if self.begin_step <= step <= self.end_step and due:
            self._prune(cubic_sparsity(step, self.target_sparsity, self.begin_step, self.end_step))
        self._step += 1

    def on_train_end(self, logs=None):
        self._prune(self.target_sparsity, final=True)
        tfmot_glue.finalize_reparams(self.model)

    def _prune(self, sparsity: float, final: bool = False) -> None:
        _pruning.prune(self.model, sparsity, self.criterion, allow_revival=self.dpf,
                       zero_pruned=final or not self.dpf)


def current_sparsity(model: keras.Model) -> float:
    """Sparsity the forward pass sees now (STR: zeros of the soft-thresholded kernels)."""
    str_wrappers = [w for _, w in tfmot_glue.wrappers(model)
                    if isinstance(w, tfmot_glue.ReparamPruneLowMagnitude) and w.reparam == "str"]
    if not str_wrappers:
        return _pruning.sparsity(model)
    zeros = total = 0
    for _, wrapper in tfmot_glue.wrappers(model):
        kernels = (wrapper.effective_kernels() if wrapper in str_wrappers
                   else [w * m for w, m, _ in wrapper.pruning_vars])
        for kernel in kernels:
            values = np.asarray(kernel)
            zeros += values.size - int(np.count_nonzero(values))
            total += values.size
    return zeros / total


class EpochRows(keras.callbacks.Callback):
    """One row per epoch (``cycle`` = epoch number), IMP's columns; test metrics on the last epoch.

    With a workdir the rows are written to ``results.json``/``results.csv``
    after every epoch and picked up again when a run resumes.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, test_data=None,
                 workdir: Optional[str] = None, criterion: Optional[str] = None):
        super().__init__()
        self.method, self.target_sparsity, self.epochs = method, target_sparsity, epochs
        self.test_data, self.workdir, self.criterion = test_data, workdir, criterion
        self.rows: list[dict] = (_checkpoint.load_results(workdir) or []) if workdir else []
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:  # a resumed run redoes epochs from `epoch` on
            self.rows = [row for row in self.rows if row["cycle"] <= epoch]
            self._first_epoch = False
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") or 0
        last = epoch + 1 == self.epochs
        if last:
            tfmot_glue.finalize_reparams(self.model)  # exact masks before the final measurement
        row = _callbacks.row_from_logs(
            self.model, dict(logs or {}), self.test_data if last else None, cycle=epoch + 1,
            target=self.target_sparsity, schedule=self.method,
            initial_lr=float(keras.backend.get_value(self.model.optimizer.learning_rate)),
            epochs=1, steps=steps, wall_s=time.perf_counter() - self._start, criterion=self.criterion)
        row["sparsity"] = current_sparsity(self.model)
        self.rows.append(row)
        if self.workdir:
            _checkpoint.write_results(self.workdir, self.rows, {"method": self.method})


class DuringTraining(_Trainer):
    """Runs one pruning-during-training baseline for a budget of ``epochs``.

    Example:
      >>> rows = tfimp.DuringTraining("gmp", 0.9, epochs=10).run(model, (x, y), test=(xt, yt))

    Args:
      method: ``gmp``, ``tfmot_gmp``, ``dpf`` or ``str``.
      target_sparsity: S (STR reports what it reaches instead).
      epochs: the whole budget.
      criterion: for ``gmp`` and ``dpf``.
      begin_fraction, end_fraction: the ramp, as fractions of the budget.
      frequency: steps between mask updates (default 100; DPF 16).
      str_init: initial value of STR's threshold parameters (threshold =
        sigmoid(str_init)); more negative means less sparsity.
      **settings: optimizer and data settings, as for :class:`tfimp.IMP`.
    """

    def __init__(self, method: str, target_sparsity: float, epochs: int, *, criterion: str = "global",
                 begin_fraction: float = 0.1, end_fraction: float = 0.75, frequency: Optional[int] = None,
                 str_init: float = -5.0, **settings):
        if method not in METHODS:
            raise ValueError(f"unknown during-training method {method!r}; known: {list(METHODS)}")
        if not 0.0 < target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if not 0.0 <= begin_fraction <= end_fraction <= 1.0:
            raise ValueError(f"need 0 <= begin_fraction <= end_fraction <= 1, got {begin_fraction}, {end_fraction}")
        _criteria.get(criterion)
        super().__init__(**settings)
        self.method, self.target_sparsity, self.epochs = method, float(target_sparsity), int(epochs)
        self.criterion = criterion
        self.begin_fraction, self.end_fraction = begin_fraction, end_fraction
        self.frequency = frequency or (16 if method == "dpf" else 100)
        self.str_init = str_init

    def _wrapper_factory(self, begin: int, end: int):
        if self.method == "tfmot_gmp":
            return tfmot_glue.tfmot_polynomial_wrapper(self.target_sparsity, begin, end, self.frequency)
        if self.method in ("dpf", "str"):
            return lambda layer: tfmot_glue.ReparamPruneLowMagnitude(layer, reparam=self.method,
                                                                     str_init=self.str_init)
        return None  # gmp: tfimp's policy wrapper

    def run(self, model: keras.Model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = (),
            cycle_end_hooks: Sequence = ()) -> list[dict]:
        """Trains and prunes ``model``; returns one row per epoch. The wrapped model is ``self.model``."""
        tfmot_glue.check_tf_keras_model(model)
        train, validation, test, steps = self._datasets(train, validation, test)
        begin = int(round(self.begin_fraction * self.epochs * steps))
        end = max(begin, int(round(self.end_fraction * self.epochs * steps)))
        with model.distribute_strategy.scope():
            model = tfmot_glue.wrap(model, wrapper=self._wrapper_factory(begin, end))
        self._compile(model, self._schedule(self.epochs, steps))
        self.model = model

        extra: list[keras.callbacks.Callback] = []
        if self.method in ("gmp", "dpf"):
            extra.append(GradualPruning(self.target_sparsity, begin, end, self.frequency, self.criterion,
                                        dpf=self.method == "dpf"))
        if self.method == "tfmot_gmp":
            extra.append(tfmot_glue.tfmot_step_callback())
        if workdir is not None:
            description = {"method": self.method, "target_sparsity": self.target_sparsity, "epochs": self.epochs,
                           "criterion": self.criterion, "begin": begin, "end": end, "frequency": self.frequency,
                           "learning_rate": self.learning_rate, "dense_schedule": str(self.dense_schedule)}
            # Finalize first: the saved weights are the finalized model's.
            finished = self._finished_run(model, workdir, description, overwrite, verbose, expected_rows=self.epochs,
                                          before_restore=tfmot_glue.finalize_reparams)
            if finished is not None:
                return finished
            extra.insert(0, keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")))
        rows = EpochRows(self.method, self.target_sparsity, self.epochs, test, workdir,
                         self.criterion if self.method in ("gmp", "dpf") else None)
        model.fit(train, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, validation_data=validation,
                  callbacks=[*extra, rows, *callbacks], verbose=verbose)
        for hook in cycle_end_hooks:  # no cycles: once, for the final model
            hook(model, rows.rows[-1])
        if workdir is not None:
            model.save_weights(final_weights_path(workdir))
        if verbose:
            print(f"[tfimp] {self.method} finished:\n" + _callbacks.format_table(rows.rows[-1:]), flush=True)
        return list(rows.rows)
