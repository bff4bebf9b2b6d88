"""``tfimp.slim`` on tf_keras: a channel-pruned model rebuilt smaller, without its pruned channels.

This module only reads the tf_keras graph (the model's config, its layers'
weights and shapes) and rebuilds the model from its edited config; which
channels go, and how each layer's weights are cut, is the core's
(:mod:`tfimp.core.slim_layers`, :mod:`tfimp.core.slimming`).
"""

from __future__ import annotations

import numpy as np

from tfimp.core import slim_layers as _slim_layers
from tfimp.core.slimming import SlimReport
from tfimp.tf_keras import wrapping as _wrapping
from tfimp.tf_keras._backend import keras, tf


def slim(model: keras.Model, *, check: bool = True, verbose: int = 0) -> keras.Model:
    """A plain, smaller copy of a channel-pruned model, its pruned channels physically removed.

    A channel (an output channel of a convolution, a unit of a dense layer)
    is removed when no remaining layer needs it: every filter that makes it
    is entirely zero, and what it then holds (its bias, through
    BatchNormalization and the activations) is a constant that each layer
    reading it folds into its own bias, or zero. Channels joined by Add and
    the other merges, by depthwise convolutions or by Concatenate go together
    or not at all. Predictions are unchanged (in inference). See
    ``docs/concepts/slimming.md`` for the rules.

    Args:
      model: a Sequential or functional tf_keras model, wrapped by
        :func:`tfimp.wrap` (it is stripped first) or plain.
      check: compares the two models' predictions on two random examples and
        raises if they differ (skipped when an input size is unknown).
      verbose: 1 prints the summary (parameters removed, channels per layer); 0 logs it.

    Returns:
      A new tf_keras model, not compiled (the input model is left as it is),
      which saves and loads as any Keras model (``.keras``, h5) without tfimp.

    Raises:
      TypeError: ``model`` is not a tf_keras model.
      ValueError: a subclassed or unbuilt model, a shared layer (called more than once), a
        layer with several outputs, or a layer ``tfimp.slim`` does not know,
        named with the reason.
    """
    return slim_with_report(model, check=check, verbose=verbose)[0]


def slim_with_report(model: keras.Model, *, check: bool = True, verbose: int = 0) -> tuple[keras.Model, SlimReport]:
    """:func:`slim`, and the report of what it removed (channels and parameters, layer by layer)."""
    _wrapping.check_tf_keras_model(model)
    refusal = _slim_layers.model_refusal(model, _wrapping.is_graph_model(model))
    if refusal:
        raise refusal
    if _wrapping.wrappers(model):
        model = _wrapping.strip(model)
    return _slim_layers.slim_model(model, sequential=isinstance(model, keras.Sequential), inbound=_inbound,
                                   layer_data=_layer_data(model), evaluate=_evaluator(model), build=_builder(model),
                                   predict=_predict if check else None,
                                   input_shapes=[tuple(t.shape) for t in model.inputs], verbose=verbose)


def _shape(tensor) -> tuple[int | None, ...]:
    return tuple(tensor.shape.as_list())


def _inbound(entry: dict) -> list[tuple[list[list], list[str]]]:
    """tf_keras' ``inbound_nodes``: per call, ``[[layer, node, tensor, kwargs], ...]`` (one input: also unnested)."""
    nodes = []
    for node in entry.get("inbound_nodes") or []:
        node = [node] if node and isinstance(node[0], str) else node
        histories = [list(item[:3]) for item in node]
        kwargs = {key: value for item in node if len(item) > 3 for key, value in item[3].items()}
        nodes.append((histories, [key for key, value in kwargs.items() if _holds_history(value)]))
    return nodes


def _holds_history(value) -> bool:
    """Whether a serialized argument refers to a layer's output (``[layer, node, tensor]``)."""
    if isinstance(value, dict):
        return any(_holds_history(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:]):
            return True
        return any(_holds_history(item) for item in value)
    return False


def _layer_data(model: keras.Model):
    def data(name):
        layer = model.get_layer(name)
        return ([np.asarray(w) for w in layer.get_weights()], tuple(_shape(t) for t in tf.nest.flatten(layer.input)),
                _shape(layer.output))

    return data


def _evaluator(model: keras.Model) -> _slim_layers.Evaluate:
    def evaluate(name, activation, values):
        function = model.get_layer(name) if activation is None else keras.activations.get(activation)
        return np.asarray(function(tf.constant(values[None], tf.float32)))[0]

    return evaluate


def _builder(model: keras.Model):
    def build(config, weights):
        rebuilt = (keras.Sequential if isinstance(model, keras.Sequential) else keras.Model).from_config(config)
        for layer in rebuilt.layers:
            layer.set_weights(weights[layer.name])
        return rebuilt

    return build


def _predict(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(out) for out in tf.nest.flatten(model(inputs if len(inputs) > 1 else inputs[0],
                                                               training=False))]
