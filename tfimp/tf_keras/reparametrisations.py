"""The reparametrisations of :mod:`tfimp.core.reparametrisations` in TensorFlow ops, for the tf_keras wrapper.

The definitions (DPF's straight-through mask, STR's soft threshold) and
their registry are the core's, shared with the Keras 3 front end; this
module gives them TensorFlow's operations. The wrapper that applies them is
:class:`tfimp.tf_keras.tfmot_glue.ReparamPruneLowMagnitude`; the runners are
:mod:`tfimp.baselines`.
"""

from __future__ import annotations

import types

from tfimp.tf_keras._backend import tf
from tfimp.core import reparametrisations as _core
from tfimp.core.reparametrisations import (MASK_FROM_EFFECTIVE, NONE, REPARAMETRISATIONS,  # noqa: F401
                                           WITH_THRESHOLD, known)

#: The operations a reparametrisation is written against, from TensorFlow.
TF_OPS = types.SimpleNamespace(cast=tf.cast, sign=tf.sign, abs=tf.abs, relu=tf.nn.relu, sigmoid=tf.sigmoid,
                               stop_gradient=tf.stop_gradient)


def effective(name: str, weight, mask, threshold=None):
    """The kernel reparametrisation ``name`` gives the forward pass (``"none"``: ``weight * mask``)."""
    return _core.effective(name, weight, mask, threshold, TF_OPS)
