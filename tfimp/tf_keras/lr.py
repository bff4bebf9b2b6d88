"""Learning-rate schedules: dense training, and retraining after pruning.

Dense-phase schedules are Keras ``LearningRateSchedule``s with a flat,
round-tripping ``get_config``: :class:`StepDecay`, :class:`Cosine` and
:class:`LinearToZero` (the budgeted schedule), each with an optional linear
warm-up, all computed with elementwise ops so a whole run can be tabulated
at once.

Retraining schedules (FT, LRW, SLR, CLR, LLR, ALLR; defined in
``docs/algorithms.md``) are built from the original training
schedule and its length ``M`` in steps, plus the retraining length ``N`` in
steps, by :func:`retrain_schedule`. Each is a small function registered by
name that maps the tabulated original schedule to ``N`` values; the result
is a :class:`Tabulated` schedule whose value at step ``t`` (counted from the
start of the cycle) is the retraining learning rate.

Notation: ``eta_max`` = max of the original schedule, ``eta_min`` = its min
after warm-up, ``W = floor(0.1 * N)`` the warm-up of SLR/CLR/LLR/ALLR (a
half-cosine ramp from 0), ``j = t - W``.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np

from tfimp.tf_keras._backend import keras, tf
from tfimp.core import retraining as _retraining
from tfimp.core import schedules as _rules

Schedule = Union[keras.optimizers.schedules.LearningRateSchedule, Callable[[int], float], float]


# --------------------------------------------------------------------------
# Dense-phase schedules: the rules of tfimp.core.schedules, in TensorFlow ops
# --------------------------------------------------------------------------

_TF_OPS = _rules.Ops(to_float=lambda x: tf.cast(x, tf.float32), where=tf.where, clip=tf.clip_by_value,
                     power=tf.pow, cos=tf.cos, zeros_like=tf.zeros_like)


StepDecay, Cosine, LinearToZero = _rules.schedule_classes(keras.optimizers.schedules.LearningRateSchedule, _TF_OPS,
                                                          __name__, keras.utils.register_keras_serializable("tfimp"))


@keras.utils.register_keras_serializable(package="tfimp")
class Tabulated(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule given by its values at steps 0..len-1; the last value holds after."""

    def __init__(self, values: Sequence[float], name: str = "tabulated"):
        if len(values) == 0:
            raise ValueError("Tabulated needs at least one value")
        self.values = [float(v) for v in values]
        self.name = name
        self._table = tf.constant(self.values, dtype=tf.float32)

    def __call__(self, step):
        index = tf.clip_by_value(tf.cast(step, tf.int64), 0, len(self.values) - 1)
        return tf.gather(self._table, index)

    def get_config(self) -> dict:
        return {"values": self.values, "name": self.name}


@keras.utils.register_keras_serializable(package="tfimp")
class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """An IMP run's learning rate, evaluated in the graph: one phase's table at a time.

    The IMP callback loads each phase's values (the dense schedule, then each
    cycle's retraining schedule) with :meth:`set_phase` once, when the phase
    begins; every step then reads ``values[step - start]`` (the last value
    holds after the end) inside the training function, so nothing runs in
    Python per step and ``steps_per_execution`` and XLA see a plain schedule.
    Its variables are not checkpointed: the callback reloads the phase after
    a resume.
    """

    def __init__(self, initial_learning_rate: float = 0.0):
        self.initial_learning_rate = float(initial_learning_rate)
        # Unknown length: phases differ in length and the table is replaced whole.
        self._values = tf.Variable([self.initial_learning_rate], dtype=tf.float32, trainable=False,
                                   shape=tf.TensorShape([None]), name="imp_learning_rates")
        self._start = tf.Variable(0, dtype=tf.int64, trainable=False, name="imp_phase_start_step")

    def set_phase(self, values: Sequence[float], start_step: int) -> None:
        """From ``start_step`` (optimizer steps) on, the rate is ``values[step - start_step]``."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"a phase needs a non-empty 1-D table of rates, got shape {values.shape}")
        self._values.assign(values)
        self._start.assign(int(start_step))

    def __call__(self, step):
        values = self._values.read_value()
        index = tf.clip_by_value(tf.cast(step, tf.int64) - self._start, 0, tf.size(values, out_type=tf.int64) - 1)
        return tf.gather(values, index)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate}


def tabulate(schedule: Schedule, steps: int) -> np.ndarray:
    """Values of ``schedule`` (a Keras schedule, a callable of the step, or a constant) at steps ``0..steps-1``."""
    return _rules.tabulate(schedule, steps, all_steps=lambda n: tf.range(n, dtype=tf.int64),
                           to_numpy=lambda value: value.numpy() if hasattr(value, "numpy") else value)


warmup_steps_of = _rules.warmup_steps_of


# --------------------------------------------------------------------------
# Retraining schedules
# --------------------------------------------------------------------------


# The tables are framework-free (tfimp.core.retraining); these names are the public ones of tfimp.lr.
Original = _retraining.Original
register = _retraining.register
known = _retraining.known
check_name = _retraining.check_name
retrain_values = _retraining.retrain_values
allr_initial_lr = _retraining.allr_initial_lr


def retrain_schedule(name: str, *, original: Schedule, original_steps: int, retrain_steps: int,
                     original_warmup_steps: int | None = None, **options) -> Tabulated:
    """The learning-rate schedule of one retraining cycle.

    Args:
      name: ``ft``, ``lrw``, ``slr``, ``clr``, ``llr``, ``allr`` or a registered name.
      original: the original training schedule (Keras schedule, callable of the
        step, or a constant).
      original_steps: its length ``M`` in steps.
      retrain_steps: the cycle's length ``N`` in steps.
      original_warmup_steps: warm-up length of ``original`` (default: what the
        schedule declares as ``warmup_steps``, else 0).
      **options: schedule options, e.g. ``initial_lr`` for ALLR.

    Returns:
      A :class:`Tabulated` schedule; its value at step ``t`` of the cycle is
      the learning rate.

    Raises:
      ValueError: unknown name (listing the known ones) or lengths < 1.
    """
    warmup = warmup_steps_of(original) if original_warmup_steps is None else int(original_warmup_steps)
    table = Original(tabulate(original, int(original_steps)), warmup)
    return Tabulated(retrain_values(name, table, retrain_steps, **options), name=name)
