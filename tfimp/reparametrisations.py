"""What the pruning-during-training baselines' forward pass uses in place of the dense kernel, by name.

Each reparametrisation is a function ``effective(weight, mask, threshold)``
of the dense kernel, its mask and (STR only) the layer's learnable
threshold, in TensorFlow ops, registered in :data:`REPARAMETRISATIONS`;
``finalize`` rules say which mask the finished run keeps. The wrapper that
applies them is :class:`tfimp.tfmot_glue.ReparamPruneLowMagnitude`; the
runners are :mod:`tfimp.baselines`. A new one is a function and a
registry entry:

    @REPARAMETRISATIONS.register("my_reparam")
    def my_reparam(weight, mask, threshold):
        return weight * tf.cast(mask, weight.dtype)
"""

from __future__ import annotations

from typing import Callable

from tfimp._backend import tf
from tfimp.core.registry import Registry

#: name -> ``effective(weight, mask, threshold) -> tensor``: the kernel the forward pass uses.
REPARAMETRISATIONS: Registry[Callable] = Registry("reparametrisation")
#: The reparametrisation of a finalized wrapper: the plain masked kernel.
NONE = "none"
#: Reparametrisations whose finished mask is where the effective kernel is non-zero (not the mask they ran with).
MASK_FROM_EFFECTIVE = {"str"}
#: Reparametrisations with one learnable threshold per layer.
WITH_THRESHOLD = {"str"}


@REPARAMETRISATIONS.register("dpf")
def dynamic_pruning_with_feedback(weight, mask, threshold):
    """DPF (Lin et al. 2020, arXiv:2006.07253): the value ``weight * mask``, the gradient to all of ``weight``
    (straight-through), so pruned weights keep learning and may come back when the mask is recomputed."""
    del threshold
    masked = weight * tf.cast(mask, weight.dtype)
    return weight + tf.stop_gradient(masked - weight)


@REPARAMETRISATIONS.register("str")
def soft_threshold(weight, mask, threshold):
    """STR (Kusupati et al. 2020, arXiv:2002.03231): ``sign(w) * relu(|w| - sigmoid(s))``, ``s`` learnable."""
    del mask
    return tf.sign(weight) * tf.nn.relu(tf.abs(weight) - tf.sigmoid(tf.cast(threshold, weight.dtype)))


def known() -> tuple[str, ...]:
    """Every reparametrisation a wrapper accepts, ``"none"`` included."""
    return (*REPARAMETRISATIONS.known(), NONE)


def effective(name: str, weight, mask, threshold=None):
    """The kernel reparametrisation ``name`` gives the forward pass (``"none"``: ``weight * mask``)."""
    if name == NONE:
        return weight * tf.cast(mask, weight.dtype)
    return REPARAMETRISATIONS.get(name)(weight, mask, threshold)
