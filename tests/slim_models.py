"""Channel-pruned models for the slimming tests of both front ends (each passes its own ``keras``).

The channels are zeroed with numpy (whole output channels of kernels, their
biases and BatchNormalization parameters), as a channel pruning would leave
them; each comment says why a channel must go or stay.
"""

import numpy as np


def residual_cnn(keras, input_shape=(8, 8, 3)):
    """A small CNN with a residual Add, a depthwise conv, a Concatenate, a separable conv and Flatten -> Dense."""
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    y = layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    y = layers.BatchNormalization(name="bn2")(y)
    x = layers.Add(name="add")([x, y])
    x = layers.Activation("relu", name="act")(x)
    d = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    d = layers.BatchNormalization(name="bn3")(d)
    d = layers.ReLU(name="relu3")(d)
    b = layers.Conv2D(6, 1, activation="relu", name="conv4")(x)
    x = layers.Concatenate(name="cat")([d, b])
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dropout(0.5, name="drop")(x)
    x = layers.SeparableConv2D(10, 3, activation="relu", name="sep")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(inputs, layers.Dense(5, name="out")(x), name="residual_cnn")


def randomize(model, seed=0):
    """Random weights everywhere, BatchNormalization statistics included (positive variances)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in weights]
        if type(layer).__name__ == "BatchNormalization":
            new[-1] = np.abs(new[-1]) + 0.5
        layer.set_weights(new)


def zero_filters(model, name, channels, bias=0.0):
    """Zeroes output ``channels`` of layer ``name``'s kernel (the pointwise kernel of a separable conv); sets their bias."""
    layer = model.get_layer(name)
    weights = layer.get_weights()
    index = 1 if type(layer).__name__ == "SeparableConv2D" else 0
    weights[index][..., channels] = 0.0
    if getattr(layer, "use_bias", False):
        weights[-1][channels] = bias
    layer.set_weights(weights)


def set_batchnorm(model, name, channels, gamma=None, beta=None, mean=None):
    """Sets BatchNormalization ``name``'s parameters of ``channels`` (None: unchanged)."""
    layer = model.get_layer(name)
    g, b, m, v = layer.get_weights()
    for array, value in ((g, gamma), (b, beta), (m, mean)):
        if value is not None:
            array[channels] = value
    layer.set_weights([g, b, m, v])


#: What slimming leaves of :func:`pruned_residual_cnn`: layer -> output channels.
RESIDUAL_CNN_KEPT = {"conv1": 6, "bn1": 6, "add": 6, "dw": 6, "conv2": 6, "conv4": 4, "cat": 10, "pool": 10,
                     "sep": 9, "flat": 36, "fc": 10, "out": 5}


def pruned_residual_cnn(keras):
    """:func:`residual_cnn` with random weights and pruned channels; see :data:`RESIDUAL_CNN_KEPT`."""
    model = residual_cnn(keras)
    randomize(model)
    # Residual channels 1 and 5: zero in both producers of the Add (conv1 and conv2, and their BatchNorms hold
    # zero for zero input); the depthwise conv then outputs its bias, a constant that the separable conv ("valid"
    # padding) folds into its bias; conv2 (3x3, "same") and conv4 read them as zero. Removed.
    zero_filters(model, "conv1", [1, 5, 3, 7])
    set_batchnorm(model, "bn1", [1, 5, 3], beta=0.0, mean=0.0)
    zero_filters(model, "conv2", [1, 5, 7])
    set_batchnorm(model, "bn2", [1, 5, 7], beta=0.0, mean=0.0)
    # Channel 3 is zero in conv1 only: conv2 still writes it into the Add. Kept.
    # Channel 7 is zero in both producers, but relu1 holds the constant 0.5 there, which conv2 (3x3, "same"
    # padding) cannot fold into its bias (its borders see the padding's zeros). Kept.
    set_batchnorm(model, "bn1", [7], beta=0.5, mean=0.0)
    # conv4's channels 0 (relu of 0) and 2 (relu of 0.3): constants the separable conv folds. Removed.
    zero_filters(model, "conv4", [0], bias=0.0)
    zero_filters(model, "conv4", [2], bias=0.3)
    # The separable conv's channel 4 is zero (relu of 0): the Dense after Flatten reads its 4 positions as 0. Removed.
    zero_filters(model, "sep", [4], bias=0.0)
    # fc's units 0-2 (zero) and 3-5 (relu of a positive bias): constants the last Dense folds. Removed.
    zero_filters(model, "fc", [0, 1, 2], bias=0.0)
    zero_filters(model, "fc", [3, 4, 5], bias=0.25)
    # An output unit is never removed, even with a zero filter.
    zero_filters(model, "out", [1], bias=0.0)
    return model


