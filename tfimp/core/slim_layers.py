"""The Keras layers :func:`tfimp.slim` knows, as plain data: layer configs and numpy weights.

Both front ends read their model into :class:`LayerCall` records (class
name, config, the layers it takes, weights as numpy arrays, shapes), and
:func:`slim_graph` returns every layer's new config and weights. A layer's
rules here say:

- how its output channels relate to its inputs' (the op of
  :mod:`tfimp.core.slimming`);
- what each output channel holds when its inputs' channels are constant
  (:class:`~tfimp.core.slimming.Signal`): a filter that is entirely zero
  makes its channel the constant bias (then the activation of it), a
  BatchNormalization with ``gamma == 0`` makes its channel ``beta``, a
  constant passes through pooling, activations and merges;
- which input channels it *needs*: a convolution or dense layer needs an
  input channel that it reads (a nonzero kernel row) unless that channel is
  a constant it can fold into its bias (any constant for Dense, 1x1 and
  ``"valid"`` convolutions; only zero for a padded convolution, whose
  borders see the zero padding); a layer that mixes channels (softmax,
  LayerNormalization) needs them all;
- how to cut its weights and config to the channels kept, folding into
  its bias the constants of the removed input channels (a layer without a
  bias gains one when such a constant is nonzero).

A removed channel is thus one that no remaining layer reads as anything but
a constant it absorbs: predictions stay the same (in inference:
BatchNormalization uses its moving statistics; Dropout is the identity).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from tfimp.core.slimming import (CONCAT, FLATTEN, FRESH, REPEAT, SAME, SOURCE, LayerChange, Op, Signal, SlimReport,
                                 group_channels, keep_masks, propagate, relative_difference)

_log = logging.getLogger("tfimp")

#: The largest ``max |pruned - slimmed| / max |pruned|`` over the outputs that :func:`slim_model` accepts.
TOLERANCE = 1e-4
#: The same for a model computing in float16 or bfloat16 (its sums round differently once channels are gone).
HALF_TOLERANCE = 1e-2

#: (layer name, activation or None, values) -> values: the front end applies the activation named in a config
#: (``activation`` not None) or the layer itself (None: ReLU, LeakyReLU, ELU) to a vector of channel values.
Evaluate = Callable[[str, Any, np.ndarray], np.ndarray]

#: Activations that act on each value alone (a constant channel stays constant through them).
ELEMENTWISE_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "swish", "silu", "gelu", "elu", "selu",
    "softplus", "softsign", "exponential", "leaky_relu", "hard_swish", "hard_silu", "mish", "log_sigmoid", "celu",
    "hard_tanh", "tanh_shrink", "hard_shrink", "soft_shrink", "sparse_plus", "squareplus"})


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One layer of a model as plain data, as a front end reads it.

    Attributes:
      name: the layer's name (also the name of its output tensor).
      class_name: its class's name (``"Conv2D"``).
      config: its ``get_config()``.
      inputs: the names of the layers whose outputs it takes, in order.
      weights: its ``get_weights()``.
      input_shapes: the shapes of its inputs (batch axis included; None where unknown).
      output_shape: the shape of its output.
    """

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]
    weights: list[np.ndarray]
    input_shapes: tuple[tuple[int | None, ...], ...]
    output_shape: tuple[int | None, ...]


def refusal(call: LayerCall, why: str) -> ValueError:
    """The error for a layer :func:`slim_graph` cannot slim."""
    return ValueError(f"tfimp.slim cannot slim layer {call.name!r} ({call.class_name}): {why}")


