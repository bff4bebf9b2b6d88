"""``tfimp.keras3.slim``: Keras 3 models (TensorFlow, JAX, PyTorch) rebuilt without their pruned channels.

What is Keras 3's here: reading its config format (``inbound_nodes`` of
serialized tensors), its layers' weights and shapes, and building the new
model cheaply (see :func:`_builder`). The rules, which channels go and how
weights are cut, are the core's: :mod:`tfimp.core.slim_layers` over the
groups of :mod:`tfimp.core.slimming`.
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from tfimp.core import slim_layers as _slim_layers
from tfimp.core.slimming import SlimReport
from tfimp.keras3 import _private
from tfimp.keras3 import masks as _masks
from tfimp.keras3.channels import inbound as _inbound


def slim(model: keras.Model, *, check: bool = True, verbose: int = 0) -> keras.Model:
    """The Keras 3 model without its pruned channels: a new, smaller plain model; predictions unchanged.

    The same rules as on tf_keras (``docs/concepts/slimming.md``): a channel
    goes when every filter making it is zero and each layer reading it can
    fold what it holds (zero, or a constant) into its bias; channels that an
    Add, a depthwise conv or a Concatenate ties go together.

    Args:
      model: Sequential or functional; plain, or wrapped by :func:`tfimp.keras3.wrap` (then stripped first).
      check: run both models on two random examples and raise if they disagree (skipped for unknown input sizes).
      verbose: 1 prints what was removed, 0 logs it.

    Returns:
      A new model, not compiled (``model`` is untouched); its ``.keras`` file loads on any backend without tfimp.

    Raises:
      TypeError: not a Keras 3 model.
      ValueError: a subclassed or unbuilt model, or a layer that cannot be slimmed (shared, several outputs, an unknown
        class), named with the reason.
    """
    return slim_with_report(model, check=check, verbose=verbose)[0]


def slim_with_report(model: keras.Model, *, check: bool = True, verbose: int = 0) -> tuple[keras.Model, SlimReport]:
    """:func:`slim`, and the report of what it removed (channels and parameters, layer by layer)."""
    _masks.check_keras3_model(model)
    refusal = _slim_layers.model_refusal(model, _private.is_functional(model))
    if refusal:
        raise refusal
    if _masks.wrappers(model):
        model = _masks.strip(model)
    return _slim_layers.slim_model(model, sequential=isinstance(model, keras.Sequential), inbound=_inbound,
                                   layer_data=_layer_data(model), evaluate=_evaluator(model), build=_builder(model),
                                   predict=_predict if check else None,
                                   input_shapes=[tuple(t.shape) for t in model.inputs], verbose=verbose)


def _layer_data(model: keras.Model):
    def data(name):
        layer = model.get_layer(name)
        return ([np.asarray(w) for w in layer.get_weights()],
                tuple(tuple(t.shape) for t in keras.tree.flatten(layer.input)), tuple(layer.output.shape))

    return data


def _evaluator(model: keras.Model) -> _slim_layers.Evaluate:
    def evaluate(name, activation, values):
        function = model.get_layer(name) if activation is None else keras.activations.get(activation)
        return keras.ops.convert_to_numpy(function(keras.ops.convert_to_tensor(values[None], "float32")))[0]

    return evaluate


#: The initializer the rebuilt layers are built with (see :func:`_builder`).
_ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def _builder(model: keras.Model):
    """Builds the slimmed model from its config and sets its weights.

    Keras 3 draws each new variable's initial value (on JAX, one compilation
    per shape: half a minute for MobileNetV2), and the slimmed weights replace
    those values at once; so the layers are built with zeros and given their
    own initializers back afterwards (their configs, and so the saved file,
    name the original initializers).
    """

    def build(config, weights):
        cheap = copy.deepcopy(config)
        initializers = {}
        for entry in cheap["layers"]:
            layer_config = entry["config"]
            keys = [key for key, value in layer_config.items() if key.endswith("_initializer") and value is not None]
            initializers[layer_config["name"]] = {key: layer_config[key] for key in keys}
            layer_config.update(dict.fromkeys(keys, _ZEROS))
        rebuilt = (keras.Sequential if isinstance(model, keras.Sequential) else keras.Model).from_config(cheap)
        for layer in rebuilt.layers:
            for key, value in initializers.get(layer.name, {}).items():
                if hasattr(layer, key):
                    setattr(layer, key, keras.initializers.get(value))
            layer.set_weights(weights[layer.name])
        return rebuilt

    return build


def _predict(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    outputs = model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
    return [np.asarray(out) for out in keras.tree.flatten(outputs)]
