"""The Keras 3 pruning wrapper: masks held beside any layer and applied in every forward pass, on every backend.

Why in the forward pass: on JAX, ``fit`` runs statelessly, so a kernel
constraint cannot read a mask variable, and an update made inside ``call``
(tfmot's way) is dropped. :class:`MaskedLayer` instead runs the wrapped layer
inside a nested ``keras.StatelessScope`` whose mapping gives each masked
weight the value ``weight * mask``: the layer computes with the masked
weights, and the gradient of every pruned weight is exactly zero. Together
with the zeros written at pruning time and the optimizer slots zeroed there
(:func:`tfimp.keras3.masks.prune`), a pruned weight stays exactly zero under
any optimizer whose step is zero for a zero gradient and zero state (SGD
with momentum or Nesterov, Adam, AdamW, TorchSGD, ...).

State the wrapped layer assigns while it runs (a seed generator, a stateful
RNN's states) is handed on to the enclosing scope or the variable after the
call, so nothing of the layer's own behaviour is lost.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import keras
from keras import ops

from tfimp.core.coverage import resolve


@keras.saving.register_keras_serializable(package="tfimp")
class MaskedLayer(keras.layers.Wrapper):
    """Wraps ``layer`` and masks its weights at ``weight_paths`` (``"kernel"``, ``"_query_dense.kernel"``, ...).

    One non-trainable mask per path, of the weight's shape and dtype, all
    ones until :func:`tfimp.prune` sets it. Saved and loaded with the model
    (``.keras``); :func:`tfimp.strip` removes the wrapper.
    """

    def __init__(self, layer: keras.layers.Layer, weight_paths: Sequence[str], **kwargs):
        kwargs.setdefault("name", f"masked_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        if isinstance(weight_paths, str) or not weight_paths:
            raise ValueError(f"weight_paths must be a non-empty list of weight paths, got {weight_paths!r}")
        self.weight_paths = list(weight_paths)
        self.masks: list = []
        self._passes_training = "training" in inspect.signature(layer.call).parameters

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not self.masks:
            self.masks = [self.add_weight(shape=tuple(weight.shape), initializer="ones", dtype=weight.dtype,
                                          trainable=False, autocast=False, name=f"{path.replace('.', '_')}_mask")
                          for path, weight in zip(self.weight_paths, self.masked_weights())]
        self.built = True

    def masked_weights(self) -> list:
        """The wrapped layer's variables that the masks apply to, in ``weight_paths`` order."""
        return [resolve(self.layer, path) for path in self.weight_paths]

    def call(self, *args, training=None, **kwargs):
        masks = {id(weight): mask for weight, mask in zip(self.masked_weights(), self.masks)}
        mapping = []
        for variable in self.layer.variables:
            value = variable.value  # the enclosing scope's value during a stateless (JAX) step
            if id(variable) in masks:
                mask = masks[id(variable)]
                # The cast only where the dtypes differ: in eager PyTorch every op is paid for at every step.
                same = mask.dtype == keras.backend.standardize_dtype(value.dtype)  # autocast may have changed it
                mask_value = mask.value if same else ops.cast(mask.value, value.dtype)
                value = ops.multiply(value, mask_value)
            mapping.append((variable, value))
        if training is not None and self._passes_training:
            kwargs["training"] = training
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.layer(*args, **kwargs)
        for loss in scope.losses:  # activity regularizers: to the wrapper, where Keras collects them
            self.add_loss(loss)
        for variable, before in mapping:
            after = scope.get_current_value(variable)
            if id(variable) not in masks and after is not None and after is not before:
                variable.assign(after)  # the layer's own state update, on to the enclosing scope
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "weight_paths": list(self.weight_paths)}