class _Layer:
    """A layer that acts channel by channel, has no weights, and passes constants unchanged (Dropout, Cropping)."""

    mapping = SAME
    #: True for a layer that mixes channels: its inputs and its output keep every channel.
    pins = False

    def __init__(self, call: LayerCall, evaluate: Evaluate):
        self.call = call
        self.evaluate = evaluate
        if call.config.get("data_format", "channels_last") != "channels_last":
            raise refusal(call, f"data_format {call.config['data_format']!r}; tfimp.slim reads channels_last only")
        if call.output_shape and call.output_shape[-1] is None:
            raise refusal(call, f"its output's channel count is unknown (shape {call.output_shape})")

    def op(self) -> Op:
        """The op of :mod:`tfimp.core.slimming` for this layer."""
        return Op(self.call.name, self.call.inputs, self.mapping)

    def propagate(self, inputs: Sequence[Signal]) -> Signal:
        """What its output channels hold, given its inputs'."""
        return inputs[0]

    def needs(self, inputs: Sequence[Signal]) -> list[np.ndarray]:
        """Per input, the channels this layer cannot do without."""
        return [np.full(s.constant.shape, self.pins) for s in inputs]

    def rebuild(self, keep_in: Sequence[np.ndarray], keep_out: np.ndarray,
                inputs: Sequence[Signal]) -> tuple[dict, list[np.ndarray]]:
        """Its config and weights with only the channels kept."""
        return copy.deepcopy(self.call.config), list(self.call.weights)

    def activate(self, spec: Any, signal: Signal) -> Signal:
        """``signal`` through the activation ``spec`` (a config's ``activation``)."""
        if spec in (None, "linear"):
            return signal
        if not isinstance(spec, str) or spec not in ELEMENTWISE_ACTIVATIONS:
            return Signal.varying(signal.constant.size)
        return self._evaluated(spec, signal)

    def _evaluated(self, spec: Any, signal: Signal) -> Signal:
        if not signal.constant.any():
            return signal
        values = np.asarray(self.evaluate(self.call.name, spec, signal.value.astype(np.float32)), dtype=np.float64)
        return Signal.of(signal.constant & np.isfinite(values), values)


