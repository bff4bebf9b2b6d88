"""What tfimp prunes in Keras 3 models: the kinds, :func:`register` for your own layers, and :func:`describe`.

The registry of layer types and their weights is
:mod:`tfimp.keras3.layer_specs`; the report of what a wrapped model has
under masks is :func:`tfimp.keras3.masks.describe`.
"""

from __future__ import annotations

from tfimp.keras3.layer_specs import DEFAULT_KINDS, KINDS, normalize_kinds, register, specs  # noqa: F401
from tfimp.keras3.masks import describe  # noqa: F401
