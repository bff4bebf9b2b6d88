"""BatchNorm statistics re-estimated after pruning on Keras 3, as the authors' PyTorch runs do it.

PyTorch's ``momentum=None`` makes the running statistics the cumulative
average of the batch statistics over one pass of the training data in
training mode; its running variance averages the *unbiased* batch
variances. Keras 3's BatchNormalization updates
``moving = moving * momentum + batch * (1 - momentum)`` with the *biased*
batch variance. :func:`reestimate` sets the momentum to ``1 - 1/k`` for the
k-th batch (the cumulative average) and scales each batch's variance
contribution by ``n / (n - 1)``, ``n`` being the values per channel in that
batch, so the result is PyTorch's on every backend and input rank.

The pass runs eagerly, one batch at a time, with no gradients; weights and
masks are not touched.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from tfimp import _private


def batch_norm_layers(model: keras.Model) -> list:
    """Every BatchNormalization layer of ``model`` (nested models and wrappers included)."""
    return [layer for layer in _private.flatten_layers(model, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _batches(data):
    """The input batches of ``data``: a dataset or PyDataset of batches, or an ``(x, y)`` pair of arrays (by 128)."""
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        x = data[0]
        for start in range(0, len(x), 128):
            yield x[start:start + 128]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def reestimate(model: keras.Model, data, steps: Optional[int] = None) -> int:
    """Re-estimates every BatchNorm layer's moving statistics from ``data`` (PyTorch's ``momentum=None``).

    Args:
      model: any Keras 3 model (wrapped or not).
      data: batches (a ``tf.data.Dataset`` on the TensorFlow backend, a
        ``keras.utils.PyDataset``, any iterable of ``x`` or ``(x, y)``), or an
        ``(x, y)`` pair of arrays.
      steps: stop after this many batches (default: all).

    Returns:
      The number of batches averaged (0 when the model has no BatchNorm layer).

    Raises:
      ValueError: ``data`` has no batch.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    originals = [layer.momentum for layer in layers]
    counts: dict[int, int] = {}

    def recording(layer):
        call = layer.call

        def call_and_count(inputs, *args, **kwargs):
            shape = tuple(int(d) for d in inputs.shape)
            axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
            channels = math.prod(shape[a] for a in axes)
            counts[id(layer)] = math.prod(shape) // channels
            return call(inputs, *args, **kwargs)
        return call_and_count

    batches = 0
    try:
        for layer in layers:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
            object.__setattr__(layer, "call", recording(layer))  # an instance attribute Keras does not track
        for batch in _batches(data):
            if steps is not None and batches >= steps:
                break
            batches += 1
            momentum = 1.0 - 1.0 / batches
            before = [keras.ops.convert_to_numpy(layer.moving_variance.value) for layer in layers]
            for layer in layers:
                layer.momentum = momentum
            model(batch, training=True)
            for layer, old in zip(layers, before):
                new = keras.ops.convert_to_numpy(layer.moving_variance.value)
                n = counts.get(id(layer), 0)
                if n > 1:  # biased -> unbiased: this batch added (1 - m) * biased; it should add (1 - m) * unbiased
                    layer.moving_variance.assign(new + (new - momentum * old) / (n - 1))
    finally:
        for layer, original in zip(layers, originals):
            layer.momentum = original
            if "call" in vars(layer):
                object.__delattr__(layer, "call")
    if batches == 0:
        raise ValueError("BatchNorm re-estimation got no batch: the data is empty")
    return batches
