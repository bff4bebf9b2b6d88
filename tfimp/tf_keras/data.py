"""Datasets and input pipelines of the tf_keras front end: :mod:`tfimp.tfdata.pipelines`, after the Keras 2 stack is chosen.

Everything here is :mod:`tfimp.tfdata.pipelines`'s (its docstring describes the
datasets, splits, augmentations and the epoch-ordered pipelines); this
module only makes sure the tf_keras front end's ``TF_USE_LEGACY_KERAS`` is
set before TensorFlow is first imported. Patch module-level settings (the
Debian directory, the network probe) on ``tfimp.tfdata.pipelines``.
"""

from __future__ import annotations

from tfimp.tf_keras import _backend  # noqa: F401  (first: selects tf_keras before TensorFlow resolves tf.keras)
from tfimp.tfdata.pipelines import (AUGMENTATIONS, DEBIAN_FASHION_MNIST, SPECS, Data, DataUnavailableError,  # noqa: F401
                          DatasetSpec, EpochOrdered, epoch_ordered, epoch_pipeline, https_proxy, load, load_arrays,
                          network_reachable, pipeline, read_idx, spec, split_indices)
