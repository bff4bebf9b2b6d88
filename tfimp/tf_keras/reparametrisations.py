"""The reparametrisations of :mod:`tfimp.core.reparametrisations` in TensorFlow ops, for the tf_keras wrapper.

The definitions (DPF's straight-through mask, STR's soft threshold, CS's gates, DST's thresholds) and
their registry are the core's, shared with the Keras 3 front end; this
module gives them TensorFlow's operations. The wrapper that applies them is
:class:`tfimp.tf_keras.tfmot_glue.ReparamPruneLowMagnitude`; the runners are
:mod:`tfimp.baselines`.
"""

from __future__ import annotations

import types

from tfimp.tf_keras._backend import tf
from tfimp.core import reparametrisations as _core
from tfimp.core.reparametrisations import (MASK_FROM_EFFECTIVE, NONE, PARAMETERS, REPARAMETRISATIONS,  # noqa: F401
                                           WITH_THRESHOLD, known, needs_reset)

#: The operations a reparametrisation is written against, from TensorFlow.
TF_OPS = types.SimpleNamespace(cast=tf.cast, sign=tf.sign, abs=tf.abs, relu=tf.nn.relu, sigmoid=tf.sigmoid,
                               stop_gradient=tf.stop_gradient, exp=tf.exp, sum=tf.reduce_sum, minimum=tf.minimum)


def effective(name: str, weight, mask, threshold=None, **state):
    """The kernel reparametrisation ``name`` gives the forward pass (``"none"``: ``weight * mask``)."""
    return _core.effective(name, weight, mask, threshold, TF_OPS, **state)


def kept(name: str, weight, mask, threshold=None, **state):
    """Where reparametrisation ``name`` keeps the kernel's weights now (0/1)."""
    return _core.kept(name, weight, mask, threshold, TF_OPS, **state)


def temperature(step, total_steps: int, final: float):
    """CS's temperature at ``step``."""
    return _core.temperature(step, total_steps, final, TF_OPS)