def _weights(call: LayerCall, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The layer's weights by name, in ``get_weights`` order; refuses a layer holding others (LoRA, quantized)."""
    if len(call.weights) != len(names):
        raise refusal(call, f"it holds {len(call.weights)} weights; tfimp.slim knows this layer with {list(names)} "
                            "(not with LoRA, quantization or renormalization)")
    return {name: np.asarray(weight) for name, weight in zip(names, call.weights)}


def _bias(config: dict) -> tuple[str, ...]:
    return ("bias",) if config.get("use_bias", True) else ()


def _activation_pins(spec: Any) -> bool:
    return spec not in (None, "linear") and not (isinstance(spec, str) and spec in ELEMENTWISE_ACTIVATIONS)


def _folds_constants(config: dict) -> bool:
    """Whether a kernel adds a constant input channel alike at every output position (no zero padding reaches it)."""
    if "kernel_size" not in config:
        return True
    return config.get("padding", "valid") == "valid" or all(k == 1 for k in np.atleast_1d(config["kernel_size"]))


class _Input(_Layer):
    mapping = SOURCE
    pins = True

    def op(self) -> Op:
        return Op(self.call.name, (), SOURCE, channels=int(self.call.output_shape[-1]))

    def propagate(self, inputs):
        return Signal.varying(int(self.call.output_shape[-1]))


class _Linear(_Layer):
    """Conv1D/2D/3D and Dense: new channels from every input channel; constants read are folded into the bias."""

    mapping = FRESH

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        config = call.config
        if config.get("groups", 1) != 1:
            raise refusal(call, f"groups={config['groups']}; tfimp.slim slims convolutions with groups=1 only")
        weights = _weights(call, ("kernel", *_bias(config)))
        kernel = self.kernel = weights["kernel"]
        self.bias = weights.get("bias")
        inputs, outputs = kernel.shape[-2], kernel.shape[-1]
        self.sums = kernel.reshape(-1, inputs, outputs).astype(np.float64).sum(0)
        self.reads = (kernel != 0).reshape(-1, inputs, outputs).any(0)
        self.foldable = _folds_constants(config)
        self.pins = _activation_pins(config.get("activation"))

    def op(self):
        return Op(self.call.name, self.call.inputs, FRESH, channels=self.sums.shape[1])

    def _unfoldable(self, signal: Signal) -> np.ndarray:
        """The input channels whose value this layer cannot absorb into its bias."""
        return ~signal.constant | ((not self.foldable) & (signal.value != 0))

    def propagate(self, inputs):
        (signal,) = inputs
        constant = ~(self.reads & self._unfoldable(signal)[:, None]).any(0)
        bias = self.bias.astype(np.float64) if self.bias is not None else 0.0
        return self.activate(self.call.config.get("activation"), Signal.of(constant, bias + signal.value @ self.sums))

    def needs(self, inputs):
        (signal,) = inputs
        return [self.reads.any(1) & self._unfoldable(signal)]

    def _fold(self, keep_in: np.ndarray, signal: Signal) -> np.ndarray:
        """What the removed (constant) input channels added to each output."""
        removed = ~keep_in & signal.constant
        return signal.value[removed] @ self.sums[removed]

    def _cut_kernels(self, keep_in: np.ndarray, keep_out: np.ndarray) -> list[np.ndarray]:
        return [self.kernel[..., keep_in, :][..., keep_out]]

    def rebuild(self, keep_in, keep_out, inputs):
        config = copy.deepcopy(self.call.config)
        config["units" if "units" in config else "filters"] = int(keep_out.sum())
        weights = self._cut_kernels(keep_in[0], keep_out)
        fold = self._fold(keep_in[0], inputs[0])[keep_out]
        dtype = self.kernel.dtype
        if self.bias is not None:
            weights.append((self.bias[keep_out].astype(np.float64) + fold).astype(dtype))
        elif np.any(fold != 0):
            config["use_bias"] = True
            weights.append(fold.astype(dtype))
        return config, weights


class _Separable(_Linear):
    """SeparableConv1D/2D: a depthwise then a pointwise kernel; its input channels go with both."""

    def __init__(self, call, evaluate):
        _Layer.__init__(self, call, evaluate)
        config = call.config
        weights = _weights(call, ("depthwise_kernel", "pointwise_kernel", *_bias(config)))
        self.depthwise, self.pointwise = weights["depthwise_kernel"], weights["pointwise_kernel"]
        self.kernel = self.depthwise
        self.bias = weights.get("bias")
        channels, multiplier = self.depthwise.shape[-2:]
        self.multiplier = multiplier
        pointwise = self.pointwise.reshape(channels * multiplier, -1).astype(np.float64)
        depthwise = self.depthwise.reshape(-1, channels * multiplier)
        sums = depthwise.astype(np.float64).sum(0)[:, None] * pointwise
        reads = (depthwise != 0).any(0)[:, None] & (pointwise != 0)
        self.sums = sums.reshape(channels, multiplier, -1).sum(1)
        self.reads = reads.reshape(channels, multiplier, -1).any(1)
        self.foldable = _folds_constants(config)
        self.pins = _activation_pins(config.get("activation"))

    def _cut_kernels(self, keep_in, keep_out):
        middle = np.repeat(keep_in, self.multiplier)
        return [self.depthwise[..., keep_in, :], self.pointwise[..., middle, :][..., keep_out]]


class _Depthwise(_Layer):
    """DepthwiseConv1D/2D: each input channel makes ``depth_multiplier`` output channels with its own filters."""

    mapping = REPEAT

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        weights = _weights(call, ("depthwise_kernel", *_bias(call.config)))
        self.kernel = weights["depthwise_kernel"]
        self.channels, self.multiplier = self.kernel.shape[-2:]
        self.bias = weights.get("bias")
        flat = self.kernel.reshape(-1, self.channels, self.multiplier)
        self.sums = flat.astype(np.float64).sum(0)
        self.zero_filters = ~(flat != 0).any(0)
        self.pins = _activation_pins(call.config.get("activation"))

    def op(self):
        return Op(self.call.name, self.call.inputs, REPEAT, factor=self.multiplier)

    def propagate(self, inputs):
        (signal,) = inputs
        passes = signal.constant & (_folds_constants(self.call.config) | (signal.value == 0))
        constant = self.zero_filters | passes[:, None]
        bias = 0.0 if self.bias is None else self.bias.reshape(self.channels, self.multiplier).astype(np.float64)
        value = np.where(self.zero_filters, 0.0, signal.value[:, None] * self.sums) + bias
        return self.activate(self.call.config.get("activation"), Signal.of(constant.ravel(), value.ravel()))

    def rebuild(self, keep_in, keep_out, inputs):
        (keep,) = keep_in
        weights = [self.kernel[..., keep, :]]
        if self.bias is not None:
            weights.append(self.bias.reshape(self.channels, self.multiplier)[keep].ravel())
        return copy.deepcopy(self.call.config), weights


def _channel_axis(call: LayerCall, axis: Any) -> bool:
    """Whether ``axis`` (an int or a one-element list) names the last axis of the layer's input."""
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    rank = len(call.input_shapes[0])
    return axis in (-1, rank - 1)


class _BatchNorm(_Layer):
    """BatchNormalization (in inference: its moving statistics); ``gamma == 0`` makes a channel ``beta``."""

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        config = call.config
        if not _channel_axis(call, config.get("axis", -1)):
            raise refusal(call, f"axis {config.get('axis')!r} is not the channel (last) axis")
        names = ("gamma",) * bool(config.get("scale", True)) + ("beta",) * bool(config.get("center", True))
        weights = {name: w.astype(np.float64) for name, w in _weights(call, (*names, "mean", "variance")).items()}
        channels = int(call.output_shape[-1])
        self.gamma = weights.get("gamma", np.ones(channels))
        self.beta = weights.get("beta", np.zeros(channels))
        self.mean, self.variance = weights["mean"], weights["variance"]
        self.epsilon = float(config.get("epsilon", 1e-3))

    def propagate(self, inputs):
        (signal,) = inputs
        dead = self.gamma == 0
        value = self.gamma * (signal.value - self.mean) / np.sqrt(self.variance + self.epsilon) + self.beta
        return Signal.of(signal.constant | dead, np.where(dead, self.beta, value))

    def rebuild(self, keep_in, keep_out, inputs):
        return copy.deepcopy(self.call.config), [np.asarray(w)[keep_out] for w in self.call.weights]


class _Activation(_Layer):
    """Activation: channel by channel when its activation is; a softmax (or unknown) mixes channels."""

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        self.pins = _activation_pins(call.config.get("activation"))

    def propagate(self, inputs):
        return self.activate(self.call.config.get("activation"), inputs[0])


class _ActivationLayer(_Layer):
    """ReLU, LeakyReLU, ELU, ThresholdedReLU: the front end applies the layer itself to constants."""

    def propagate(self, inputs):
        return self._evaluated(None, inputs[0])


class _Rescaling(_Layer):
    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        channels = int(call.output_shape[-1])
        try:
            self.scale, self.offset = (np.broadcast_to(np.asarray(call.config.get(key, default), dtype=np.float64)
                                                       .reshape(-1), (channels,))
                                       for key, default in (("scale", 1.0), ("offset", 0.0)))
        except (ValueError, TypeError) as error:
            raise refusal(call, f"scale {call.config.get('scale')!r} / offset {call.config.get('offset')!r} are not "
                                f"one value or one per channel") from error

    def propagate(self, inputs):
        return Signal.of(inputs[0].constant, inputs[0].value * self.scale + self.offset)


class _AveragePooling(_Layer):
    """Average pooling: with ``"same"`` padding only a zero channel is known to stay constant."""

    def propagate(self, inputs):
        (signal,) = inputs
        if self.call.config.get("padding", "valid") == "valid":
            return signal
        return Signal.of(signal.zero, signal.value)


class _ZeroPadding(_AveragePooling):
    def propagate(self, inputs):
        return Signal.of(inputs[0].zero, inputs[0].value)


_MERGES = {"Add": lambda values: np.sum(values, 0), "Subtract": lambda values: values[0] - values[1],
           "Multiply": lambda values: np.prod(values, 0), "Average": lambda values: np.mean(values, 0),
           "Maximum": lambda values: np.max(values, 0), "Minimum": lambda values: np.min(values, 0)}


class _Merge(_Layer):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: channel ``c`` of every input makes channel ``c``."""

    def propagate(self, inputs):
        constant = np.logical_and.reduce([s.constant for s in inputs])
        value = _MERGES[self.call.class_name](np.stack([s.value for s in inputs]))
        if self.call.class_name == "Multiply":
            zero = np.logical_or.reduce([s.zero for s in inputs])
            return Signal.of(constant | zero, np.where(zero, 0.0, value))
        return Signal.of(constant, value)


class _Concatenate(_Layer):
    """Concatenate: on the channel axis the inputs' channels one after the other, else channel by channel."""

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        self.on_channels = _channel_axis(call, call.config.get("axis", -1))
        self.mapping = CONCAT if self.on_channels else SAME

    def propagate(self, inputs):
        if self.on_channels:
            return Signal.of(np.concatenate([s.constant for s in inputs]), np.concatenate([s.value for s in inputs]))
        values = np.stack([s.value for s in inputs])
        constant = np.logical_and.reduce([s.constant for s in inputs]) & (values == values[0]).all(0)
        return Signal.of(constant, values[0])


class _Flatten(_Layer):
    """Flatten: unit ``s * C + c`` is channel ``c`` at position ``s``; the Dense after it reads those units."""

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        spatial = call.input_shapes[0][1:-1]
        if any(size is None for size in spatial):
            raise refusal(call, f"its input's spatial size is unknown (shape {call.input_shapes[0]})")
        self.positions = math.prod(spatial)
        self.mapping = FLATTEN if spatial else SAME

    def op(self):
        return Op(self.call.name, self.call.inputs, self.mapping, factor=self.positions)

    def propagate(self, inputs):
        (signal,) = inputs
        return Signal.of(np.tile(signal.constant, self.positions), np.tile(signal.value, self.positions))


class _Reshape(_Layer):
    """A Reshape that keeps the channel axis last and whole (``(C,) -> (1, 1, C)``, a squeeze-and-excitation's)."""

    def __init__(self, call, evaluate):
        super().__init__(call, evaluate)
        channels = call.input_shapes[0][-1]
        if channels is None or call.output_shape[-1] != channels or len(call.config.get("target_shape", ())) == 0:
            raise refusal(call, f"it moves the channel axis ({call.input_shapes[0]} -> {call.output_shape}); "
                                "tfimp.slim follows a Reshape only when the last axis stays the channels")

    def rebuild(self, keep_in, keep_out, inputs):
        config = copy.deepcopy(self.call.config)
        config["target_shape"] = [*config["target_shape"][:-1], int(keep_out.sum())]
        return config, []


class _Mixing(_Layer):
    """Softmax, LayerNormalization, UnitNormalization, Normalization: the channels pass whole (all of them stay)."""

    pins = True

    def propagate(self, inputs):
        return Signal.varying(inputs[0].constant.size)


_D123 = ("1D", "2D", "3D")
#: Keras class name -> its rules.
_RULES: dict[str, type[_Layer]] = {
    "InputLayer": _Input, "Dense": _Linear, "Conv1D": _Linear, "Conv2D": _Linear, "Conv3D": _Linear,
    "SeparableConv1D": _Separable, "SeparableConv2D": _Separable,
    "DepthwiseConv1D": _Depthwise, "DepthwiseConv2D": _Depthwise,
    "BatchNormalization": _BatchNorm, "Activation": _Activation, "Rescaling": _Rescaling,
    **dict.fromkeys(("ReLU", "LeakyReLU", "ELU", "ThresholdedReLU"), _ActivationLayer),
    **dict.fromkeys(("Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization",
                     "Identity", *(f"{name}{d}" for name in ("SpatialDropout", "MaxPooling", "GlobalMaxPooling",
                                                             "GlobalAveragePooling", "Cropping", "UpSampling")
                                   for d in _D123)), _Layer),
    **{f"AveragePooling{d}": _AveragePooling for d in _D123},
    **{f"ZeroPadding{d}": _ZeroPadding for d in _D123},
    **dict.fromkeys(_MERGES, _Merge), "Concatenate": _Concatenate, "Flatten": _Flatten,
    "Reshape": _Reshape,
    **dict.fromkeys(("Softmax", "LayerNormalization", "UnitNormalization", "Normalization"), _Mixing),
}

#: The layer classes :func:`slim_graph` can slim.
SUPPORTED = tuple(sorted(_RULES))


def _describe(call: LayerCall, evaluate: Evaluate) -> _Layer:
    rules = _RULES.get(call.class_name)
    if rules is None and "layers" in call.config:
        raise refusal(call, "a model nested in the model; tfimp.slim rebuilds one flat graph of layers (build the "
                            "model from the nested model's layers)")
    if rules is None:
        raise refusal(call, f"tfimp.slim does not know how this layer treats channels; it knows {list(SUPPORTED)}")
    return rules(call, evaluate)


@dataclasses.dataclass(frozen=True)
class Slimmed:
    """The result of :func:`slim_graph`.

    Attributes:
      configs: each layer's new config.
      weights: each layer's new weights (``set_weights`` order).
      keep: each layer's output channels kept (boolean masks).
      report: the channels and parameters each layer lost.
    """

    configs: dict[str, dict]
    weights: dict[str, list[np.ndarray]]
    keep: dict[str, np.ndarray]
    report: SlimReport


def slim_graph(calls: Sequence[LayerCall], outputs: Sequence[str], evaluate: Evaluate) -> Slimmed:
    """Every layer's config and weights without the channels that predictions do not need.

    Args:
      calls: every layer of the model, each called once (inputs included, as ``InputLayer``).
      outputs: the names of the layers whose outputs are the model's outputs (they keep every channel).
      evaluate: applies an activation (or a layer) to constant channel values (see :data:`Evaluate`).

    Raises:
      ValueError: a layer this module does not know, or a layer it cannot slim (naming it and why).
    """
    layers = {call.name: _describe(call, evaluate) for call in calls}
    groups = group_channels([layer.op() for layer in layers.values()])
    signals = propagate(groups, {name: layer.propagate for name, layer in layers.items()})
    needed = {name: np.zeros(size, dtype=bool) for name, size in groups.channels.items()}
    for name, layer in layers.items():
        for source, need in zip(layer.call.inputs, layer.needs([signals[n] for n in layer.call.inputs])):
            needed[source] |= need
        if layer.pins:
            needed[name][:] = True
    for name in outputs:
        needed[name][:] = True
    keep = keep_masks(groups, needed)
    configs, weights, changes = {}, {}, []
    for op in groups.ops:
        layer = layers[op.name]
        configs[op.name], weights[op.name] = layer.rebuild([keep[n] for n in op.inputs], keep[op.name],
                                                           [signals[n] for n in op.inputs])
        changes.append(LayerChange(op.name, groups.channels[op.name], int(keep[op.name].sum()),
                                   sum(int(np.size(w)) for w in layer.call.weights),
                                   sum(int(np.size(w)) for w in weights[op.name])))
    return Slimmed(configs, weights, keep, SlimReport(tuple(changes)))


def _layer_name(entry: dict) -> str:
    return entry.get("name") or entry["config"]["name"]


def slimmed_model_config(model_config: dict, slimmed: Slimmed) -> dict:
    """A copy of a Sequential or functional model's config with each layer's config replaced by its slimmed one.

    The layers' ``build_config`` (the input shapes they were built for) is
    dropped: the model builds each layer on its new inputs.
    """
    config = copy.deepcopy(model_config)
    for entry in config["layers"]:
        name = _layer_name(entry)
        if name in slimmed.configs:
            entry["config"] = copy.deepcopy(slimmed.configs[name])
        entry.pop("build_config", None)
    return config


#: A layer's inbound nodes as a front end parses them from its config: one (keras histories ``[layer, node,
#: tensor]``, names of keyword arguments that hold tensors) pair per call of the layer.
Inbound = Callable[[dict], list[tuple[list[list], list[str]]]]
#: A layer's name -> its weights, input shapes and output shape (what the config does not hold).
LayerData = Callable[[str], tuple[list[np.ndarray], tuple[tuple[int | None, ...], ...], tuple[int | None, ...]]]


def _inputs(name: str, nodes: list[tuple[list[list], list[str]]]) -> tuple[str, ...]:
    if len(nodes) > 1:
        raise ValueError(f"tfimp.slim cannot slim layer {name!r}: it is called {len(nodes)} times in the model (a "
                         "shared layer); tfimp.slim rebuilds layers called once")
    if not nodes:
        return ()
    histories, tensor_kwargs = nodes[0]
    if tensor_kwargs:
        raise ValueError(f"tfimp.slim cannot slim layer {name!r}: it takes tensors as keyword arguments "
                         f"{sorted(tensor_kwargs)}")
    for source, _, tensor_index in histories:
        if tensor_index != 0:
            raise ValueError(f"tfimp.slim cannot slim layer {name!r}: it takes output {tensor_index} of layer "
                             f"{source!r}; tfimp.slim rebuilds layers with one output")
    return tuple(history[0] for history in histories)


def read_model(config: dict, sequential: bool, inbound: Inbound, layer_data: LayerData,
               name: str = "model") -> tuple[list[LayerCall], list[str]]:
    """A Sequential or functional model's config read into :class:`LayerCall` records, and its output layers' names.

    Args:
      config: the model's ``get_config()``.
      sequential: whether it is a Sequential model (each layer takes the one before it).
      inbound: parses a functional config entry's ``inbound_nodes`` (each Keras has its own format).
      layer_data: a layer's weights and shapes, by name (not asked for input layers).
      name: the model's name, for errors.

    Raises:
      ValueError: a Sequential model not built on an Input, a shared layer, a
        layer taking tensors as keyword arguments or another layer's second output.
    """
    entries = config["layers"]
    if sequential and (not entries or entries[0]["class_name"] != "InputLayer"):
        raise ValueError(f"tfimp.slim needs the Sequential model {name!r} built on a keras.Input")
    calls, previous = [], None
    for entry in entries:
        layer = _layer_name(entry)
        if "ops" in (entry.get("module") or "").split("."):  # Keras 3 records keras.ops calls (x + 3) as operations
            raise ValueError(f"tfimp.slim cannot slim {layer!r}: it is the operation keras.ops.{entry['class_name']} "
                             f"({entry['module']}), not a layer; tfimp.slim follows layers (write keras.layers.Add "
                             "and the like)")
        if entry["class_name"] == "InputLayer":
            shape = entry["config"].get("batch_shape") or entry["config"]["batch_input_shape"]
            calls.append(LayerCall(layer, "InputLayer", entry["config"], (), [], (), tuple(shape)))
        else:
            inputs = (previous,) if sequential else _inputs(layer, inbound(entry))
            try:
                data = layer_data(layer)
            except (AttributeError, RuntimeError) as error:  # Keras: "multiple inbound nodes" and the like
                raise ValueError(f"tfimp.slim cannot read the shapes of layer {layer!r}: {error} (is it called in "
                                 "another model too? keras.models.clone_model gives a model of its own)") from error
            calls.append(LayerCall(layer, entry["class_name"], entry["config"], inputs, *data))
        previous = layer
    if sequential:
        return calls, [previous]
    return calls, _history_names(config["output_layers"])


def _history_names(value: Any) -> list[str]:
    """The layer names of a config's ``output_layers``: ``[name, node, tensor]`` triples, alone or in lists or dicts."""
    if isinstance(value, dict):
        return [name for item in value.values() for name in _history_names(item)]
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        return [value[0]]
    return [name for item in value for name in _history_names(item)]


def slim_model(model: Any, *, sequential: bool, inbound: Inbound, layer_data: LayerData, evaluate: Evaluate,
               build: Callable[[dict, dict[str, list[np.ndarray]]], Any],
               predict: Callable[[Any, list[np.ndarray]], list[np.ndarray]] | None,
               input_shapes: Sequence[tuple[int | None, ...]], verbose: int = 0) -> tuple[Any, SlimReport]:
    """Slims a (stripped) Sequential or functional Keras model and checks the result; returns (new model, report).

    The front end supplies what is its Keras': reading a config entry's
    inbound nodes and a layer's weights and shapes, applying an activation
    (see :func:`read_model`, :func:`slim_graph`), building the model and
    predicting. ``model`` itself is used only through ``get_config()``,
    ``name`` and the front end's functions.

    Args:
      model: the model (plain: a front end strips a wrapped one first).
      sequential: whether it is a Sequential model.
      inbound, layer_data: see :func:`read_model`.
      evaluate: see :data:`Evaluate`.
      build: (new model config, weights by layer name) -> the new model, weights set.
      predict: (model, inputs) -> its outputs in inference, as numpy arrays;
        None skips the check.
      input_shapes: the model's input shapes; the check feeds two random
        examples of each (skipped, with a log line, when a size is unknown).
      verbose: 1 prints the summary, 0 logs it.

    Raises:
      ValueError: a layer that cannot be slimmed (see :func:`slim_graph`), or
        slimmed predictions that differ from the model's by more than
        :data:`TOLERANCE` (a bug in tfimp: please report it).
    """
    config = model.get_config()
    calls, outputs = read_model(config, sequential, inbound, layer_data, model.name)
    slimmed = slim_graph(calls, outputs, evaluate)
    new = build(slimmed_model_config(config, slimmed), slimmed.weights)
    if predict is not None:
        _check(predict, model, new, input_shapes, HALF_TOLERANCE if "float16" in json.dumps(config) else TOLERANCE)
    summary = slimmed.report.summary()
    if verbose:
        print(summary, flush=True)
    else:
        _log.info("%s", summary)
    return new, slimmed.report


def model_refusal(model: Any, graph: bool) -> ValueError | None:
    """The error for a model that is not Sequential or functional (``graph`` False) or not built; else None."""
    if not graph:
        return ValueError(f"tfimp.slim rebuilds Sequential and functional models from their config; {model.name!r} "
                          f"is a subclassed {type(model).__name__}")
    if not model.built or not model.inputs:
        return ValueError(f"tfimp.slim needs the model {model.name!r} built on a keras.Input (it reads the shapes)")
    return None


def _check(predict, model, new, input_shapes, tolerance: float) -> None:
    """Raises ValueError when the slimmed model's predictions on random inputs differ from the model's."""
    if any(size is None for shape in input_shapes for size in shape[1:]):
        _log.info("tfimp.slim: predictions not compared (an input size is unknown: %s)", list(input_shapes))
        return
    random = np.random.default_rng(0)
    inputs = [random.standard_normal((2, *shape[1:])).astype(np.float32) for shape in input_shapes]
    before, after = predict(model, inputs), predict(new, inputs)
    difference = max((relative_difference(a, b) for a, b in zip(before, after)), default=0.0)
    if not difference <= tolerance:
        raise ValueError(f"tfimp.slim: the slimmed model's predictions differ from the pruned model's by {difference:.3g} "
                         f"(relative; at most {tolerance} allowed). This is a bug in tfimp.slim: please report it "
                         "with the model's summary.")
