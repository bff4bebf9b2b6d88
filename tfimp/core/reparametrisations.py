"""What the pruning-during-training baselines' forward pass uses in place of the dense kernel, by name.

Each reparametrisation is a function ``effective(weight, mask, threshold,
ops)`` of the dense kernel, its mask and (STR only) the layer's learnable
threshold, written once against a small set of array operations ``ops``
(``cast``, ``sign``, ``abs``, ``relu``, ``sigmoid``, ``stop_gradient``):
the tf_keras front end passes TensorFlow's (:mod:`tfimp.tf_keras.reparametrisations`),
the Keras 3 front end ``keras.ops``, so every backend runs the same
definition. ``finalize`` rules say which mask the finished run keeps. A new
one is a function and a registry entry:

    @tfimp.core.reparametrisations.REPARAMETRISATIONS.register("my_reparam")
    def my_reparam(weight, mask, threshold, ops):
        return weight * ops.cast(mask, weight.dtype)
"""

from __future__ import annotations

from typing import Callable

from tfimp.core.registry import Registry

#: name -> ``effective(weight, mask, threshold, ops) -> tensor``: the kernel the forward pass uses.
REPARAMETRISATIONS: Registry[Callable] = Registry("reparametrisation")
#: The reparametrisation of a finalized wrapper: the plain masked kernel.
NONE = "none"
#: Reparametrisations whose finished mask is where the effective kernel is non-zero (not the mask they ran with).
MASK_FROM_EFFECTIVE = {"str"}
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


def known() -> tuple[str, ...]:
    """Every reparametrisation a wrapper accepts, ``"none"`` included."""
    return (*REPARAMETRISATIONS.known(), NONE)


def check(name: str) -> str:
    """``name`` if a wrapper accepts it; else a ValueError naming those it does."""
    if name not in known():
        raise ValueError(f"reparam must be one of {known()}, got {name!r}")
    return name


def effective(name: str, weight, mask, threshold, ops):
    """The kernel reparametrisation ``name`` gives the forward pass (``"none"``: ``weight * mask``)."""
    if name == NONE:
        return weight * ops.cast(mask, weight.dtype)
    return REPARAMETRISATIONS.get(name)(weight, mask, threshold, ops)
