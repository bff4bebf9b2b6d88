"""The dense-phase learning-rate schedules, written once for every front end.

Each rule (:class:`StepDecayRule`, :class:`CosineRule`, :class:`LinearToZeroRule`)
holds its settings, checks them, gives its flat config, and computes its
rate at a step with the elementwise ops it is handed (:class:`Ops`: TensorFlow's
for tf_keras, ``keras.ops`` for Keras 3), so a whole run tabulates in one call.
Each front end makes its Keras ``LearningRateSchedule`` from a rule and its
ops; the formulas and the validation are here only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Ops:
    """The few elementwise ops a rule needs, from one framework."""

    to_float: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    clip: Callable[[Any, float, float], Any]
    power: Callable[[Any, Any], Any]
    cos: Callable[[Any], Any]
    zeros_like: Callable[[Any], Any]


def _warmup(ops: Ops, step, warmup_steps: int, value):
    """Linear warm-up from ``value / warmup_steps`` to ``value`` over the first steps."""
    if warmup_steps <= 0:
        return value
    return ops.where(step < warmup_steps, value * ((step + 1.0) / float(warmup_steps)), value)


def _decay_progress(ops: Ops, step, warmup_steps: int, decay_steps: int):
    """Fraction of the decay done at ``step`` (0 during warm-up, 1 at the end and after)."""
    return ops.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)


class StepDecayRule:
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

    def rate(self, ops: Ops, step):
        step = ops.to_float(step)
        passed = ops.zeros_like(step)
        for boundary in self.boundaries:
            passed = passed + ops.to_float(step >= boundary)
        return _warmup(ops, step, self.warmup_steps, self.initial_learning_rate * ops.power(self.factor, passed))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "boundaries": self.boundaries,
                "factor": self.factor, "warmup_steps": self.warmup_steps}


class CosineRule:
    """Cosine decay from ``initial`` to ``final`` over ``decay_steps`` (after warm-up)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, final_learning_rate: float = 0.0,
                 warmup_steps: int = 0):
        if decay_steps < 1:
            raise ValueError(f"Cosine decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.final_learning_rate = float(final_learning_rate)
        self.warmup_steps = int(warmup_steps)

    def rate(self, ops: Ops, step):
        step = ops.to_float(step)
        progress = _decay_progress(ops, step, self.warmup_steps, self.decay_steps)
        value = self.final_learning_rate + (self.initial_learning_rate - self.final_learning_rate) * 0.5 * (
            1.0 + ops.cos(math.pi * progress))
        return _warmup(ops, step, self.warmup_steps, value)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "final_learning_rate": self.final_learning_rate, "warmup_steps": self.warmup_steps}


class LinearToZeroRule:
    """Linear decay from ``initial`` to 0 over ``decay_steps`` (after warm-up): the budgeted schedule."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, warmup_steps: int = 0):
        if decay_steps < 1:
            raise ValueError(f"LinearToZero decay_steps must be >= 1, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)

    def rate(self, ops: Ops, step):
        step = ops.to_float(step)
        progress = _decay_progress(ops, step, self.warmup_steps, self.decay_steps)
        return _warmup(ops, step, self.warmup_steps, self.initial_learning_rate * (1.0 - progress))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps}


RULES = (StepDecayRule, CosineRule, LinearToZeroRule)


def schedule_classes(base: type, ops: Ops, module: str, register: Callable[[type], type]) -> list[type]:
    """One Keras schedule class per rule (``StepDecay``, ``Cosine``, ``LinearToZero``) on ``base``.

    Args:
      base: the Keras' ``LearningRateSchedule``.
      ops: that framework's elementwise ops.
      module: the module the classes are said to live in.
      register: the Keras' serializable registration (so saved optimizers load back).
    """
    classes = []
    for rule in RULES:
        name = rule.__name__[: -len("Rule")]
        cls = type(name, (rule, base), {"__call__": lambda self, step: self.rate(ops, step), "__doc__": rule.__doc__,
                                        "__module__": module, "__qualname__": name})
        classes.append(register(cls))
    return classes


def tabulate(schedule, steps: int, *, all_steps: Callable[[int], Any], to_numpy: Callable[[Any], Any]) -> np.ndarray:
    """Values of ``schedule`` at steps ``0..steps-1`` as float64.

    Accepts a Keras schedule, a callable of the step, or a constant. Tries one
    vectorised call on ``all_steps(steps)`` (the framework's step range) first,
    then falls back to one call per step.
    """
    if steps < 1:
        raise ValueError(f"cannot tabulate a schedule over {steps} steps")
    if isinstance(schedule, (int, float)):
        return np.full(steps, float(schedule))
    if not callable(schedule):
        raise TypeError(f"expected a LearningRateSchedule, a callable of the step or a number, got {schedule!r}")
    try:
        values = np.asarray(to_numpy(schedule(all_steps(steps))), dtype=np.float64)
        if values.shape == (steps,):
            return values
    except Exception:  # not vectorisable: evaluate step by step below
        pass
    return np.array([float(to_numpy(schedule(step))) for step in range(steps)], dtype=np.float64)


def warmup_steps_of(schedule) -> int:
    """The warm-up length a schedule declares as ``warmup_steps`` (0 when it declares none)."""
    return int(getattr(schedule, "warmup_steps", 0) or 0)


#: The dense schedules a runner builds by name.
DENSE_SCHEDULES = ("step", "cosine", "linear", "constant")


def dense_schedule(name: str, learning_rate: float, total_steps: int, warmup_steps: int, *, step_decay: type,
                   cosine: type, linear_to_zero: type):
    """A dense-phase schedule by name, over ``total_steps``, made of the given front end's classes.

    ``step``: x0.1 at 50% and 75% of training (the paper's CIFAR schedule);
    ``cosine``: cosine to 0; ``linear``: linear to 0 (BIMP's budgeted
    schedule); ``constant``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    decay_steps = max(1, total_steps - warmup_steps)
    if name == "step":
        boundaries = sorted({warmup_steps + int(decay_steps * 0.5), warmup_steps + int(decay_steps * 0.75)})
        return step_decay(learning_rate, boundaries, 0.1, warmup_steps)
    if name == "cosine":
        return cosine(learning_rate, decay_steps, 0.0, warmup_steps)
    if name == "linear":
        return linear_to_zero(learning_rate, decay_steps, warmup_steps)
    if name == "constant":
        return float(learning_rate)
    raise ValueError(f"unknown dense schedule {name!r}; known: {list(DENSE_SCHEDULES)}")
