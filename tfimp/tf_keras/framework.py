"""The tf_keras operations the core's run driver needs (:class:`tfimp.core.driver.FrameworkOps`)."""

from __future__ import annotations



from tfimp.core import driver as _driver
from tfimp.tf_keras import _private
from tfimp.tf_keras import batchnorm as _batchnorm
from tfimp.tf_keras import channels as _channels
from tfimp.tf_keras import checkpoint as _checkpoint
from tfimp.tf_keras import distribute as _distribute
from tfimp.tf_keras import lr as _lr
from tfimp.tf_keras import optimizers as _optimizers
from tfimp.tf_keras import pruning as _pruning
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras, tf


class TfKerasOps(_driver.FrameworkOps):
    """The driver's operations on a tf_keras model (tfmot's wrappers, ``tf.train.Checkpoint``, strategies)."""

    lr, batchnorm, checkpoint = _lr, _batchnorm, _checkpoint

    def masks_and_weights(self, model, with_weights):
        kernels = wrapping.prunable_kernels(model)
        return ([k.mask.numpy() != 0 for k in kernels],
                [k.weight.numpy() for k in kernels] if with_weights else None)

    def named_trainable_arrays(self, model):
        return [(w.name.split(":")[0], w.numpy()) for w in model.trainable_weights]

    def prunable_shapes(self, model):
        return [tuple(k.shape) for k in wrapping.prunable_kernels(model)]

    def prune(self, model, target, criterion, min_kept_per_layer, structure="unstructured"):
        return _pruning.prune(model, target, criterion=criterion, min_kept_per_layer=min_kept_per_layer,
                           structure=structure)

    def hold_channels(self, model):
        _channels.hold(model)

    def sparsity(self, model, structure="unstructured"):
        return _pruning.sparsity(model, structure=structure) if wrapping.wrappers(model) else 0.0

    def reestimate_batchnorm(self, model, data):
        if isinstance(data, tuple) and len(data) == 2:  # an (x, y) pair: the training arrays, in batches
            data = tf.data.Dataset.from_tensor_slices(data[0]).batch(128)  # the Keras 3 front end's batches
        return bool(_batchnorm.reestimate(model, data))

    def learning_rate(self, model):
        return float(keras.backend.get_value(model.optimizer.learning_rate))

    def step(self, model):
        return int(model.optimizer.iterations.numpy())

    def reset_optimizer_state(self, model):
        optimizer = _optimizers.unwrapped(model.optimizer)
        variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
        keep = {id(optimizer.iterations), id(optimizer.learning_rate)}  # the step counter and the current rate
        for variable in variables:
            if id(variable) not in keep:
                variable.assign(tf.zeros_like(variable))

    def take_over_learning_rate(self, model, schedule):
        """An in-graph :class:`tfimp.lr.PhaseSchedule` whose table is loaded once per phase: nothing runs in Python
        per step, so ``steps_per_execution`` and ``jit_compile`` work."""
        optimizer = model.optimizer
        if schedule is None:  # the compiled rate is the original schedule
            schedule = _optimizers.current_schedule(optimizer)
            if isinstance(schedule, _lr.PhaseSchedule):
                raise ValueError("the optimizer runs another IMP callback's schedule; compile a fresh optimizer "
                                 "or pass schedule= (the original dense schedule)")
        with model.distribute_strategy.scope():
            phases = _lr.PhaseSchedule(float(_lr.tabulate(schedule, 1)[0]))
        _optimizers.install_schedule(optimizer, phases)
        return schedule, phases

    def set_phase_rates(self, model, handle, rates, start_step, name):
        handle.set_phase(rates, start_step)

    def other_rate_setters(self, callback):
        running = _private.running_callbacks(callback)
        if running is None:
            return None
        return [type(c).__name__ for c in running if c is not callback and isinstance(
            c, (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau))]

    def restore(self, workdir, model):
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError("compile the model before restoring a tfimp checkpoint")
        if hasattr(optimizer, "build") and not getattr(optimizer, "_built", False):
            with model.distribute_strategy.scope():  # the slots exist, so the checkpoint restores them at once
                optimizer.build(model.trainable_variables)
        return _checkpoint.restore(workdir, model)

    def write_dir(self, workdir, model):
        return _workdir.write_dir(workdir, model.distribute_strategy)

    def sync_workers(self, model):
        _distribute.sync_workers(model.distribute_strategy)

    def end_of_run(self, workdir, model):
        _workdir.remove_worker_scratch(workdir, model.distribute_strategy)


OPS = TfKerasOps()
