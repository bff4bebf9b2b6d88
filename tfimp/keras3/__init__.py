"""tfimp's Keras 3 front end: the same exact IMP on the TensorFlow, JAX and PyTorch backends.

tfmot wraps only tf_keras models, so this front end brings its own wrapper
(:class:`tfimp.keras3.wrapper.MaskedLayer`), which masks any weight of any
layer in the forward pass on every backend, and the rest of tfimp around it
in ``keras.ops``. The public names are tfimp's own: ``tfimp.wrap`` and the
other model functions pick this front end for a Keras 3 model, and
``tfimp.callbacks``, ``tfimp.optimizers`` and ``tfimp.lr`` are these modules
in a process whose Keras is Keras 3 (see :mod:`tfimp.front_end`).

Importing it imports Keras 3 and its backend (``KERAS_BACKEND``), never
TensorFlow unless that is the backend.
"""

from __future__ import annotations

import keras

if not str(keras.__version__).startswith("3."):
    raise ImportError(f"tfimp.keras3 needs Keras 3, found keras {keras.__version__}")
