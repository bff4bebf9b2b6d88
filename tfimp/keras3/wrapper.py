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

from tfimp.core import during_training as _during
from tfimp.core import reparametrisations as _reparametrisations
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
        return self._forward(self._step_state(), args, training, kwargs)

    def _step_state(self) -> dict:
        """What every masked weight's transform reads in this forward pass, read once per call (plain masks: none)."""
        return {}

    def _forward(self, state: dict, args, training, kwargs):
        """The wrapped layer's forward pass with every masked weight replaced by ``_masked_value(.., state)``."""
        masks = {id(weight): mask for weight, mask in zip(self.masked_weights(), self.masks)}
        mapping = []
        for variable in self.layer.variables:
            value = variable.value  # the enclosing scope's value during a stateless (JAX) step
            if id(variable) in masks:
                value = self._masked_value(value, masks[id(variable)], state)
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

    @staticmethod
    def _masked_value(value, mask, state=None):
        """The value the wrapped layer computes with: ``value * mask`` (``state``: unused here)."""
        # The cast only where the dtypes differ: in eager PyTorch every op is paid for at every step.
        same = mask.dtype == keras.backend.standardize_dtype(value.dtype)  # autocast may have changed it
        return ops.multiply(value, mask.value if same else ops.cast(mask.value, value.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "weight_paths": list(self.weight_paths)}


@keras.saving.register_keras_serializable(package="tfimp")
class ReparamMaskedLayer(MaskedLayer):
    """A :class:`MaskedLayer` whose forward pass uses a transform of the *dense* weight (DPF, STR, CS, DST).

    The transform is one of :mod:`tfimp.core.reparametrisations`, run with
    ``keras.ops`` (the same definition as the tf_keras front end's):

    * ``dpf``: the value ``weight * mask``, the gradient to all of the dense
      weight (straight-through), so pruned weights keep learning and may come
      back when the mask is recomputed;
    * ``str``: ``sign(w) * relu(|w| - sigmoid(s))`` with one learnable ``s``
      per layer, started at ``str_init``, with an extra L2 of
      ``str_weight_decay`` on it;
    * ``cs``: ``w * sigmoid(beta * s) / sigmoid(cs_init)`` with one learnable
      score per weight, the temperature ``beta`` rising from 1 to
      ``cs_beta_final`` over ``total_steps`` training steps (counted by the
      layer), and ``cs_lambda * sum(sigmoid(beta * s))`` added to the loss;
    * ``dst``: ``w * step(|w| - t)`` with one learnable threshold per output
      unit (a surrogate gradient through the step) and ``dst_alpha *
      sum(exp(-t))`` added to the loss.

    :meth:`finalize` bakes the transform into the weights and masks; from
    then on the layer computes as a :class:`MaskedLayer`. The learnable
    parameters stay weights of the layer either way, so a finalized model's
    file loads into a freshly built one.
    """

    def __init__(self, layer: keras.layers.Layer, weight_paths: Sequence[str], reparam: str = "dpf",
                 str_init: float = -5.0, str_weight_decay: float = 0.0, finalized: bool = False,
                 hyperparameters: dict | None = None, total_steps: int = 1, **kwargs):
        if _reparametrisations.check(reparam) == _reparametrisations.NONE:
            raise ValueError("reparam 'none' is a plain tfimp MaskedLayer; ReparamMaskedLayer takes one of "
                             f"{_reparametrisations.REPARAMETRISATIONS.known()}")
        if str_weight_decay < 0:
            raise ValueError(f"str_weight_decay must be >= 0, got {str_weight_decay}")
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        super().__init__(layer, weight_paths, **kwargs)
        self.reparam, self.str_init, self.str_weight_decay = reparam, float(str_init), float(str_weight_decay)
        self.hyperparameters = _during.method_hyperparameters(reparam, hyperparameters) \
            if reparam in _during.HYPERPARAMETERS else {}
        self.total_steps = int(total_steps)
        self.finalized = bool(finalized)
        self.str_threshold = None
        self.parameters: list = []  # CS's scores or DST's thresholds, one per masked weight
        self.steps_seen = None  # CS: training steps so far, for the temperature

    @property
    def learned(self):
        """The reparametrisation's per-weight learnable parameter (:data:`~tfimp.core.reparametrisations.PARAMETERS`),
        or None."""
        return _reparametrisations.PARAMETERS.get(self.reparam)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.reparam in _reparametrisations.WITH_THRESHOLD and self.str_threshold is None:
            self.str_threshold = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.str_init), trainable=True,
                # Extra coupled L2 on s (gradient str_weight_decay * s), on top of the optimizer's own decay.
                regularizer=keras.regularizers.L2(self.str_weight_decay / 2) if self.str_weight_decay else None,
                name="str_threshold")
        learned = self.learned
        if learned is not None and not self.parameters:
            initial = learned.initial if not isinstance(learned.initial, str) else self.hyperparameters[learned.initial]
            self.parameters = [self.add_weight(shape=learned.shape(tuple(weight.shape)), trainable=True,
                                               initializer=keras.initializers.Constant(float(initial)),
                                               name=f"{path.replace('.', '_')}_{learned.name}")
                               for path, weight in zip(self.weight_paths, self.masked_weights())]
            if self.reparam == "cs":
                self.steps_seen = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                  name="cs_steps_seen")

    def _state(self) -> dict:
        if self.reparam != "cs":
            return {}
        beta = _reparametrisations.temperature(self.steps_seen.value, self.total_steps,
                                               self.hyperparameters["cs_beta_final"], ops)
        return {"temperature": beta, "initial": self.hyperparameters["cs_init"]}

    def call(self, *args, training=None, **kwargs):
        learned = self.learned
        if learned is None or self.finalized:
            return super().call(*args, training=training, **kwargs)
        # Read once per step: every weight and the penalty use this temperature (CS), the one the authors' code
        # uses for both, before the step counter moves.
        state = self._step_state()
        penalty_weight = self.hyperparameters[learned.penalty_weight]
        if penalty_weight:
            penalty_state = {"temperature": state["temperature"]} if self.reparam == "cs" else {}
            self.add_loss(penalty_weight * sum(learned.penalty(parameter.value, ops, **penalty_state)
                                               for parameter in self.parameters))
        outputs = self._forward(state, args, training, kwargs)
        if training and self.steps_seen is not None:
            self.steps_seen.assign(self.steps_seen.value + 1.0)
        return outputs

    def _parameter_of(self, mask):
        if self.str_threshold is not None:
            return self.str_threshold.value
        if self.parameters:  # by identity: == on Keras variables compares their values
            return next(p for m, p in zip(self.masks, self.parameters) if m is mask).value
        return None

    def _step_state(self) -> dict:
        return {} if self.finalized else self._state()

    def _masked_value(self, value, mask, state=None):
        if self.finalized:
            return super()._masked_value(value, mask)
        state = self._state() if state is None else state
        return _reparametrisations.effective(self.reparam, value, mask.value, self._parameter_of(mask), ops, **state)

    def effective_weights(self) -> list:
        """The weights the forward pass uses now, as numpy arrays."""
        return [ops.convert_to_numpy(self._masked_value(weight.value, mask))
                for weight, mask in zip(self.masked_weights(), self.masks)]

    def kept_masks(self) -> list:
        """Where each masked weight is non-zero in the forward pass now (STR, CS, DST: their own rule), as numpy."""
        state = self._state()
        return [ops.convert_to_numpy(_reparametrisations.kept(self.reparam, weight.value, mask.value,
                                                              self._parameter_of(mask), ops, **state))
                for weight, mask in zip(self.masked_weights(), self.masks)]

    def finalize(self, *, bake: bool = True) -> None:
        """Ends the reparametrisation: with ``bake``, each weight becomes its effective value times the mask
        (STR, CS, DST: the mask becomes what their rule keeps); ``bake=False`` only marks it finalized
        (weights restored from a finalized run's save are baked already)."""
        if self.finalized:
            return
        if bake:
            kept = self.kept_masks()
            for weight, mask, value, keep in zip(self.masked_weights(), self.masks, self.effective_weights(), kept):
                if self.reparam in _reparametrisations.MASK_FROM_EFFECTIVE:
                    mask.assign(keep.astype(mask.dtype))
                weight.assign(value * ops.convert_to_numpy(mask.value).astype(value.dtype))
        self.finalized = True

    def get_config(self) -> dict:
        return {**super().get_config(), "reparam": self.reparam, "str_init": self.str_init,
                "str_weight_decay": self.str_weight_decay, "finalized": self.finalized,
                "hyperparameters": dict(self.hyperparameters), "total_steps": self.total_steps}
