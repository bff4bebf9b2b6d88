"""The Keras 3 front end's models by name: ``tfimp.models`` in a Keras 3 process.

The same built-in architectures as the tf_keras front end
(:mod:`tfimp.core.architectures`: CIFAR ResNets, ResNet-18, WRN-28-10, VGG-16-BN,
ResNet-50, small_cnn), with the same layer names, built with Keras 3 on
whichever backend ``KERAS_BACKEND`` selects. keras-cv's backbones are
tf_keras-only here; keras-hub is Keras 3's model library.
"""

from __future__ import annotations

import keras

from tfimp.core import architectures
from tfimp.core.architectures import TORCH_BN_EPSILON, TORCH_BN_MOMENTUM  # noqa: F401  (public names)

#: ``register("name")`` adds a builder ``fn(num_classes, input_shape) -> Model``; ``known()`` lists the names;
#: ``build(name, num_classes=, input_shape=)``; ``check_fits(name, input_shape)``; ``DESIGNED_FOR``: each
#: built-in model's input shape (see :class:`tfimp.core.architectures.ModelRegistry`).
register, known, build, check_fits, DESIGNED_FOR = architectures.ModelRegistry(keras).api()
#: A ``Conv2D`` padded as PyTorch pads it (see :func:`tfimp.core.architectures.torch_conv`).
torch_conv = architectures.bind(architectures.torch_conv, keras)
