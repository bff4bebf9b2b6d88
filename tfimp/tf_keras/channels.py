"""The ``channels`` structure on tf_keras: a pruned channel's bias and following BatchNormalization zeroed and held.

How they are held at zero while the model trains: by a variable constraint
(:class:`tfimp.tf_keras.tfmot_glue.HoldChannelsConstraint`), the mechanism
that already holds the pruned kernels. Every tf_keras optimizer applies it
in-graph right after each update, so no callback is needed and a user's own
``fit`` gets it too. The constraint reads the dead channels from the kernels'
mask variables at each step (through the graph, for a BatchNormalization),
so a later prune changes nothing in the traced step; only installing it
(once, at the first prune with channels) retraces the train function. An
unstructured run never installs it: it costs nothing there.
"""


from __future__ import annotations

import numpy as np

from tfimp.core import channel_graph as _graph
from tfimp.tf_keras import slimming as _slimming
from tfimp.tf_keras import tfmot_glue, wrapping
from tfimp.tf_keras._backend import keras, tf


def nodes(model: keras.Model):
    """Reads the model's graph for :mod:`tfimp.core.channel_graph` (None for a subclassed model)."""
    if not wrapping.is_graph_model(model):
        return None
    return lambda: _graph.read_nodes(model.get_config(), isinstance(model, keras.Sequential), _slimming._inbound,
                                     _describe(model))


def zero(variable, channels: np.ndarray) -> None:
    """Zeroes ``variable``'s last axis at ``channels``."""
    value = variable.numpy()
    value[..., channels] = 0
    variable.assign(value)


def _describe(model: keras.Model):
    def describe(name):
        layer = model.get_layer(name)
        inner = layer.layer if isinstance(layer, wrapping.PruneLowMagnitude) else layer
        return type(inner).__name__, inner.get_config(), tuple(layer.output.shape)

    return describe


#: The dead-channel arithmetic in TensorFlow, run inside the training step.
VECTORS = _graph.VectorOps(lambda vectors: tf.reduce_all(tf.stack(vectors), axis=0), lambda vectors: tf.concat(vectors, 0),
                           lambda vector, factor: tf.repeat(vector, factor), lambda width: tf.zeros((width,), tf.bool))


def _dead_columns(kernel):
    mask = kernel.mask
    return tf.reduce_all(tf.equal(tf.reshape(mask, (-1, mask.shape[-1])), 0), axis=0)


def hold(model: keras.Model) -> int:
    """Holds the bias of every prunable filter and the gamma and beta of every BatchNormalization after one at zero
    wherever their channel is pruned, after every optimizer step (``tfimp.prune(..., structure="channels")`` and
    ``tfimp.load_model`` call it). Returns how many variables it newly holds."""
    kernels = wrapping.prunable_kernels(model)
    found = _graph.holds(kernels, nodes(model), get_layer=model.get_layer, dead_columns_of=_dead_columns,
                         vectors=VECTORS)
    new = sum(tfmot_glue.hold_channels(variable, dead) for variable, dead in found)
    if new and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)  # a traced step applies only the constraints it saw
    return new
