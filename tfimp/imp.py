"""The IMP driver for users who do not want to write the ``fit`` call.

``IMP(...).run(model, train, validation, test, workdir=...)`` wraps the model
if needed, compiles it with SGD (momentum, Nesterov when weight decay is
used, weight decay), builds the dense learning-rate schedule, and runs the
whole plan through one ``model.fit`` with :class:`tfimp.callbacks.IMP`.
Rerunning the same call with the same workdir resumes; a finished run is
not redone.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from tfimp import callbacks as _callbacks
from tfimp import lr as _lr
from tfimp import tfmot_glue
from tfimp._backend import keras, tf
from tfimp.plan import Plan

DENSE_SCHEDULES = ("step", "cosine", "linear", "constant")


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """A dense-phase schedule by name, over ``total_steps``.

    ``step``: x0.1 at 50% and 75% of training (the paper's CIFAR schedule);
    ``cosine``: cosine to 0; ``linear``: linear to 0 (BIMP's budgeted
    schedule); ``constant``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    decay_steps = max(1, total_steps - warmup_steps)
    if name == "step":
        boundaries = sorted({warmup_steps + int(decay_steps * 0.5), warmup_steps + int(decay_steps * 0.75)})
        return _lr.StepDecay(learning_rate, boundaries, 0.1, warmup_steps)
    if name == "cosine":
        return _lr.Cosine(learning_rate, decay_steps, 0.0, warmup_steps)
    if name == "linear":
        return _lr.LinearToZero(learning_rate, decay_steps, warmup_steps)
    if name == "constant":
        return float(learning_rate)
    raise ValueError(f"unknown dense schedule {name!r}; known: {list(DENSE_SCHEDULES)}")


def _as_dataset(data, batch_size: int, shuffle: bool, seed: int):
    if data is None or isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        dataset = tf.data.Dataset.from_tensor_slices((np.asarray(data[0]), np.asarray(data[1])))
        if shuffle:
            dataset = dataset.shuffle(len(data[0]), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    raise TypeError(f"data must be a batched tf.data.Dataset or an (x, y) tuple of arrays, got {type(data).__name__}")


def _steps_per_epoch(dataset) -> Optional[int]:
    cardinality = int(tf.data.experimental.cardinality(dataset))
    return cardinality if cardinality > 0 else None


class IMP:
    """Prune-retrain with one call.

    Example:
      >>> imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=10, retrain_epochs=2)
      >>> rows = imp.run(model, (x_train, y_train), test=(x_test, y_test), workdir="runs/imp")
      >>> imp.model    # the trained, wrapped model

    Args:
      plan: a :class:`tfimp.Plan`; or give its fields as keyword arguments.
      learning_rate: eta_max of the dense schedule.
      dense_schedule: ``step``, ``cosine``, ``linear``, ``constant`` or a Keras
        schedule in steps (then ``learning_rate`` is unused).
      warmup_epochs: linear warm-up of the named dense schedules.
      momentum, weight_decay, nesterov: SGD settings; Nesterov defaults to
        ``weight_decay > 0`` as in the paper's code.
      loss, metrics: compile arguments (default: sparse categorical
        cross-entropy on logits, accuracy).
      batch_size: for data given as arrays.
      steps_per_epoch: for datasets of unknown length.
      seed: shuffling seed for data given as arrays.
    """

    def __init__(self, plan: Optional[Plan] = None, *, learning_rate: float = 0.1,
                 dense_schedule: Union[str, _lr.Schedule] = "step", warmup_epochs: int = 0,
                 momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: Optional[bool] = None,
                 loss=None, metrics: Sequence = ("accuracy",), batch_size: int = 128,
                 steps_per_epoch: Optional[int] = None, seed: int = 0, **plan_fields):
        if plan is None:
            plan = Plan(**plan_fields)
        elif plan_fields:
            raise TypeError(f"give a plan or plan fields, not both (got {sorted(plan_fields)})")
        if isinstance(dense_schedule, str) and dense_schedule not in DENSE_SCHEDULES:
            raise ValueError(f"unknown dense schedule {dense_schedule!r}; known: {list(DENSE_SCHEDULES)}")
        self.plan = plan
        self.learning_rate = float(learning_rate)
        self.dense_schedule = dense_schedule
        self.warmup_epochs = int(warmup_epochs)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(weight_decay > 0) if nesterov is None else bool(nesterov)
        self.loss = loss
        self.metrics = list(metrics)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.model: Optional[keras.Model] = None
        self.callback: Optional[_callbacks.IMP] = None

    @classmethod
    def bimp(cls, target_sparsity: float, cycles: int, *, total_epochs: int, dense_epochs: int,
             criterion: str = "global", **settings) -> "IMP":
        """BIMP with the linear-to-zero dense schedule and ALLR retraining."""
        plan_keys = {"optimizer_state", "recalibrate_bn"}
        plan = Plan.bimp(target_sparsity, cycles, total_epochs=total_epochs, dense_epochs=dense_epochs,
                         criterion=criterion, **{k: settings.pop(k) for k in list(settings) if k in plan_keys})
        settings.setdefault("dense_schedule", "linear")
        return cls(plan, **settings)

    def _schedule(self, steps_per_epoch: int):
        if not isinstance(self.dense_schedule, str):
            return self.dense_schedule
        total = self.plan.reference_epochs * steps_per_epoch
        return dense_schedule(self.dense_schedule, self.learning_rate, total, self.warmup_epochs * steps_per_epoch)

    def run(self, model: keras.Model, train, validation=None, test=None, *, workdir: Optional[str] = None,
            overwrite: bool = False, verbose: int = 1) -> list[dict]:
        """Runs the plan on ``model``; returns one row per cycle (cycle 0 = dense phase).

        ``model`` is wrapped with :func:`tfimp.wrap` unless it already is; the
        trained, wrapped model is ``self.model`` afterwards.
        """
        tfmot_glue.check_tf_keras_model(model)
        train = _as_dataset(train, self.batch_size, shuffle=True, seed=self.seed)
        validation = _as_dataset(validation, self.batch_size, shuffle=False, seed=self.seed)
        test = _as_dataset(test, self.batch_size, shuffle=False, seed=self.seed)
        steps = self.steps_per_epoch or _steps_per_epoch(train)
        if not steps:
            raise ValueError("the training data has unknown length; pass steps_per_epoch to IMP")

        if not tfmot_glue.wrappers(model):
            with model.distribute_strategy.scope():
                model = tfmot_glue.wrap(model)
        with model.distribute_strategy.scope():
            model.compile(
                optimizer=keras.optimizers.SGD(self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
                                               weight_decay=self.weight_decay or None),
                loss=self.loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=self.metrics,
            )
        self.model = model
        self.callback = _callbacks.IMP(
            self.plan, schedule=self._schedule(steps), steps_per_epoch=steps, test_data=test,
            recalibration_data=train if self.plan.recalibrate_bn else None, workdir=workdir,
            overwrite=overwrite, verbose=verbose,
        )
        initial_epoch = self.callback.restore(model)
        if self.callback.finished:
            if verbose:
                print(f"[tfimp] {workdir!r} holds a finished run; not redoing it:\n"
                      + _callbacks.format_table(self.callback.rows), flush=True)
            return list(self.callback.rows)
        model.fit(train, epochs=self.plan.total_epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=self.steps_per_epoch, validation_data=validation,
                  callbacks=[self.callback], verbose=verbose)
        return list(self.callback.rows)
