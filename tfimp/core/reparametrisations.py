"""What the pruning-during-training baselines' forward pass uses in place of the dense kernel, by name.

Each reparametrisation is a function ``effective(weight, mask, threshold,
ops, **state)`` of the dense kernel, its mask and its learnable parameter
(STR: the layer's threshold; CS: one score per weight; DST: one threshold
per output unit; DPF: none), written once against a small set of array
operations ``ops`` (``cast``, ``sign``, ``abs``, ``relu``, ``sigmoid``,
``stop_gradient``, ``exp``, ``sum``, ``minimum``):
the tf_keras front end passes TensorFlow's (:mod:`tfimp.tf_keras.reparametrisations`),
the Keras 3 front end ``keras.ops``, so every backend runs the same
definition. ``finalize`` rules say which mask the finished run keeps. A new
one is a function and a registry entry:

    @tfimp.core.reparametrisations.REPARAMETRISATIONS.register("my_reparam")
    def my_reparam(weight, mask, threshold, ops):
        return weight * ops.cast(mask, weight.dtype)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from typing import Callable

from tfimp.core.registry import Registry

#: name -> ``effective(weight, mask, threshold, ops) -> tensor``: the kernel the forward pass uses.
REPARAMETRISATIONS: Registry[Callable] = Registry("reparametrisation")
#: The reparametrisation of a finalized wrapper: the plain masked kernel.
NONE = "none"
#: Reparametrisations with one learnable threshold per layer.
WITH_THRESHOLD = {"str"}


@REPARAMETRISATIONS.register("dpf")
def dynamic_pruning_with_feedback(weight, mask, threshold, ops):
    """DPF (Lin et al. 2020, arXiv:2006.07253): the value ``weight * mask``, the gradient to all of ``weight``
    (straight-through), so pruned weights keep learning and may come back when the mask is recomputed."""
    del threshold
    masked = weight * ops.cast(mask, weight.dtype)
    return weight + ops.stop_gradient(masked - weight)


@REPARAMETRISATIONS.register("str")
def soft_threshold(weight, mask, threshold, ops):
    """STR (Kusupati et al. 2020, arXiv:2002.03231): ``sign(w) * relu(|w| - sigmoid(s))``, ``s`` learnable."""
    del mask
    return ops.sign(weight) * ops.relu(ops.abs(weight) - ops.sigmoid(ops.cast(threshold, weight.dtype)))


@REPARAMETRISATIONS.register("cs")
def continuous_sparsification(weight, mask, threshold, ops, *, temperature, initial):
    """CS (Savarese et al. 2020, arXiv:1912.04427): ``w * sigmoid(beta * s) / sigmoid(s_init)``, one learnable
    score ``s`` per weight (``threshold``), the temperature ``beta`` rising during training."""
    del mask
    scores = ops.cast(threshold, weight.dtype)
    return weight * ops.sigmoid(temperature * scores) / ops.sigmoid(ops.cast(initial, weight.dtype))


def _dst_step(distance, ops):
    """``1[x > 0]`` in the forward pass, DST's surrogate derivative in the backward pass:
    ``2 - 4|x|`` for ``|x| <= 0.4``, ``0.4`` for ``0.4 < |x| <= 1``, ``0`` beyond.

    ``x * stop_gradient(d) - stop_gradient(x * d)`` is zero in value and has derivative ``d``.
    """
    size = ops.abs(distance)
    near = ops.cast(size <= 0.4, distance.dtype)
    middle = ops.cast(size <= 1.0, distance.dtype) - near
    slope = ops.stop_gradient(near * (2.0 - 4.0 * size) + middle * 0.4)
    step = ops.cast(distance > 0, distance.dtype)
    return ops.stop_gradient(step) + distance * slope - ops.stop_gradient(distance * slope)


@REPARAMETRISATIONS.register("dst")
def dynamic_sparse_threshold(weight, mask, threshold, ops):
    """DST (Liu et al. 2020, arXiv:2005.06870): ``w * step(|w| - t)`` with one learnable threshold ``t`` per
    output unit (the kernel's last axis), the step's gradient a surrogate (:func:`_dst_step`)."""
    del mask
    return weight * _dst_step(ops.abs(weight) - ops.cast(threshold, weight.dtype), ops)


@dataclasses.dataclass(frozen=True)
class LearnedParameter:
    """A learnable variable a reparametrisation adds beside each masked weight (CS's scores, DST's thresholds).

    Attributes:
      name: the variable's name.
      shape: ``weight shape -> parameter shape``.
      initial: the hyper-parameter that holds its start value, or a number.
      penalty: ``(parameter, ops, **state) -> scalar`` added to the loss times the hyper-parameter ``penalty_weight``.
      penalty_weight: that hyper-parameter's name.
    """

    name: str
    shape: Callable[[tuple], tuple]
    initial: object
    penalty: Callable
    penalty_weight: str


#: Reparametrisations with a learnable parameter per masked weight, and what it is.
PARAMETERS: dict[str, LearnedParameter] = {
    "cs": LearnedParameter("cs_scores", lambda shape: tuple(shape), "cs_init",
                           lambda scores, ops, temperature: ops.sum(ops.sigmoid(temperature * scores)), "cs_lambda"),
    "dst": LearnedParameter("dst_thresholds", lambda shape: tuple(shape[-1:]), 0.0,
                            lambda thresholds, ops: ops.sum(ops.exp(-thresholds)), "dst_alpha"),
}
#: DST resets a layer's thresholds to 0 when it keeps at most this share of its weights.
DST_RESET_KEPT = 0.01


def needs_reset(magnitudes, thresholds) -> bool:
    """DST's reset rule for one masked weight (numpy arrays): does ``|w| > t`` keep at most :data:`DST_RESET_KEPT`
    of its entries? ``thresholds`` broadcast over the last axis."""
    return float(np.mean(magnitudes > thresholds)) <= DST_RESET_KEPT


def temperature(step, total_steps: int, final: float, ops):
    """CS's temperature at ``step`` (a tensor): ``final ** (min(step, total) / total)``, 1 at the start."""
    progress = ops.minimum(ops.cast(step, "float32") / float(max(1, total_steps)), 1.0)
    return ops.exp(progress * math.log(final))


def _str_kept(weight, mask, threshold, ops, **state):
    return ops.cast(effective("str", weight, mask, threshold, ops, **state) != 0, weight.dtype)


def _cs_kept(weight, mask, scores, ops, **state):
    return ops.cast(ops.cast(scores, weight.dtype) > 0, weight.dtype)


def _dst_kept(weight, mask, thresholds, ops, **state):
    return ops.cast(ops.abs(weight) - ops.cast(thresholds, weight.dtype) > 0, weight.dtype)


#: Reparametrisation -> its rule for the finished mask, ``fn(weight, mask, parameter, ops, **state)`` (a 0/1
#: tensor), for those whose mask is not the mask variable: STR keeps the soft-thresholded kernel's non-zeros, CS
#: the scores above 0, DST the weights above their unit's threshold. A new method with its own rule adds an entry.
KEPT = {"str": _str_kept, "cs": _cs_kept, "dst": _dst_kept}
#: Reparametrisations whose finished mask is not the mask they ran with but :func:`kept` (STR, CS, DST).
MASK_FROM_EFFECTIVE = frozenset(KEPT)


def kept(name: str, weight, mask, threshold, ops, **state):
    """Where the finished (or current) kernel of reparametrisation ``name`` is non-zero, as a 0/1 tensor: its
    :data:`KEPT` rule, else the mask."""
    rule = KEPT.get(name)
    return ops.cast(mask, weight.dtype) if rule is None else rule(weight, mask, threshold, ops, **state)


def known() -> tuple[str, ...]:
    """Every reparametrisation a wrapper accepts, ``"none"`` included."""
    return (*REPARAMETRISATIONS.known(), NONE)


def check(name: str) -> str:
    """``name`` if a wrapper accepts it; else a ValueError naming those it does."""
    if name not in known():
        raise ValueError(f"reparam must be one of {known()}, got {name!r}")
    return name


def effective(name: str, weight, mask, threshold, ops, **state):
    """The kernel reparametrisation ``name`` gives the forward pass (``"none"``: ``weight * mask``); ``state``
    holds what the method needs beyond its parameter (CS: ``temperature`` and ``initial``)."""
    if name == NONE:
        return weight * ops.cast(mask, weight.dtype)
    return REPARAMETRISATIONS.get(name)(weight, mask, threshold, ops, **state)
