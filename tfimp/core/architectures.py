"""The built-in model architectures, written once for either Keras.

Each builder takes the Keras module it builds with as its first argument
(``tf_keras`` for the tf_keras front end, Keras 3 for ``tfimp.keras3``), so
both front ends build the same layers with the same names, and a table
(:data:`BUILT_IN`) names them. Users reach them through their front end's
registry, ``tfimp.models`` (:class:`ModelRegistry`).

| name | model | parameters |
|---|---|---|
| resnet20/32/44/56/110 | CIFAR ResNets (He et al. 2016, arXiv:1512.03385) | 0.27M ... 1.7M |
| resnet18 | ResNet-18 for 32x32 inputs | 11.2M |
| wrn28_10 | WideResNet-28-10, dropout 0.3 | 36.5M |
| vgg16_bn | VGG-16 with BatchNorm for 32x32 inputs | 14.7M |
| resnet50 | ResNet-50 for ImageNet (keras.applications, random weights) | 25.6M |
| small_cnn | two conv blocks + two dense layers for 28x28 grey images | 0.12M |
| lenet_300_100 | the fully connected LeNet-300-100 (LeCun et al. 1998) for 28x28 grey images | 0.27M |

Each registered builder is ``fn(num_classes, input_shape) -> Model`` and
outputs logits. Weight decay is applied by the optimizer
(``tfimp.optimizers.TorchSGD``: coupled L2 on all parameters), as in the
paper's code, not by kernel regularisers. The paper's models use PyTorch's
BatchNorm settings (running statistics momentum 0.1, i.e. Keras momentum
0.9, and epsilon 1e-5) instead of Keras' defaults (0.99, 1e-3), and pad
strided convolutions symmetrically as PyTorch does (:func:`torch_conv`);
``small_cnn``, tfimp's own demo model, keeps Keras' defaults.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable

from tfimp.core.registry import Registry

#: PyTorch's BatchNorm defaults in Keras terms: Keras' momentum is 1 - PyTorch's (0.1).
TORCH_BN_MOMENTUM = 0.9
TORCH_BN_EPSILON = 1e-5


def _batch_norm(keras, name: str):
    """BatchNorm as PyTorch's default (momentum 0.1 there is 0.9 here; epsilon 1e-5), as in the paper's models."""
    return keras.layers.BatchNormalization(momentum=TORCH_BN_MOMENTUM, epsilon=TORCH_BN_EPSILON, name=name)


def torch_conv(keras, filters: int, kernel_size: int, strides: int = 1, *, name: str, **conv_kwargs):
    """A ``Conv2D`` padded as PyTorch's ``Conv2d(padding=kernel_size // 2)``: returns ``fn(x) -> y``.

    Keras' ``padding="same"`` pads a strided convolution asymmetrically (all
    of an odd total at the bottom/right, none at the top/left when the total
    is 1), so a stride-2 3x3 convolution on an even-sized input samples the
    pixels one row and column later than PyTorch's symmetric ``padding=1``.
    The paper's models are PyTorch models: strided convolutions here get an
    explicit symmetric ``ZeroPadding2D`` and ``"valid"`` padding. Stride-1
    convolutions (odd kernels) are already symmetric with ``"same"``.
    """
    pad = kernel_size // 2
    if strides == 1 or pad == 0:
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=name, **conv_kwargs)
    padding = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")
    conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", name=name, **conv_kwargs)
    return lambda x: conv(padding(x))


def _conv_bn(keras, x, filters: int, kernel_size: int, strides: int, name: str):
    x = torch_conv(keras, filters, kernel_size, strides, use_bias=False, kernel_initializer="he_normal",
                   name=f"{name}_conv")(x)
    return _batch_norm(keras, f"{name}_bn")(x)


def cifar_resnet(keras, depth: int, *, num_classes: int = 10, input_shape=(32, 32, 3)):
    """CIFAR ResNet-``depth`` (depth = 6n + 2: 20, 32, 44, 56, 110).

    Three stages of n basic blocks with 16/32/64 filters, identity shortcuts,
    and a 1x1 convolution shortcut where the shape changes (option B).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU()(_conv_bn(keras, inputs, 16, 3, 1, "stem"))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            x = _basic_block(keras, x, filters, strides, name)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def _basic_block(keras, x, filters: int, strides: int, name: str):
    """Post-activation basic block (two 3x3 convs) with a 1x1 projection where shapes change."""
    y = keras.layers.ReLU()(_conv_bn(keras, x, filters, 3, strides, f"{name}_a"))
    y = _conv_bn(keras, y, filters, 3, 1, f"{name}_b")
    shortcut = x if strides == 1 and x.shape[-1] == filters else _conv_bn(keras, x, filters, 1, strides, f"{name}_proj")
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))


