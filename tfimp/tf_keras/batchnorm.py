"""BatchNorm statistics re-estimated after pruning, as the authors' runs do.

Pruning changes every activation downstream, so the running mean and
variance that BatchNorm learned for the dense model no longer fit. Right
after each pruning step the authors pass the training data once through the
model in training mode, without gradients, with PyTorch's ``momentum=None``:
the running statistics become the plain (cumulative) average of the batch
statistics over the pass. An exponential moving average with Keras' default
momentum of 0.99 would move only part of the way in one pass (about half
after 70 batches), so :func:`reestimate` sets each layer's momentum to
``1 - 1/k`` for the k-th batch, which makes Keras' own update
``moving = moving * momentum + batch * (1 - momentum)`` the cumulative average.

After convolutions (4-D inputs, Keras' fused kernel) the moving variance
averages the unbiased batch variances, as PyTorch's does; on 2-D inputs
(BatchNorm after a Dense layer) Keras averages the biased ones, a factor
(n - 1)/n below PyTorch's for batches of n (0.992 at n = 128).
"""

from __future__ import annotations

from typing import Optional

from tfimp.tf_keras import _private
from tfimp.tf_keras._backend import keras, tf


def batch_norm_layers(model: keras.Model) -> list:
    """Every BatchNormalization layer of ``model`` (nested models and wrappers included)."""
    return [layer for layer in _private.flatten_layers(model, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def reestimate(model: keras.Model, data, steps: Optional[int] = None) -> int:
    """Re-estimates every BatchNorm layer's moving statistics from ``data``.

    The moving mean and variance are reset and set to the average of the
    batch statistics over one pass of ``data`` in training mode (no
    gradients, weights unchanged). Under a distribution strategy the pass
    runs in the cross-replica context on whole batches, and every replica
    receives the same statistics (no collective communication is involved).

    Example:
      >>> tfimp.prune(model, 0.9)
      >>> tfimp.batchnorm.reestimate(model, train_dataset)

    Args:
      model: any tf_keras model (wrapped or not).
      data: a ``tf.data.Dataset`` of batches, ``x`` or ``(x, y, ...)``.
      steps: stop after this many batches (default: the whole dataset).

    Returns:
      The number of batches averaged (0 when the model has no BatchNorm layer).

    Raises:
      ValueError: ``data`` has no batch.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    # Created outside any strategy scope: a plain variable the traced pass reads on every batch.
    momentum = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="bn_reestimation_momentum")
    originals = []

    @tf.function
    def forward(inputs):
        # Cross-replica context: updates of the (mirrored) statistics reach every replica.
        model(inputs, training=True)

    batches = 0
    try:
        for layer in layers:
            layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
            layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
            # A variable, not a float: Keras then takes its non-fused moving-average
            # update, and the traced function reads the new value at every batch.
            originals.append(_private.swap_batchnorm_momentum(layer, momentum))
        for batch in data:
            if steps is not None and batches >= steps:
                break
            batches += 1
            momentum.assign(1.0 - 1.0 / batches)
            forward(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for layer, original in zip(layers, originals):
            _private.swap_batchnorm_momentum(layer, original)
    if batches == 0:
        raise ValueError("BatchNorm re-estimation got no batch: the data is empty")
    return batches
