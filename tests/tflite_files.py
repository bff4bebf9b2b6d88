"""TFLite files read back with TensorFlow's interpreter alone, for both suites (no tfimp, no Keras)."""

import warnings

import numpy as np


def interpreter(path):
    """TensorFlow Lite's interpreter of ``path`` with the built-in kernels, as tfimp's check runs them (XNNPack's
    int8 kernels round differently, enough to flip a near-tie)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=path, experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))


def int8_weights(path):
    """The int8 weight tensors of a TFLite file, by shape: those quantised per output channel (activations are
    quantised per tensor), each checked to be symmetric (a zero weight is the integer 0)."""
    lite = interpreter(path)
    lite.allocate_tensors()
    found = {}
    for detail in lite.get_tensor_details():
        points = detail["quantization_parameters"]["zero_points"]
        if detail["dtype"] == np.int8 and len(detail["shape"]) > 1 and len(points) == detail["shape"][0] > 1:
            assert not points.any()
            found.setdefault(tuple(detail["shape"]), []).append(lite.get_tensor(detail["index"]))
    return found


def outputs(path, x):
    """The file's outputs on the whole batch ``x``."""
    lite = interpreter(path)
    source = lite.get_input_details()[0]["index"]
    lite.resize_tensor_input(source, x.shape)
    lite.allocate_tensors()
    lite.set_tensor(source, x)
    lite.invoke()
    return lite.get_tensor(lite.get_output_details()[0]["index"])
