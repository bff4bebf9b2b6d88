"""The Keras 3 front end's models by name: ``tfimp.models`` in a Keras 3 process.

The same built-in architectures as the tf_keras front end
(:mod:`tfimp.architectures`: CIFAR ResNets, ResNet-18, WRN-28-10, VGG-16-BN,
ResNet-50, small_cnn), with the same layer names, built with Keras 3 on
whichever backend ``KERAS_BACKEND`` selects. keras-cv's backbones are
tf_keras-only here; keras-hub is Keras 3's model library.
"""

from __future__ import annotations

import keras

from tfimp import architectures
from tfimp.architectures import TORCH_BN_EPSILON, TORCH_BN_MOMENTUM  # noqa: F401  (public names)

_MODELS = architectures.ModelRegistry(keras)

#: ``@register("name")``: adds a builder ``fn(num_classes, input_shape) -> Model``.
register = _MODELS.register
#: Names of the registered models, sorted.
known = _MODELS.known
build = _MODELS.build
check_fits = _MODELS.check_fits
#: The input shape each built-in model is designed for (channels included).
DESIGNED_FOR = _MODELS.designed_for
#: A ``Conv2D`` padded as PyTorch pads it (see :func:`tfimp.architectures.torch_conv`).
torch_conv = architectures.bind(architectures.torch_conv, keras)
