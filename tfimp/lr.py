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

import math
from typing import Callable, Sequence, Union

import numpy as np

from tfimp._backend import keras, tf
from tfimp.core import retraining as _retraining

Schedule = Union[keras.optimizers.schedules.LearningRateSchedule, Callable[[int], float], float]


# --------------------------------------------------------------------------
# Dense-phase schedules
# --------------------------------------------------------------------------


def _warmup(step, warmup_steps: int, value):
    """Linear warm-up from ``value / warmup_steps`` to ``value`` over the first steps."""
    if warmup_steps <= 0:
        return value
    ramp = (step + 1.0) / float(warmup_steps)
    return tf.where(step < warmup_steps, value * ramp, value)


def _decay_progress(step, warmup_steps: int, decay_steps: int):
    """Fraction of the decay done at ``step`` (0 during warm-up, 1 at the end and after)."""
    return tf.clip_by_value((step - warmup_steps) / decay_steps, 0.0, 1.0)


@keras.utils.register_keras_serializable(package="tfimp")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant decay: ``initial * factor**(number of boundaries passed)``.

    Args:
      initial_learning_rate: the rate before the first boundary.
      boundaries: increasing steps at which the rate is multiplied by ``factor``.
      factor: the decay factor (0.1 in the paper's CIFAR runs).
      warmup_steps: linear warm-up length (0 = none).
    """

    def __init__(self, initial_learning_rate: float, boundaries: Sequence[int], factor: float = 0.1,
                 warmup_steps: int = 0):
        boundaries = [int(b) for b in boundaries]
        if any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"StepDecay boundaries must increase strictly, got {boundaries}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        passed = tf.zeros_like(step)
        for boundary in self.boundaries:
            passed += tf.cast(step >= boundary, tf.float32)
        value = self.initial_learning_rate * tf.pow(self.factor, passed)
        return _warmup(step, self.warmup_steps, value)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "boundaries": self.boundaries,
                "factor": self.factor, "warmup_steps": self.warmup_steps}


@keras.utils.register_keras_serializable(package="tfimp")
class Cosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``initial`` to ``final`` over ``decay_steps`` (after warm-up)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, final_learning_rate: float = 0.0,
                 warmup_steps: int = 0):
        if decay_steps < 1:
            raise ValueError(f"Cosine decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.final_learning_rate = float(final_learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = _decay_progress(step, self.warmup_steps, self.decay_steps)
        value = self.final_learning_rate + (self.initial_learning_rate - self.final_learning_rate) * 0.5 * (
            1.0 + tf.cos(math.pi * progress))
        return _warmup(step, self.warmup_steps, value)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "final_learning_rate": self.final_learning_rate, "warmup_steps": self.warmup_steps}


@keras.utils.register_keras_serializable(package="tfimp")
class LinearToZero(keras.optimizers.schedules.LearningRateSchedule):
    """Linear decay from ``initial`` to 0 over ``decay_steps`` (after warm-up): the budgeted schedule."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, warmup_steps: int = 0):
        if decay_steps < 1:
            raise ValueError(f"LinearToZero decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = _decay_progress(step, self.warmup_steps, self.decay_steps)
        return _warmup(step, self.warmup_steps, self.initial_learning_rate * (1.0 - progress))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps}


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
    """Values of ``schedule`` at steps ``0..steps-1`` as float64.

    Accepts a Keras schedule, a callable of the step, or a constant. Tries one
    vectorised call first, then falls back to one call per step.
    """
    if steps < 1:
        raise ValueError(f"cannot tabulate a schedule over {steps} steps")
    if isinstance(schedule, (int, float)):
        return np.full(steps, float(schedule))
    if not callable(schedule):
        raise TypeError(f"expected a LearningRateSchedule, a callable of the step or a number, got {schedule!r}")
    try:
        values = np.asarray(_to_numpy(schedule(tf.range(steps, dtype=tf.int64))), dtype=np.float64)
        if values.shape == (steps,):
            return values
    except Exception:  # not vectorisable: evaluate step by step below
        pass
    return np.array([float(_to_numpy(schedule(step))) for step in range(steps)], dtype=np.float64)


def _to_numpy(value):
    return value.numpy() if hasattr(value, "numpy") else value


def warmup_steps_of(schedule: Schedule) -> int:
    """The warm-up length a schedule declares as ``warmup_steps`` (0 when it declares none)."""
    return int(getattr(schedule, "warmup_steps", 0) or 0)


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
