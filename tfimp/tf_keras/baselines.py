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
from typing import Callable, Optional

import numpy as np

from tfimp.tf_keras import _private
from tfimp.core import driver as _driver
from tfimp.core import runner as _runner
from tfimp.core import during_training as _during
from tfimp.core import gradient_rules as _gradient_rules
from tfimp.tf_keras import optimizers as _optimizers
from tfimp.tf_keras import pruning as _pruning
from tfimp.tf_keras import reparametrisations as _reparametrisations
from tfimp.tf_keras import tfmot_glue
from tfimp.tf_keras import wrapping as _wrapping
from tfimp.core.registry import Registry
from tfimp.tf_keras._backend import keras
from tfimp.tf_keras.framework import OPS
from tfimp.tf_keras.imp import TfKerasRunner


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


cubic_sparsity = _during.cubic_sparsity
auto_frequency = _during.auto_frequency
TARGET_TOLERANCE = _during.TARGET_TOLERANCE
STR_DENSE_START = _during.STR_DENSE_START


class GradualPruning(_during.RampSteps, keras.callbacks.Callback):
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
      structure: which weights each update prunes together (see
        :func:`tfimp.prune`): ``"unstructured"`` (default), ``"N:M"`` (the
        target must be ``1 - N/M``; each level prunes ``round(level * M)`` of
        every group) or ``"block:RxC"``.
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int, frequency: int = 100,
                 criterion: str = "global", dpf: bool = False, level_every: int = 1,
                 structure: str = "unstructured"):
        keras.callbacks.Callback.__init__(self)
        _during.RampSteps.__init__(self, target_sparsity, begin_step, end_step, frequency, criterion, dpf,
                                   level_every, structure)

    def on_train_begin(self, logs=None):
        self._step = int(keras.backend.get_value(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        level = self.next_level()
        if level is not None:
            _pruning.prune(self.model, level, self.criterion, **self.prune_options())

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.params.get("epochs"):
            self._finish()  # before later callbacks measure the final model

    def on_train_end(self, logs=None):
        self._finish()

    def _finish(self) -> None:
        """Exact target at the end (idempotent)."""
        finalize_reparams(self.model)  # DPF: keep the mask it trained with, zero the rest
        options = self.structure_options()
        if _pruning.sparsity(self.model, **options) < self.target_sparsity:
            _pruning.prune(self.model, self.target_sparsity, self.criterion, **options)


def current_sparsity(model: keras.Model) -> float:
    """Sparsity the forward pass sees now (STR, CS, DST: the weights their rule does not keep now)."""
    str_wrappers = [w for _, w in _wrapping.wrappers(model) if isinstance(w, tfmot_glue.ReparamPruneLowMagnitude)
                    and w.reparam in _reparametrisations.MASK_FROM_EFFECTIVE]
    if not str_wrappers:
        return _pruning.sparsity(model)
    zeros = total = 0
    for _, wrapper in _wrapping.wrappers(model):
        kernels = (wrapper.kept_masks() if wrapper in str_wrappers
                   else tfmot_glue.masked_values(wrapper))
        for kernel in kernels:
            values = np.asarray(kernel)
            zeros += values.size - int(np.count_nonzero(values))
            total += values.size
    return zeros / total


class ResetEmptyThresholds(keras.callbacks.Callback):
    """DST's reset rule after every step: a pruned weight that keeps at most 1% of its entries
    (:data:`tfimp.core.reparametrisations.DST_RESET_KEPT`) gets its thresholds set back to 0."""

    def on_train_batch_end(self, batch, logs=None):
        for _, wrapper in _wrapping.wrappers(self.model):
            if not isinstance(wrapper, tfmot_glue.ReparamPruneLowMagnitude) or wrapper.reparam != "dst":
                continue
            for (weight, _, _), thresholds in zip(_private.pruning_triples(wrapper), wrapper.parameters):
                limits = thresholds.numpy()
                if _reparametrisations.needs_reset(np.abs(weight.numpy()), limits):
                    thresholds.assign(np.zeros_like(limits))


class DuringTrainingRun(_driver.DuringTrainingRunDriver, keras.callbacks.Callback):
    """One row per epoch of a during-training run (:class:`tfimp.core.driver.DuringTrainingRunDriver`):
    checkpointed every epoch, resumed exactly, the last epoch written as ``cycle_E/``."""

    ops = OPS

    def _finalize(self, model, bake):
        # tf_keras bakes either way: a restored run's saved weights are read over the baked ones afterwards
        finalize_reparams(model)

    def _forward_sparsity(self, model):
        return current_sparsity(model)


@dataclasses.dataclass(frozen=True)
class DuringTrainingMethod:
    """How the tf_keras front end runs one method of :data:`tfimp.core.during_training.RULES`.

    Attributes:
      wrapper: ``(runner, begin, end, frequency, steps_per_epoch) -> wrapper factory`` for ``tfimp.wrap``
        (``None``: tfimp's policy wrapper).
      callbacks: ``(runner, begin, end, frequency, steps_per_epoch) -> callbacks`` that prune during ``fit``.
    """

    wrapper: Callable[..., Optional[Callable]]
    callbacks: Callable[..., list]


def _reparametrised(runner: "DuringTraining", begin: int, end: int, frequency: int, steps: int) -> Callable:
    return lambda layer: tfmot_glue.ReparamPruneLowMagnitude(
        layer, reparam=runner.spec.reparametrisation, str_init=runner.str_init,
        str_weight_decay=runner.str_weight_decay, hyperparameters=runner.hyperparameters,
        total_steps=runner.epochs * steps)


class UseGradientRule(keras.callbacks.Callback):
    """Sets a :mod:`tfimp.core.gradient_rules` rule (LC, GSM) on the model's ``TorchSGD`` when training begins."""

    def __init__(self, name: str, target_sparsity: float):
        super().__init__()
        self.name, self.target_sparsity = name, float(target_sparsity)

    def on_train_begin(self, logs=None):
        _gradient_rules.install(_optimizers.unwrapped(self.model.optimizer), self.name,
                                [k.weight for k in _wrapping.prunable_kernels(self.model)], self.target_sparsity)


def _rule_callbacks(runner: "DuringTraining", begin: int, end: int, frequency: int, steps: int) -> list:
    rule = runner.spec
    update = [UseGradientRule(rule.gradient_rule, runner.target_sparsity)] if rule.gradient_rule else []
    if rule.reparametrisation == "dst":
        update.append(ResetEmptyThresholds())
    if rule.pruning is None:
        return update
    return update + [GradualPruning(runner.target_sparsity, begin, end, frequency, rule.fixed_criterion or runner.criterion,
                           dpf=rule.pruning == "dpf", level_every=steps if rule.level_every_epoch else 1,
                           structure=runner.structure)]


def standard_method(rule: _during.MethodRule) -> DuringTrainingMethod:
    """The tf_keras wiring a rule implies: the reparametrised wrapper where it has a reparametrisation, and
    :class:`GradualPruning` along its ramp (or DPF's recomputation)."""
    return DuringTrainingMethod(wrapper=_reparametrised if rule.reparametrisation else lambda runner, *ramp: None,
                                callbacks=_rule_callbacks)


#: ``method name -> DuringTrainingMethod`` where the tf_keras front end runs a rule its own way (tfmot's own
#: schedule and wrapper for ``tfmot_gmp``); every other rule of ``tfimp.core.during_training.RULES`` runs by
#: :func:`standard_method`. A new baseline is one rule there.
DURING_TRAINING_METHODS: Registry[DuringTrainingMethod] = Registry("tf_keras during-training wiring")
DURING_TRAINING_METHODS.register("tfmot_gmp", DuringTrainingMethod(
    wrapper=lambda runner, begin, end, frequency, steps: tfmot_glue.tfmot_polynomial_wrapper(
        runner.target_sparsity, begin, end, frequency),
    callbacks=lambda runner, *ramp_and_steps: [tfmot_glue.tfmot_step_callback()]))

#: The built-in during-training methods, in the CLI's order (``tfimp.core.during_training.DURING_TRAINING``; a test keeps
#: them equal to the core's built-in rules).
METHODS = _during.DURING_TRAINING


def known_methods() -> list[str]:
    """Every registered during-training method: the built-in ones first, in the CLI's order."""
    return _during.known_methods(METHODS)


def wiring(method: str) -> DuringTrainingMethod:
    """How this front end runs ``method``: its own entry, else the rule's standard wiring."""
    if method in DURING_TRAINING_METHODS:
        return DURING_TRAINING_METHODS.get(method)
    return standard_method(_during.RULES.get(method))


class DuringTraining(_runner.DuringTrainingRunner, TfKerasRunner):
    __doc__ = _runner.DuringTrainingRunner.__doc__

    def __init__(self, method: str, target_sparsity: float, epochs: int, **options):
        super().__init__(method, target_sparsity, epochs, **options)
        self.wiring = wiring(method)

    @staticmethod
    def _known_methods() -> list[str]:
        return known_methods()

    def _prepare(self, model, train, steps, verbose):
        begin, end, frequency = self.ramp(steps)
        with model.distribute_strategy.scope():
            model = _wrapping.wrap(model, wrapper=self.wiring.wrapper(self, begin, end, frequency, steps))
            self._build_on(model, train)
        return model

    def _callbacks(self, steps: int) -> list:
        return self.wiring.callbacks(self, *self.ramp(steps), steps)

    def _run_callback(self, method, target_sparsity, epochs, steps, **arguments):
        return DuringTrainingRun(method, target_sparsity, epochs, steps, **arguments)


#: :meth:`tfimp.core.runner.DuringTrainingRunner.calibrate` of this front end: STR's, CS's or DST's hyper-parameter
#: bisected until a run reaches the target.
calibrate = DuringTraining.calibrate
#: STR's calibration (:meth:`tfimp.core.runner.DuringTrainingRunner.calibrate_str`).
calibrate_str = DuringTraining.calibrate_str