def pruned_mlp(keras):
    """A Sequential MLP whose hidden units 0, 3 and 4 are relu(0.5): the last layer (no bias) folds them into a bias
    it gains; returns the model and inputs."""
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="a"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(2, use_bias=False, name="b")])
    randomize(model)
    zero_filters(model, "a", [0, 3, 4], bias=0.5)
    return model, np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


def output_channels(model) -> dict:
    """Each layer's output channel count, by name."""
    return {layer.name: int(layer.output.shape[-1]) for layer in model.layers}


def prune_mobilenet(model):
    """MobileNetV2 with channels pruned as a channel pruning would; returns layer -> channels expected after slimming.

    - ``block_1_depthwise_BN`` gamma = 0 on 10 channels: they output beta, a constant the 1x1 projection folds
      into a bias (it has none: it gains one); the expansion conv's filters, both BatchNorms and the depthwise
      conv lose those channels.
    - The residual of stage 2 (``block_1_project`` and ``block_2_project`` added): channel 3 zero in both,
      removed everywhere in the stage; channel 5 zero in one only, kept.
    """
    randomize(model)
    set_batchnorm(model, "block_1_depthwise_BN", list(range(10)), gamma=0.0, beta=0.5)
    for name in ("block_1_project", "block_2_project"):
        zero_filters(model, name, [3])
        set_batchnorm(model, f"{name}_BN", [3], beta=0.0, mean=0.0)
    zero_filters(model, "block_1_project", [5])
    channels = output_channels(model)
    expected = {name: channels[name] - 10 for name in ("block_1_expand", "block_1_expand_BN", "block_1_depthwise",
                                                         "block_1_depthwise_BN")}
    expected.update({name: channels[name] - 1 for name in ("block_1_project", "block_2_project", "block_2_add")})
    return expected


def check_mobilenet(keras, slim, predict):
    """MobileNetV2 (alpha 0.35, 32x32) pruned by :func:`prune_mobilenet` and slimmed: the channels expected gone,
    the projection with a new bias, the same predictions."""
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    expected = prune_mobilenet(model)
    slimmed = slim(model)
    channels = output_channels(slimmed)
    assert {name: channels[name] for name in expected} == expected
    assert slimmed.get_layer("block_1_project").use_bias  # the folded constants need a bias
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert relative_difference(predict(model, x), predict(slimmed, x)) <= 1e-4


def check_squeeze_excite(keras, slim, predict):
    """A squeeze-and-excitation block (pooling, Reshape to (1, 1, C), two 1x1 convs, Multiply) whose channels 2 and
    4 are zero before it: the Multiply makes them zero whatever the gate says, so the block's Reshape, gate and
    producer lose them."""
    layers = keras.layers
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, name="conv")(inputs)
    gate = layers.GlobalAveragePooling2D(name="squeeze")(x)
    gate = layers.Reshape((1, 1, 8), name="reshape")(gate)
    gate = layers.Conv2D(2, 1, activation="relu", name="reduce")(gate)
    gate = layers.Conv2D(8, 1, activation="sigmoid", name="expand")(gate)
    x = layers.Multiply(name="excite")([x, gate])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    randomize(model)
    zero_filters(model, "conv", [2, 4])
    slimmed = slim(model)
    channels = output_channels(slimmed)
    assert [channels[name] for name in ("conv", "reshape", "expand", "excite", "pool")] == [6] * 5
    assert channels["reduce"] == 2
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    assert relative_difference(predict(model, x), predict(slimmed, x)) <= 1e-4


def check_conv1d(keras, slim, predict):
    """Conv1D (causal) -> AveragePooling1D ("same") -> Conv1D -> Flatten -> Dense: a zero channel goes; a channel
    holding relu(0.5) stays (a "same" average pooling is not known to keep a nonzero constant constant)."""
    layers = keras.layers
    inputs = keras.Input((8, 2))
    x = layers.Conv1D(6, 3, padding="causal", activation="relu", name="conv_a")(inputs)
    x = layers.AveragePooling1D(2, padding="same", name="pool")(x)
    x = layers.Conv1D(4, 1, name="conv_b")(x)
    x = layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, layers.Dense(2, name="out")(x))
    randomize(model)
    zero_filters(model, "conv_a", [1])
    zero_filters(model, "conv_a", [2], bias=0.5)
    zero_filters(model, "conv_b", [3])
    slimmed = slim(model)
    assert [output_channels(slimmed)[name] for name in ("conv_a", "pool", "conv_b", "flat")] == [5, 5, 3, 12]
    x = np.random.default_rng(0).normal(size=(2, 8, 2)).astype("float32")
    assert relative_difference(predict(model, x), predict(slimmed, x)) <= 1e-4


def relative_difference(expected, actual) -> float:
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    return float(np.abs(expected - actual).max() / np.abs(expected).max())
