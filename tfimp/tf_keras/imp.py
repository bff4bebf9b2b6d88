"""The runners of the tf_keras front end: ``tfimp.IMP``, ``tfimp.Dense`` (and the base of ``tfimp.DuringTraining``).

The runs themselves are the core's (:mod:`tfimp.core.runner`): settings,
the order of the work, resume and the rows. This module gives them tf_keras'
data (arrays and :func:`tfimp.data.load`'s pipelines become
:class:`tfimp.data.EpochOrdered`, replayed exactly on resume), optimizers,
schedules and distribution strategies.
"""

from __future__ import annotations


import numpy as np

from tfimp.core import runner as _runner
from tfimp.core import schedules as _rules
from tfimp.tf_keras import callbacks as _callbacks
from tfimp.tf_keras import data as _data
from tfimp.tf_keras import guards as _guards
from tfimp.tf_keras import lr as _lr
from tfimp.tf_keras import optimizers as _optimizers
from tfimp.tf_keras import wrapping
from tfimp.tf_keras._backend import keras, tf

DENSE_SCHEDULES = _rules.DENSE_SCHEDULES


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """A dense-phase schedule by name (``step``, ``cosine``, ``linear``, ``constant``; see
    ``tfimp.core.schedules.dense_schedule``)."""
    return _rules.dense_schedule(name, learning_rate, total_steps, warmup_steps, step_decay=_lr.StepDecay,
                                 cosine=_lr.Cosine, linear_to_zero=_lr.LinearToZero)


def _as_dataset(data, batch_size: int):
    """Evaluation data (validation, test) as batches, in order; training data goes through ``_data``."""
    if data is None or isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = tf.data.Dataset.from_tensor_slices((np.asarray(data[0]), np.asarray(data[1])))
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    raise TypeError(f"data must be a batched tf.data.Dataset or an (x, y) tuple of arrays, got {type(data).__name__}")


class TfKerasRunner(_runner.Runner):
    """The tf_keras half of every runner: data, schedules, optimizers, strategy scope (see :class:`tfimp.core.runner.Runner`)."""

    _optimizers = _optimizers._OPTIMIZERS

    def _check_model(self, model):
        wrapping.check_tf_keras_model(model)

    def _data(self, train, validation, test):
        if isinstance(train, (tuple, list)) and len(train) == 2:
            train = _data.EpochOrdered.from_arrays(train[0], train[1], self.batch_size, self.seed)
        elif (twin := _data.epoch_ordered(train)) is not None:  # tfimp.data.load's pipeline: its epoch-ordered twin
            train = twin
        elif not isinstance(train, (_data.EpochOrdered, tf.data.Dataset)):
            raise TypeError(f"train must be a batched tf.data.Dataset, a tfimp.data.EpochOrdered or an (x, y) tuple "
                            f"of arrays, got {type(train).__name__}")
        if self.steps_per_epoch:
            steps = self.steps_per_epoch
        elif isinstance(train, _data.EpochOrdered):
            steps = train.steps_per_epoch
        else:
            cardinality = int(tf.data.experimental.cardinality(train))
            steps = cardinality if cardinality > 0 else None
        if not steps:
            raise ValueError("the training data has unknown length; pass steps_per_epoch")
        return train, _as_dataset(validation, self.batch_size), _as_dataset(test, self.batch_size), steps

    def _for_fit(self, train, first_epoch, end_epoch, steps):
        # Epoch-ordered data starts at that epoch's batches, so a resumed run sees what the uninterrupted one saw.
        if isinstance(train, _data.EpochOrdered):
            return train.epochs(first_epoch, end_epoch), steps
        return train, None

    def _one_pass(self, train):
        return train.epoch(0) if isinstance(train, _data.EpochOrdered) else train

    def _dense_schedule(self, name, learning_rate, total_steps, warmup_steps):
        return dense_schedule(name, learning_rate, total_steps, warmup_steps)

    def _tabulate(self, schedule, steps):
        return _lr.tabulate(schedule, steps)

    def _default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _scope(self, model):
        return model.distribute_strategy.scope()

    @staticmethod
    def _fresh_session(seed: int) -> None:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)

    def _chance_guard_callback(self):
        return _guards.ChanceGuard()

    def _build_on(self, model: keras.Model, train) -> None:
        """Builds a not-yet-called (subclassed) model on one training batch, so its wrappers have masks."""
        if model.built and not wrapping.unbuilt_wrappers(model):
            return
        features = next(iter(self._one_pass(train)))[0]
        model(features, training=False)


class IMP(_runner.IMPRunner, TfKerasRunner):
    __doc__ = _runner.IMPRunner.__doc__

    def _prepare(self, model, train, steps, verbose):
        with model.distribute_strategy.scope():
            if not wrapping.wrappers(model):
                model = wrapping.wrap(model, verbose=verbose)
            self._build_on(model, train)
        return model

    def _imp_callback(self, plan, **arguments):
        return _callbacks.IMP(plan, **arguments)


class Dense(_runner.DenseRunner, TfKerasRunner):
    __doc__ = _runner.DenseRunner.__doc__

    def _dense_run_callback(self, epochs, steps, **arguments):
        return _callbacks.DenseRun(epochs, steps, **arguments)
