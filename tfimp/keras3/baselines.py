"""The pruning-during-training baselines on Keras 3: GMP, tfmot's per-layer GMP, DPF and STR, on every backend.

The methods are :mod:`tfimp.core.during_training`'s rules, the forward-pass
transforms :mod:`tfimp.core.reparametrisations`' (in ``keras.ops``), so a
Keras 3 run is the tf_keras one (``tfimp.baselines``) on another Keras:

* ``gmp``: masks grow along Zhu & Gupta's cubic ramp, every ``frequency``
  steps, by ``criterion`` (global by default);
* ``tfmot_gmp``: the same ramp per layer on tfmot's ``PolynomialDecay``
  steps (tfmot does not run on Keras 3; its schedule is reproduced with the
  ``uniform`` criterion: every layer reaches the target);
* ``dpf``: the mask recomputed from the dense weights every 16 steps, the
  gradient reaching pruned weights (straight-through);
* ``str``: a learnable soft threshold per layer; the sparsity is where it ends.

``tfimp.DuringTraining(...).run(model, (x, y), test=...)`` trains one in one
``fit`` of ``epochs``, one row per epoch, with a workdir: per-epoch
checkpoints, exact resume, ``cycle_E/`` and ``results.json``.
``tfimp.baselines`` and ``tfimp.DuringTraining`` are this module in a
Keras 3 process.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfimp.core import driver as _driver
from tfimp.core import runner as _runner
from tfimp.core import during_training as _during
from tfimp.core import gradient_rules as _gradient_rules
from tfimp.core import reparametrisations as _reparametrisations
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import optimizers as _optimizers
from tfimp.keras3.framework import OPS
from tfimp.keras3.imp import Keras3Runner
from tfimp.keras3.wrapper import ReparamMaskedLayer

cubic_sparsity = _during.cubic_sparsity
auto_frequency = _during.auto_frequency
TARGET_TOLERANCE = _during.TARGET_TOLERANCE
STR_DENSE_START = _during.STR_DENSE_START
#: The built-in methods, in the CLI's order (``tfimp.core.during_training.DURING_TRAINING``).
METHODS = _during.DURING_TRAINING


def known_methods() -> list[str]:
    """Every during-training method (the rules of :mod:`tfimp.core.during_training`), the CLI's order first."""
    return _during.known_methods(METHODS)


def _reparametrised(model: keras.Model) -> list[ReparamMaskedLayer]:
    return [wrapper for _, wrapper in _masks.wrappers(model) if isinstance(wrapper, ReparamMaskedLayer)]


def finalize_reparams(model: keras.Model, *, bake: bool = True) -> None:
    """Finalizes every :class:`~tfimp.keras3.wrapper.ReparamMaskedLayer` of ``model`` (exact masks, zeroed weights).

    The forward pass changes, so the functions Keras traced before are
    dropped (reused, they would apply STR's threshold a second time).
    ``bake=False`` only marks them finalized (weights restored from a
    finished run are baked already).
    """
    pending = [wrapper for wrapper in _reparametrised(model) if not wrapper.finalized]
    if not pending:
        return
    _masks._sync_training_state(model)
    for wrapper in pending:
        wrapper.finalize(bake=bake)
    _masks._after_structure_change(model)


def str_thresholds(model: keras.Model) -> list:
    """The learnable STR threshold variables of ``model``."""
    return [w.str_threshold for w in _reparametrised(model) if w.str_threshold is not None]


def current_sparsity(model: keras.Model) -> float:
    """Sparsity the forward pass sees now (STR, CS, DST: the weights their rule does not keep now)."""
    live = [w for w in _reparametrised(model)
            if not w.finalized and w.reparam in _reparametrisations.MASK_FROM_EFFECTIVE]
    if not live:
        return _masks.sparsity(model)
    _masks._sync_training_state(model)
    zeros = total = 0
    for _, wrapper in _masks.wrappers(model):
        if wrapper in live:
            arrays = wrapper.kept_masks()
        else:
            arrays = [keras.ops.convert_to_numpy(mask.value) for mask in wrapper.masks]
        for values in arrays:
            zeros += values.size - int(np.count_nonzero(values))
            total += values.size
    return zeros / total


