"""What tfimp prunes in tf_keras models: the kinds, :func:`register` for your own layers, and :func:`describe`.

The registry of layer types and their weights is
:mod:`tfimp.tf_keras.layer_specs`; the report of what a wrapped model has
under masks is :func:`tfimp.tf_keras.wrapping.describe`.
"""

from __future__ import annotations

from tfimp.core.coverage import DEFAULT_KINDS, KINDS, Coverage, Spec, normalize_kinds, resolve  # noqa: F401
from tfimp.tf_keras.layer_specs import register, specs  # noqa: F401
from tfimp.tf_keras.wrapping import describe  # noqa: F401
