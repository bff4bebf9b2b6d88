"""BatchNorm statistics re-estimated after pruning on Keras 3, as the authors' PyTorch runs do it.

PyTorch's ``momentum=None`` makes the running statistics the cumulative
average of the batch statistics over one pass of the training data in
training mode; its running variance averages the *unbiased* batch
variances. Keras 3's BatchNormalization updates
``moving = moving * momentum + batch * (1 - momentum)`` with the *biased*
batch variance. :func:`reestimate` reads each batch's moments (momentum 0), makes the
variance unbiased with ``n / (n - 1)``, ``n`` being the values per channel
in that batch, and averages them over the batches, so the result is
PyTorch's on every backend and input rank.

The pass calls the model statelessly (compiled on JAX and TensorFlow), one batch at a time,
with no gradients; weights and masks are not touched.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from tfimp.keras3 import _private


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
    to_numpy = keras.backend.backend() != "tensorflow"  # a tf.data batch on JAX or PyTorch
    for batch in data:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield batch.numpy() if to_numpy and type(batch).__module__.startswith("tensorflow") else batch


def _statistics_function(model: keras.Model):
    """``fn(trainable, non_trainable, x) -> non_trainable after a training-mode call``, compiled per backend.

    Run eagerly, op by op, the pass cost 25 s of the fidelity protocol's
    126 s IMP run on JAX and 51 s of 129 s on TensorFlow; compiled (``jax.jit``,
    a ``tf.function`` graph, whose CPU kernels are TensorFlow's oneDNN ones)
    it costs one trace per batch shape and pass. On PyTorch the call runs
    without autograd.
    """
    def call(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=True)[1]

    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # noqa: PLC0415  (JAX backend only)

        return jax.jit(call)
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415  (TensorFlow backend only)

        return tf.function(call, reduce_retracing=True)
    if backend == "torch":
        import torch  # noqa: PLC0415  (PyTorch backend only)

        return torch.no_grad()(call)
    return call


def reestimate(model: keras.Model, data, steps: Optional[int] = None) -> int:
    """Re-estimates every BatchNorm layer's moving statistics from ``data`` (PyTorch's ``momentum=None``).

    Each batch runs once through the model in training mode with every
    BatchNorm's momentum at 0, statelessly (nothing of the model changes
    while the pass runs), so the layers' new moving statistics are that
    batch's moments; their average over the batches, with each batch
    variance made unbiased (``n / (n - 1)``), becomes the moving statistics.

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
    position = {id(v): index for index, v in enumerate(model.non_trainable_variables)}
    slots = [(position[id(layer.moving_mean)], position[id(layer.moving_variance)]) for layer in layers]
    values_per_example: dict[int, int] = {}  # per channel, recorded while the call is traced

    def recording(layer):
        call = layer.call

        def call_and_count(inputs, *args, **kwargs):
            shape = tuple(int(d) for d in inputs.shape[1:])
            axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
            channels = math.prod(shape[a - 1 if a > 0 else a] for a in axes)
            values_per_example[id(layer)] = math.prod(shape) // channels
            return call(inputs, *args, **kwargs)
        return call_and_count

    statistics = _statistics_function(model)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    sum_mean = [np.zeros(layer.moving_mean.shape, "float64") for layer in layers]
    sum_variance = [np.zeros(layer.moving_variance.shape, "float64") for layer in layers]
    batches = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # the moving statistics a call leaves are that batch's moments
            object.__setattr__(layer, "call", recording(layer))  # an instance attribute Keras does not track
        for batch in _batches(data):
            if steps is not None and batches >= steps:
                break
            batches += 1
            after = statistics(trainable, non_trainable, batch)
            examples = int(batch.shape[0])
            for index, (layer, (mean_at, variance_at)) in enumerate(zip(layers, slots)):
                n = examples * values_per_example[id(layer)]
                sum_mean[index] += keras.ops.convert_to_numpy(after[mean_at])
                biased = keras.ops.convert_to_numpy(after[variance_at]).astype("float64")
                sum_variance[index] += biased * n / (n - 1) if n > 1 else biased  # torch keeps the unbiased one
    finally:
        for layer, original in zip(layers, originals):
            layer.momentum = original
            if "call" in vars(layer):
                object.__delattr__(layer, "call")
    if batches == 0:
        raise ValueError("BatchNorm re-estimation got no batch: the data is empty")
    for layer, mean, variance in zip(layers, sum_mean, sum_variance):
        layer.moving_mean.assign((mean / batches).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((variance / batches).astype(layer.moving_variance.dtype))
    return batches