def resnet18_cifar(keras, *, num_classes: int = 10, input_shape=(32, 32, 3)):
    """ResNet-18 for 32x32 inputs: 3x3 stem without max-pool, [2, 2, 2, 2] basic blocks (~11.2M)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU()(_conv_bn(keras, inputs, 64, 3, 1, "stem"))
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            x = _basic_block(keras, x, filters, 2 if stage > 0 and block == 0 else 1, f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="resnet18")


def wide_resnet(keras, depth: int = 28, width: int = 10, dropout: float = 0.3, *, num_classes: int = 100,
                input_shape=(32, 32, 3)):
    """WideResNet-depth-width (Zagoruyko & Komodakis 2016, arXiv:1605.07146), pre-activation blocks."""
    if (depth - 4) % 6:
        raise ValueError(f"WideResNet depth must be 6n + 4 (16, 22, 28, 40, ...), got {depth}")
    blocks = (depth - 4) // 6
    conv = lambda filters, size, strides, name: torch_conv(  # noqa: E731
        keras, filters, size, strides, use_bias=False, kernel_initializer="he_normal", name=name)
    inputs = keras.Input(input_shape)
    x = conv(16, 3, 1, "stem_conv")(inputs)
    for stage, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(blocks):
            name = f"stage{stage + 1}_block{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            pre = keras.layers.ReLU()(_batch_norm(keras, f"{name}_bn_a")(x))
            y = conv(filters, 3, strides, f"{name}_conv_a")(pre)
            y = keras.layers.ReLU()(_batch_norm(keras, f"{name}_bn_b")(y))
            y = keras.layers.Dropout(dropout)(y) if dropout else y
            y = conv(filters, 3, 1, f"{name}_conv_b")(y)
            shortcut = x if strides == 1 and x.shape[-1] == filters else conv(filters, 1, strides, f"{name}_proj")(pre)
            x = keras.layers.Add()([shortcut, y])
    x = keras.layers.ReLU()(_batch_norm(keras, "final_bn")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name=f"wrn{depth}_{width}")


def vgg16_bn_cifar(keras, *, num_classes: int = 10, input_shape=(32, 32, 3)):
    """VGG-16 with BatchNorm for 32x32 inputs: 13 conv layers, one linear classifier (~14.7M)."""
    plan = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
    inputs = keras.Input(input_shape)
    x, index = inputs, 0
    for item in plan:
        if item == "M":
            x = keras.layers.MaxPooling2D()(x)
            continue
        index += 1
        x = keras.layers.ReLU()(_conv_bn(keras, x, item, 3, 1, f"conv{index}"))
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="vgg16_bn")


def resnet50_imagenet(keras, *, num_classes: int = 1000, input_shape=(224, 224, 3)):
    """ResNet-50 (He et al. 2016) from ``keras.applications`` with random weights: nothing downloads."""
    model = keras.applications.ResNet50(weights=None, input_shape=input_shape, classes=num_classes,
                                        classifier_activation=None)
    for layer in model.layers:  # PyTorch's running-statistics momentum; its epsilon (1.001e-5) is kept
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = TORCH_BN_MOMENTUM
    return model


def small_cnn(keras, *, num_classes: int = 10, input_shape=(28, 28, 1), fc1_batch_norm: bool = True):
    """A small CNN for 28x28 grey images: two conv blocks and two dense layers (~0.1M).

    ``fc1_batch_norm=False`` builds it as it was before BatchNorm preceded fc1's
    ReLU (fc1 with a bias and its own ReLU), for ``benchmarks/recipe_seeds.py``.
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for index, filters in enumerate((32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"bn{index}")(x))
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    # BatchNorm before fc1's ReLU, as after the convolutions (Ioffe & Szegedy 2015, arXiv:1502.03167): without it
    # the first steps at the default rate can push every pre-activation of this 3136-input layer negative, and
    # the network stays at chance (seen for seed 0 on held-out 28x28 data; benchmarks/recipe_seeds.py).
    if fc1_batch_norm:
        x = keras.layers.Dense(32, use_bias=False, name="fc1")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn_fc1")(x))
    else:
        x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="small_cnn")