class GradualPruning(_during.RampSteps, keras.callbacks.Callback):
    """Prunes along the cubic ramp (GMP), or recomputes DPF's masks, inside Keras 3's ``fit``.

    The tf_keras ``tfimp.baselines.GradualPruning`` on Keras 3: GMP's masks
    grow (monotone) every ``frequency`` steps between ``begin_step`` and
    ``end_step``; DPF's are recomputed from the dense weights every
    ``frequency`` steps for the whole run and whenever the ramp's level
    rises, pruned weights free to come back. At the end of training the
    model holds exactly ``target_sparsity`` (DPF: the mask it last trained
    with, topped up by magnitude if the ramp fell short).

    Args:
      target_sparsity, begin_step, end_step, frequency, criterion, dpf, level_every, structure:
        as for the tf_keras class.
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int, frequency: int = 100,
                 criterion: str = "global", dpf: bool = False, level_every: int = 1,
                 structure: str = "unstructured"):
        keras.callbacks.Callback.__init__(self)
        _during.RampSteps.__init__(self, target_sparsity, begin_step, end_step, frequency, criterion, dpf,
                                   level_every, structure)

    def on_train_begin(self, logs=None):
        # Read before the first step: on JAX, fit holds the variables' values outside them while it runs.
        self._step = int(keras.ops.convert_to_numpy(_optimizers.unwrapped(self.model.optimizer).iterations))

    def on_train_batch_begin(self, batch, logs=None):
        level = self.next_level()
        if level is not None:
            self._prune(level, **self.prune_options())

    def _prune(self, level: float, **options) -> None:
        with warnings.catch_warnings():  # an early, small level may empty a tiny layer for a while
            warnings.filterwarnings("ignore", message="tfimp.prune: pruning .* removed every weight")
            _masks.prune(self.model, level, self.criterion, **options)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.params.get("epochs"):
            self.finish()  # before the run's rows measure the final model

    def finish(self) -> None:
        """Exact target at the end (idempotent)."""
        finalize_reparams(self.model)  # DPF: keep the mask it trained with, zero the rest
        options = self.structure_options()
        if _masks.sparsity(self.model, **options) < self.target_sparsity:
            _masks.prune(self.model, self.target_sparsity, self.criterion, **options)


class UseGradientRule(keras.callbacks.Callback):
    """Sets a :mod:`tfimp.core.gradient_rules` rule (LC, GSM) on the model's ``TorchSGD`` when training begins."""

    def __init__(self, name: str, target_sparsity: float):
        super().__init__()
        self.name, self.target_sparsity = name, float(target_sparsity)

    def on_train_begin(self, logs=None):
        _gradient_rules.install(_optimizers.unwrapped(self.model.optimizer), self.name,
                                [k.weight for k in _masks.prunable_kernels(self.model)], self.target_sparsity)
        self.model.make_train_function(force=True)  # the rule is part of the traced step


class ResetEmptyThresholds(keras.callbacks.Callback):
    """DST's reset rule after every step: a masked weight that keeps at most 1% of its entries
    (:data:`tfimp.core.reparametrisations.DST_RESET_KEPT`) gets its thresholds set back to 0."""

    def on_train_batch_end(self, batch, logs=None):
        wrappers = [w for w in _reparametrised(self.model) if w.reparam == "dst" and not w.finalized]
        if not wrappers:
            return
        _masks._sync_training_state(self.model)
        for wrapper in wrappers:
            for weight, thresholds in zip(wrapper.masked_weights(), wrapper.parameters):
                values = np.abs(keras.ops.convert_to_numpy(weight.value))
                limits = keras.ops.convert_to_numpy(thresholds.value)
                if _reparametrisations.needs_reset(values, limits):
                    thresholds.assign(np.zeros_like(limits))


class DuringTrainingRun(_driver.DuringTrainingRunDriver, keras.callbacks.Callback):
    """One row per epoch of a during-training run on Keras 3 (:class:`tfimp.core.driver.DuringTrainingRunDriver`):
    checkpointed every epoch, resumed exactly, the last epoch written as ``cycle_E/``."""

    ops = OPS

    def _finalize(self, model, bake):
        finalize_reparams(model, bake=bake)

    def _forward_sparsity(self, model):
        return current_sparsity(model)


class DuringTraining(_runner.DuringTrainingRunner, Keras3Runner):
    __doc__ = _runner.DuringTrainingRunner.__doc__

    def _prepare(self, model, train, steps, verbose):
        if _masks.wrappers(model):
            raise ValueError(f"{self.method} wraps the model itself (its own wrapper); pass the unwrapped model")
        wrapper = None if self.spec.reparametrisation is None else (
            lambda layer, paths: ReparamMaskedLayer(layer, paths, reparam=self.spec.reparametrisation,
                                                    str_init=self.str_init, str_weight_decay=self.str_weight_decay,
                                                    hyperparameters=self.hyperparameters,
                                                    total_steps=self.epochs * steps))
        return _masks.wrap(model, wrapper=wrapper, verbose=verbose)

    def _callbacks(self, steps: int) -> list:
        update = [UseGradientRule(self.spec.gradient_rule, self.target_sparsity)] if self.spec.gradient_rule else []
        if self.spec.reparametrisation == "dst":
            update.append(ResetEmptyThresholds())
        if self.spec.pruning is None:
            return update
        begin, end, frequency = self.ramp(steps)
        return update + [GradualPruning(self.target_sparsity, begin, end, frequency,
                               self.spec.fixed_criterion or self.criterion, dpf=self.spec.pruning == "dpf",
                               level_every=steps if self.spec.level_every_epoch else 1,
                               structure=self.structure)]

    def _run_callback(self, method, target_sparsity, epochs, steps, **arguments):
        return DuringTrainingRun(method, target_sparsity, epochs, steps, **arguments)

    def _after_fit(self, model, rows, verbose, cycle_end_hooks, finished):
        finalize_reparams(model)  # a fit stopped early by a callback: still exact masks
        super()._after_fit(model, rows, verbose, cycle_end_hooks, finished)


#: :meth:`tfimp.core.runner.DuringTrainingRunner.calibrate` of this front end: STR's, CS's or DST's hyper-parameter
#: bisected until a run reaches the target.
calibrate = DuringTraining.calibrate
#: STR's calibration (:meth:`tfimp.core.runner.DuringTrainingRunner.calibrate_str`).
calibrate_str = DuringTraining.calibrate_str
