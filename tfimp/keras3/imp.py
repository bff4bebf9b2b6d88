"""The runners of the Keras 3 front end: ``tfimp.IMP``, ``tfimp.Dense`` (and the base of ``tfimp.DuringTraining``).

The runs themselves are the core's (:mod:`tfimp.core.runner`): settings,
the order of the work, resume and the rows, as on tf_keras. This module gives
them Keras 3's data (arrays become an :class:`tfimp.keras3.data.EpochOrdered`,
per-epoch order from the seed and the epoch; a ``tfimp.data.load``
``tf.data`` pipeline its epoch-ordered twin), optimizers and schedules, on
every backend. ``tfimp.IMP`` and ``tfimp.Dense`` are these classes in a
Keras 3 process.
"""

from __future__ import annotations

import keras

from tfimp.core import runner as _runner
from tfimp.core import schedules as _rules
from tfimp.keras3 import callbacks as _callbacks
from tfimp.keras3 import data as _data
from tfimp.keras3 import lr as _lr
from tfimp.keras3 import masks as _masks
from tfimp.keras3 import optimizers as _optimizers

DENSE_SCHEDULES = _rules.DENSE_SCHEDULES


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """A dense-phase schedule by name (see ``tfimp.core.schedules.dense_schedule``)."""
    return _rules.dense_schedule(name, learning_rate, total_steps, warmup_steps, step_decay=_lr.StepDecay,
                                 cosine=_lr.Cosine, linear_to_zero=_lr.LinearToZero)


class Keras3Runner(_runner.Runner):
    """The Keras 3 half of every runner: data, schedules, optimizers (see :class:`tfimp.core.runner.Runner`).

    ``jit_compile`` defaults to Keras 3's ``"auto"``.
    """

    _DEFAULT_JIT = "auto"
    _optimizers = _optimizers._OPTIMIZERS

    @staticmethod
    def _fresh_session(seed: int) -> None:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)

    def _check_model(self, model):
        _masks.check_keras3_model(model)

    def _data(self, train, validation, test):
        if isinstance(train, (tuple, list)) and len(train) == 2:
            train = _data.EpochOrdered(train[0], train[1], self.batch_size, self.seed)
        elif (twin := _data.tf_data_epochs(train)) is not None:
            train = twin
        if self.steps_per_epoch:
            steps = self.steps_per_epoch
        elif hasattr(train, "steps_per_epoch"):  # either EpochOrdered: the numpy one or the tf.data one
            steps = train.steps_per_epoch
        else:
            steps = len(train) if hasattr(train, "__len__") else None
        if not steps:
            raise ValueError("the training data has unknown length; pass steps_per_epoch")
        validation = tuple(validation) if isinstance(validation, list) else validation
        return train, validation, test, int(steps)

    def _for_fit(self, train, first_epoch, end_epoch, steps):
        # Epoch-ordered data starts at that epoch's batches, so a resumed run sees what the uninterrupted one saw.
        if _data.tf_data_epochs(train) is not None:
            return train.epochs(first_epoch, end_epoch), steps
        if isinstance(train, _data.EpochOrdered):
            train.epoch = first_epoch
        return train, None

    def _one_pass(self, train):
        return train.epoch(0) if _data.tf_data_epochs(train) is not None else train

    def _dense_schedule(self, name, learning_rate, total_steps, warmup_steps):
        return dense_schedule(name, learning_rate, total_steps, warmup_steps)

    def _tabulate(self, schedule, steps):
        return _lr.tabulate(schedule, steps)

    def _default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _fit(self, model, data, **arguments):
        callbacks = arguments["callbacks"]
        if isinstance(data, _data.EpochOrdered):
            callbacks = [data.follow(), *callbacks]  # each epoch in its own order (see EpochOrdered.follow)
        model.fit(data, epochs=arguments["epochs"], initial_epoch=arguments["initial_epoch"],
                  steps_per_epoch=arguments["steps_per_epoch"], validation_data=arguments["validation"],
                  callbacks=callbacks, verbose=arguments["verbose"], shuffle=False)

    def _chance_guard_callback(self):
        return _callbacks.ChanceGuard()

    def _identity_extra(self):
        return {"backend": keras.backend.backend()}


class IMP(_runner.IMPRunner, Keras3Runner):
    __doc__ = _runner.IMPRunner.__doc__

    def _prepare(self, model, train, steps, verbose):
        return model if _masks.wrappers(model) else _masks.wrap(model, verbose=verbose)

    def _imp_callback(self, plan, **arguments):
        return _callbacks.IMP(plan, **arguments)


class Dense(_runner.DenseRunner, Keras3Runner):
    __doc__ = _runner.DenseRunner.__doc__

    def _dense_run_callback(self, epochs, steps, **arguments):
        return _callbacks.DenseRun(epochs, steps, **arguments)