def lenet_300_100(keras, *, num_classes: int = 10, input_shape=(28, 28, 1)):
    """LeNet-300-100 (LeCun et al. 1998): 784-300-100-classes, ReLU, no BatchNorm (~0.27M).

    The pruning literature's classic fully connected network. A step costs a
    fraction of ``small_cnn``'s on a CPU, so budgets of a hundred epochs and
    more (where weight decay alone has had time to shrink what LC and GSM
    leave untrained) fit a CPU.
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="lenet_300_100")


#: ``name -> (builder(keras, *, num_classes, input_shape), the input shape it is designed for)``.
BUILT_IN: dict[str, tuple[Callable, tuple[int, ...]]] = {
    **{f"resnet{depth}": (functools.partial(cifar_resnet, depth=depth), (32, 32, 3)) for depth in (20, 32, 44, 56, 110)},
    "resnet18": (resnet18_cifar, (32, 32, 3)),
    "wrn28_10": (functools.partial(wide_resnet, depth=28, width=10, dropout=0.3), (32, 32, 3)),
    "vgg16_bn": (vgg16_bn_cifar, (32, 32, 3)),
    "resnet50": (resnet50_imagenet, (224, 224, 3)),
    "small_cnn": (small_cnn, (28, 28, 1)),
    "lenet_300_100": (lenet_300_100, (28, 28, 1)),
}


def float32_outputs(keras: ModuleType, model):
    """``model`` with float32 logits (Keras' advice for mixed precision: a float16 softmax/loss loses accuracy)."""
    outputs = keras.layers.Activation("linear", dtype="float32", name="float32_logits")(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def check_outputs_fit(model, num_classes: int, dataset: str) -> None:
    """Raises ValueError when a built model's output does not match the dataset's classes."""
    outputs = model.outputs[0].shape[-1]
    if outputs != num_classes:
        raise ValueError(f"model {model.name!r} has {outputs} outputs, dataset {dataset!r} has {num_classes} classes")


def bind(builder: Callable, keras: ModuleType) -> Callable:
    """``builder`` with its Keras module filled in, keeping its name and docstring."""
    return functools.update_wrapper(functools.partial(builder, keras), builder)


class ModelRegistry:
    """One front end's models by name: the built-in ones bound to its Keras, and the user's own.

    Args:
      keras: the Keras module the built-in models are built with.
    """

    def __init__(self, keras: ModuleType):
        self.keras = keras
        self._builders: Registry[Callable] = Registry("model")
        #: The input shape each built-in model is designed for (channels included).
        self.designed_for: dict[str, tuple[int, ...]] = {}
        for name, (builder, shape) in BUILT_IN.items():
            self._builders.register(name, bind(builder, keras))
            self.designed_for[name] = shape

    def api(self):
        """``(register, known, build, check_fits, designed_for)``: the names a front end's ``tfimp.models`` offers."""
        return self.register, self.known, self.build, self.check_fits, self.designed_for

    def register(self, name: str, fn=None):
        """``@register("name")``: adds a builder ``fn(num_classes, input_shape) -> Model``.

        Raises:
          ValueError: ``name`` is already registered.
        """
        return self._builders.register(name, fn)

    def known(self) -> list[str]:
        """Names of the registered models, sorted."""
        return self._builders.known()

    def build(self, name: str, *, num_classes: int, input_shape: tuple[int, ...]):
        """Builds model ``name``.

        Raises:
          ValueError: unknown name (the message lists the known ones).
        """
        return self._builders.get(name)(num_classes=num_classes, input_shape=tuple(input_shape))

    def check_fits(self, name: str, input_shape: tuple[int, ...], dataset: str = "the dataset") -> None:
        """Raises ValueError when model ``name`` is not designed for ``input_shape``.

        Models registered without a designed shape are not checked.
        """
        designed = self.designed_for.get(name)
        if designed is not None and tuple(designed) != tuple(input_shape):
            fitting = [n for n, s in sorted(self.designed_for.items()) if tuple(s) == tuple(input_shape)]
            raise ValueError(
                f"model {name!r} takes inputs of shape {tuple(designed)}, but {dataset} gives "
                f"{tuple(input_shape)}; pick a model built for this dataset (for {tuple(input_shape)}: {fitting})")
