"""Model builders: published parameter counts, and each one wraps and prunes."""

import math

import numpy as np

import pytest

import tfimp
from tfimp import keras, models

# (name, classes, input shape, published parameters, relative tolerance)
PUBLISHED = [
    ("resnet20", 10, (32, 32, 3), 0.27e6, 0.03),
    ("resnet56", 10, (32, 32, 3), 0.85e6, 0.03),
    ("resnet110", 10, (32, 32, 3), 1.7e6, 0.03),
    ("resnet18", 10, (32, 32, 3), 11.2e6, 0.01),
    ("wrn28_10", 100, (32, 32, 3), 36.5e6, 0.01),
    ("vgg16_bn", 10, (32, 32, 3), 14.7e6, 0.01),
    ("resnet50", 1000, (224, 224, 3), 25.6e6, 0.01),
    ("small_cnn", 10, (28, 28, 1), 0.12e6, 0.05),
    ("lenet_300_100", 10, (28, 28, 1), 266_610, 0),  # 784*300+300 + 300*100+100 + 100*10+10
]


@pytest.mark.parametrize("name, classes, shape, published, tolerance", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_parameter_counts_match_published_figures(name, classes, shape, published, tolerance):
    model = models.build(name, num_classes=classes, input_shape=shape)
    assert model.count_params() == pytest.approx(published, rel=tolerance)
    assert model.output_shape == (None, classes)


@pytest.mark.parametrize("name, classes, shape", [(p[0], p[1], p[2]) for p in PUBLISHED], ids=[p[0] for p in PUBLISHED])
def test_every_model_wraps_and_prunes(name, classes, shape):
    wrapped = tfimp.wrap(models.build(name, num_classes=classes, input_shape=shape))
    layers = tfimp.prune(wrapped, 0.9)
    assert len(layers) >= 3
    total = sum(k.size for k in tfimp.wrapping.prunable_kernels(wrapped))
    assert tfimp.sparsity(wrapped) == math.floor(0.9 * total + 0.5) / total


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet57'; known: \[.*'resnet56'.*'wrn28_10'\]"):
        models.build("resnet57", num_classes=10, input_shape=(32, 32, 3))


def test_bad_depths_are_errors():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.cifar_resnet(21)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        models.wide_resnet(27)


@pytest.mark.parametrize("name, classes, shape", [("resnet20", 10, (32, 32, 3)), ("wrn28_10", 100, (32, 32, 3)),
                                                  ("vgg16_bn", 10, (32, 32, 3)), ("resnet50", 1000, (224, 224, 3))])
def test_paper_models_use_pytorch_batch_norm_settings(name, classes, shape):
    model = models.build(name, num_classes=classes, input_shape=shape)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)
    if name != "resnet50":  # keras.applications fixes its epsilon at 1.001e-5
        assert all(layer.epsilon == 1e-5 for layer in norms)


def _torch_conv2d(image, kernel, stride, pad):
    """PyTorch's Conv2d (cross-correlation, zero padding ``pad`` on every side), one image, no bias, in numpy."""
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    size = kernel.shape[0]
    rows = (padded.shape[0] - size) // stride + 1
    cols = (padded.shape[1] - size) // stride + 1
    out = np.zeros((rows, cols, kernel.shape[-1]))
    for i in range(rows):
        for j in range(cols):
            patch = padded[i * stride:i * stride + size, j * stride:j * stride + size, :]
            out[i, j] = np.tensordot(patch, kernel, axes=([0, 1, 2], [0, 1, 2]))
    return out


@pytest.mark.parametrize("size, kernel_size, stride", [(8, 3, 2), (7, 3, 2), (8, 1, 2), (8, 3, 1), (9, 7, 2)])
def test_torch_conv_pads_as_pytorch_does(size, kernel_size, stride):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(size, size, 2)).astype(np.float32)
    inputs = keras.Input((size, size, 2))
    conv = models.torch_conv(3, kernel_size, stride, use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    kernel = model.get_layer("conv").kernel.numpy()
    expected = _torch_conv2d(image, kernel, stride, kernel_size // 2)
    np.testing.assert_allclose(model(image[None]).numpy()[0], expected, rtol=1e-5, atol=1e-5)


def test_paper_models_pad_strided_convolutions_symmetrically():
    model = models.build("resnet20", num_classes=10, input_shape=(32, 32, 3))
    strided = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2)
               and layer.kernel_size == (3, 3)]
    assert len(strided) == 2
    for layer in strided:  # fed by an explicit symmetric pad, not Keras' asymmetric "same"
        assert layer.padding == "valid"
        assert isinstance(layer._inbound_nodes[0].inbound_layers, keras.layers.ZeroPadding2D)
