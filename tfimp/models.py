"""Model builders (Keras 2 functional), found by name.

So far: the CIFAR ResNets of He et al. 2016 (arXiv:1512.03385, Sec. 4.2):
depth 6n+2, three stages of n basic blocks with 16/32/64 filters, identity
shortcuts, and a 1x1 convolution shortcut where the shape changes (option B).
"""

from __future__ import annotations

from typing import Callable

from tfimp._backend import keras
from tfimp.registry import Registry

_REGISTRY: Registry[Callable[..., keras.Model]] = Registry("model")

#: ``@register("name")``: adds a builder ``fn(num_classes, input_shape) -> Model``.
register = _REGISTRY.register
#: Names of the registered models, sorted.
known = _REGISTRY.known


def build(name: str, *, num_classes: int, input_shape: tuple[int, ...]) -> keras.Model:
    """Builds model ``name``.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    return _REGISTRY.get(name)(num_classes=num_classes, input_shape=tuple(input_shape))


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def cifar_resnet(depth: int, *, num_classes: int = 10, input_shape=(32, 32, 3)) -> keras.Model:
    """CIFAR ResNet-``depth`` (depth = 6n + 2: 20, 32, 44, 56, 110)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU()(_conv_bn(inputs, 16, 3, 1, "stem"))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            y = keras.layers.ReLU()(_conv_bn(x, filters, 3, strides, f"{name}_a"))
            y = _conv_bn(y, filters, 3, 1, f"{name}_b")
            shortcut = x if strides == 1 and x.shape[-1] == filters else _conv_bn(x, filters, 1, strides, f"{name}_proj")
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


for _depth in (20, 32, 44, 56, 110):
    register(f"resnet{_depth}")(lambda num_classes, input_shape, _d=_depth: cifar_resnet(_d, num_classes=num_classes, input_shape=input_shape))
