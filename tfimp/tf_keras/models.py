"""The tf_keras front end's models by name (built with ``tf_keras``): ``tfimp.models`` in a tf_keras process.

The built-in architectures and their table are in :mod:`tfimp.core.architectures`
(written once for either Keras); this module binds them to tf_keras and adds
keras-cv's ResNetV2 backbones, which exist only for Keras 2 here:

| name | model | parameters |
|---|---|---|
| kcv_resnet18_v2, kcv_resnet50_v2 | keras-cv's ResNetV2 backbones + a linear head, any input size (``[keras-cv]`` extra) | 11.2M, 23.6M |

Each builder is ``fn(num_classes, input_shape) -> Model`` and outputs logits.
"""

from __future__ import annotations

from tfimp.core import architectures, extras
from tfimp.tf_keras._backend import keras
from tfimp.core.architectures import TORCH_BN_EPSILON, TORCH_BN_MOMENTUM  # noqa: F401  (public names)

#: ``register("name")`` adds a builder ``fn(num_classes, input_shape) -> Model``; ``known()`` lists the names;
#: ``build(name, num_classes=, input_shape=)``; ``check_fits(name, input_shape)``; ``DESIGNED_FOR``: each
#: built-in model's input shape (see :class:`tfimp.core.architectures.ModelRegistry`).
register, known, build, check_fits, DESIGNED_FOR = architectures.ModelRegistry(keras).api()

torch_conv = architectures.bind(architectures.torch_conv, keras)
cifar_resnet = architectures.bind(architectures.cifar_resnet, keras)
resnet18_cifar = architectures.bind(architectures.resnet18_cifar, keras)
wide_resnet = architectures.bind(architectures.wide_resnet, keras)
vgg16_bn_cifar = architectures.bind(architectures.vgg16_bn_cifar, keras)
resnet50_imagenet = architectures.bind(architectures.resnet50_imagenet, keras)
small_cnn = architectures.bind(architectures.small_cnn, keras)
lenet_300_100 = architectures.bind(architectures.lenet_300_100, keras)


#: keras-cv ResNetV2 configurations (its presets' architectures, written out: presets download their config).
_KERAS_CV_RESNET_V2 = {
    "kcv_resnet18_v2": dict(stackwise_filters=[64, 128, 256, 512], stackwise_blocks=[2, 2, 2, 2],
                            stackwise_strides=[1, 2, 2, 2], block_type="basic_block"),
    "kcv_resnet50_v2": dict(stackwise_filters=[64, 128, 256, 512], stackwise_blocks=[3, 4, 6, 3],
                            stackwise_strides=[1, 2, 2, 2], block_type="block"),
}


def keras_cv_classifier(name: str, *, num_classes: int, input_shape: tuple[int, ...]) -> keras.Model:
    """A keras-cv ResNetV2 backbone (random weights, nothing downloaded) with pooling and a linear head.

    keras-cv runs in its Keras 2 mode next to tf_keras, so the backbone is a
    tf_keras model that :func:`tfimp.wrap` sees into (its convolutions are
    pruned like any other). Needs the ``[keras-cv]`` extra.
    """
    keras_cv = extras.require("keras_cv", f"model {name!r}")
    backbone = keras_cv.models.ResNetV2Backbone(include_rescaling=False, input_shape=tuple(input_shape),
                                                **_KERAS_CV_RESNET_V2[name])
    inputs = keras.Input(tuple(input_shape))
    features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(features), name=name)


for _name in _KERAS_CV_RESNET_V2:
    register(_name)(lambda num_classes, input_shape, _n=_name: keras_cv_classifier(
        _n, num_classes=num_classes, input_shape=input_shape))
