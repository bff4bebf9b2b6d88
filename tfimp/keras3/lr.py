"""Learning-rate schedules on Keras 3, in ``keras.ops``: the same names and values as the tf_keras ``tfimp.lr``.

Dense-phase schedules (:class:`StepDecay`, :class:`Cosine`,
:class:`LinearToZero`, each with a linear warm-up) and :class:`Tabulated`
(one value per step, the form of every retraining schedule). The retraining
tables themselves are framework-free (:mod:`tfimp.core.retraining`).
``tfimp.lr`` is this module in a Keras 3 process.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import keras
import numpy as np
from keras import ops

from tfimp.core import schedules as _rules

Schedule = Union[keras.optimizers.schedules.LearningRateSchedule, Callable[[int], float], float]


_KERAS_OPS = _rules.Ops(to_float=lambda x: ops.cast(x, "float32"), where=ops.where, clip=ops.clip,
                        power=ops.power, cos=ops.cos, zeros_like=ops.zeros_like)


StepDecay, Cosine, LinearToZero = _rules.schedule_classes(keras.optimizers.schedules.LearningRateSchedule, _KERAS_OPS,
                                                          __name__, keras.saving.register_keras_serializable("tfimp"))


@keras.saving.register_keras_serializable(package="tfimp")
class Tabulated(keras.optimizers.schedules.LearningRateSchedule):
    """``values[step - start_step]``, the first value before and the last after.

    The table is a constant of the traced step (JAX bakes what Python holds
    into the trace), so the IMP callback makes a new one per phase and has
    Keras retrace the train function, as Keras' own ``Model.quantize`` does
    after a change.
    """

    def __init__(self, values: Sequence[float], start_step: int = 0, name: str = "tabulated"):
        if len(values) == 0:
            raise ValueError("Tabulated needs at least one value")
        self.values = [float(v) for v in values]
        self.start_step = int(start_step)
        self.name = name
        self._table = np.asarray(self.values, dtype=np.float32)

    def __call__(self, step):
        index = ops.clip(ops.cast(step, "int32") - self.start_step, 0, len(self.values) - 1)
        return ops.take(ops.convert_to_tensor(self._table), index)

    def get_config(self) -> dict:
        return {"values": self.values, "start_step": self.start_step, "name": self.name}


def tabulate(schedule: Schedule, steps: int) -> np.ndarray:
    """Values of ``schedule`` (a Keras schedule, a callable of the step, or a constant) at steps ``0..steps-1``."""
    return _rules.tabulate(schedule, steps, all_steps=lambda n: ops.arange(n, dtype="int32"),
                           to_numpy=ops.convert_to_numpy)


warmup_steps_of = _rules.warmup_steps_of


from tfimp.core.retraining import Original, allr_initial_lr, check_name, known, register, retrain_values  # noqa: E402,F401


def retrain_schedule(name: str, *, original: Schedule, original_steps: int, retrain_steps: int,
                     original_warmup_steps: int | None = None, **options) -> Tabulated:
    """The learning-rate schedule of one retraining cycle (see the tf_keras ``tfimp.lr.retrain_schedule``)."""
    warmup = warmup_steps_of(original) if original_warmup_steps is None else int(original_warmup_steps)
    table = Original(tabulate(original, int(original_steps)), warmup)
    return Tabulated(retrain_values(name, table, retrain_steps, **options), name=name)
