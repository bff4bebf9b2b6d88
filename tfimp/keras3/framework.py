"""The Keras 3 operations the core's run driver needs (:class:`tfimp.core.driver.FrameworkOps`), on every backend."""

from __future__ import annotations

import keras
import numpy as np

from tfimp.core import driver as _driver
from tfimp.keras3 import _private
from tfimp.keras3 import batchnorm as _batchnorm
from tfimp.keras3 import channels as _channels
from tfimp.keras3 import checkpoint as _checkpoint
from tfimp.keras3 import lr as _lr
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import optimizers as _optimizers

def _numpy(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable.value)


class Keras3Ops(_driver.FrameworkOps):
    """The driver's operations on a Keras 3 model (tfimp's ``MaskedLayer``, ``.weights.h5`` checkpoints)."""

    keras_major = keras.__version__.split(".")[0]
    lr, batchnorm, checkpoint = _lr, _batchnorm, _checkpoint

    def masks_and_weights(self, model, with_weights):
        _masks._sync_training_state(model)  # on JAX a running fit holds the latest values outside the variables
        kernels = _masks.prunable_kernels(model)
        return [_numpy(k.mask) != 0 for k in kernels], [_numpy(k.weight) for k in kernels] if with_weights else None

    def named_trainable_arrays(self, model):
        _masks._sync_training_state(model)
        return [(v.path, _numpy(v)) for v in model.trainable_weights]

    def prunable_shapes(self, model):
        return [tuple(k.shape) for k in _masks.prunable_kernels(model)]

    def prune(self, model, target, criterion, min_kept_per_layer, structure="unstructured"):
        return _masks.prune(model, target, criterion=criterion, min_kept_per_layer=min_kept_per_layer,
                           structure=structure)

    def hold_channels(self, model):
        _channels.hold(model, _masks.prunable_kernels(model))

    def sparsity(self, model, structure="unstructured"):
        return _masks.sparsity(model, structure=structure) if _masks.wrappers(model) else 0.0

    def learning_rate(self, model):
        return float(keras.ops.convert_to_numpy(_optimizers.unwrapped(model.optimizer).learning_rate))

    def step(self, model):
        return int(keras.ops.convert_to_numpy(_optimizers.unwrapped(model.optimizer).iterations))

    def reset_optimizer_state(self, model):
        optimizer = _optimizers.unwrapped(model.optimizer)
        keep = {id(optimizer.iterations)}
        keep.update(id(v) for v in optimizer.variables if "learning_rate" in v.path)
        for variable in optimizer.variables:
            if id(variable) not in keep:
                variable.assign(keras.ops.zeros_like(variable.value))

    def take_over_learning_rate(self, model, schedule):
        """A :class:`tfimp.lr.Tabulated` schedule in place of the compiled rate (so saves list the same optimizer
        variables); each phase's table becomes a constant of a retraced train function."""
        optimizer = _optimizers.unwrapped(model.optimizer)
        if schedule is None:
            compiled = _private.optimizer_learning_rate(optimizer)  # the schedule object, which has no public getter
            if isinstance(compiled, _lr.Tabulated):
                raise ValueError("the optimizer runs another IMP callback's schedule; compile a fresh optimizer "
                                 "or pass schedule= (the original dense schedule)")
            schedule = (compiled if isinstance(compiled, keras.optimizers.schedules.LearningRateSchedule)
                        else float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        optimizer.learning_rate = _lr.Tabulated(_lr.tabulate(schedule, 1), name="dense")
        return schedule, None

    def set_phase_rates(self, model, handle, rates, start_step, name):
        _optimizers.unwrapped(model.optimizer).learning_rate = _lr.Tabulated(rates, start_step=start_step, name=name)
        model.make_train_function(force=True)  # the new table is a constant of the new trace

    def global_rng_state(self):
        return _checkpoint.global_rng_state()

    def set_global_rng_state(self, state):
        _checkpoint.set_global_rng_state(state)


OPS = Keras3Ops()
