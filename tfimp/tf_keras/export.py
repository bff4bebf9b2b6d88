"""Export a pruned model: ``.keras``, SavedModel and TFLite (float, dynamic-range and full-integer int8), checked and measured.

:func:`export` strips the wrappers, writes each format, reloads it, checks
that its predictions match the Keras model on a batch (stated tolerances
below) and that the sparsity survived (``tflite_int8``: every pruned weight
an int8 zero of the file), and reports each file's size raw and
gzip-compressed against a dense reference of the same architecture. Given
``test_data``, it also runs every file on it through the file's own runtime
(Keras, TensorFlow's SavedModel loader, the TFLite interpreter) and records
its test accuracy beside the float model's.

Tolerances: see :mod:`tfimp.core.exports` (``keras`` and ``savedmodel``
1e-5, ``tflite`` 1e-4, ``tflite_dynamic`` 5% of the output range,
``tflite_int8`` 25%).

The dense reference is the same architecture with its pruned weights
refilled with Gaussian values of each kernel's surviving-weight spread:
what an unpruned model of this shape stores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional, Sequence

import numpy as np

from tfimp.tf_keras import pruning, wrapping
from tfimp.core import storage
from tfimp.tf_keras._backend import keras, tf
from tfimp.core.registry import Registry
from tfimp.core import exports as _exports
from tfimp.core.exports import (ExportedFile, ExportFormat, ExportMismatchError, check_exportable, checked_error,  # noqa: F401
                                file_size, in_directory, parse_formats, refill_pruned, run_tflite, size_table)


def _tflite_bytes(model: keras.Model, dynamic_range: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if dynamic_range:
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
    return converter.convert()


def _write_keras(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
    path = os.path.join(directory, f"{stem}.keras")
    model.save(path)
    return path


def _write_savedmodel(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
    path = os.path.join(directory, f"{stem}_savedmodel")
    shutil.rmtree(path, ignore_errors=True)
    # An uncompiled model makes tf_keras log "Compiled the loaded model, but the compiled metrics have yet to be
    # built" on a SavedModel save: noise about metrics an export does not have.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        model.save(path, save_format="tf", include_optimizer=False)
    finally:
        logger.setLevel(level)
    return path


def _tflite_writer(suffix: str, dynamic_range: bool):
    def write(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
        path = os.path.join(directory, f"{stem}{suffix}.tflite")
        with open(path, "wb") as handle:
            handle.write(_tflite_bytes(model, dynamic_range=dynamic_range))
        return path

    return write


def _write_tflite_int8(model: keras.Model, directory: str, stem: str, scratch: str, *, representative_data) -> str:
    path = os.path.join(directory, f"{stem}_int8.tflite")
    with open(path, "wb") as handle:
        handle.write(_exports.full_integer(tf.lite, tf.lite.TFLiteConverter.from_keras_model(model),
                                           representative_data))
    return path


#: The formats :func:`export` writes, by name (registration order is the documented order). A new format is
#: one entry: its writer, its tolerance (:class:`tfimp.core.exports.ExportFormat`).
FORMATS: Registry[ExportFormat] = Registry("tf_keras export format")
FORMATS.register("keras", ExportFormat(_write_keras, tolerance=1e-5, default=True))
FORMATS.register("savedmodel", ExportFormat(_write_savedmodel, tolerance=1e-5, default=True))
FORMATS.register("tflite", ExportFormat(_tflite_writer("", False), tolerance=1e-4, default=True))
FORMATS.register("tflite_dynamic", ExportFormat(_tflite_writer("_dynamic_range", True), tolerance=None))
FORMATS.register("tflite_int8", ExportFormat(_write_tflite_int8, tolerance=None, representative=True,
                                             range_fraction=_exports.FULL_INTEGER_FRACTION))
#: What :func:`export` and the CLI write unless told otherwise.
DEFAULT_FORMATS = tuple(name for name in FORMATS if FORMATS.get(name).default)


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    # A direct call, not `predict`: one checked batch, and no retracing warnings from many small models.
    return np.asarray(model(x, training=False))


def dense_reference(stripped: keras.Model, seed: int = 0) -> keras.Model:
    """The same architecture with every pruned kernel weight refilled (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dense = keras.models.clone_model(stripped)
    dense.set_weights(stripped.get_weights())
    for weight in wrapping.covered_weights(dense):
        weight.variable.assign(refill_pruned(weight.variable.numpy(), rng))
    return dense


def export(model: keras.Model, directory: str, *, formats: Sequence[str] = DEFAULT_FORMATS,
           check_inputs: Optional[np.ndarray] = None, compare_dense: bool = True,
           representative_data: Optional[np.ndarray] = None,
           test_data: Optional[tuple[np.ndarray, np.ndarray]] = None) -> list[ExportedFile]:
    """Strips ``model`` and exports it in ``formats`` to ``directory`` (any file system: see :mod:`tfimp.storage`), checked.

    Args:
      model: a model wrapped by :func:`tfimp.wrap` and pruned (sparsity > 0), built.
      directory: where the files go (created).
      formats: any of :data:`FORMATS` (``keras``, ``savedmodel``, ``tflite``, ``tflite_dynamic``, ``tflite_int8``).
      check_inputs: a batch to compare predictions on (default: 8 standard
        normal inputs of the model's input shape).
      compare_dense: also export a dense reference for the size columns.
      representative_data: model inputs from the training data (an array);
        ``tflite_int8`` calibrates its activation ranges on the first 100.
      test_data: ``(x, y)`` test arrays (class labels): each file's accuracy
        on them, through its own runtime, and the float model's go into its
        :class:`ExportedFile`.

    Returns:
      One :class:`ExportedFile` per format.

    Raises:
      ValueError: unknown format, unbuilt, unwrapped or unpruned model; ``tflite_int8`` without ``representative_data``.
      ExportMismatchError: an export's predictions or sparsity do not match.
    """
    formats = parse_formats(formats, FORMATS)
    wrapping.check_tf_keras_model(model)
    sparsity = check_exportable(model, formats, FORMATS, wrapped=bool(wrapping.wrappers(model)),
                                sparsity=lambda: pruning.sparsity(model), representative_data=representative_data)
    with storage.local_dir(directory) as local:  # SavedModel, zip and h5 writers want local paths
        files = _export_checked(model, local, formats, check_inputs, compare_dense, sparsity, representative_data,
                                test_data)
        return in_directory(files, local, directory)


def _saved_model_serving(path: str):
    """The SavedModel's ``serving_default`` signature, loaded by TensorFlow alone: ``x -> outputs``."""
    serving = tf.saved_model.load(path).signatures["serving_default"]
    name = next(iter(serving.structured_input_signature[1]))
    return lambda x: next(iter(serving(**{name: tf.constant(x)}).values())).numpy()


def _test_outputs(fmt: str, path: str, loaded: Optional[keras.Model], x: np.ndarray) -> np.ndarray:
    """The file's outputs on the test inputs ``x``, through its own runtime."""
    if fmt.startswith("tflite"):
        predict = _exports.tflite_runner(tf.lite, path)
    else:
        predict = _saved_model_serving(path) if fmt == "savedmodel" else (lambda batch: _predict(loaded, batch))
    return _exports.in_batches(predict, x)


def _export_checked(model: keras.Model, directory: str, formats: Sequence[str], check_inputs, compare_dense: bool,
                    sparsity: float, representative_data, test_data) -> list[ExportedFile]:
    stripped = wrapping.strip(model)
    x = check_inputs if check_inputs is not None else np.random.default_rng(0).normal(
        size=(8, *stripped.input_shape[1:])).astype("float32")
    expected = _predict(stripped, x)
    dense = dense_reference(stripped) if compare_dense else None
    kernels = [(weight.name, weight.variable.numpy()) for weight in wrapping.covered_weights(stripped)]
    x_test = None if test_data is None else np.asarray(test_data[0], dtype="float32")
    float_accuracy = None if x_test is None else _exports.accuracy(
        _exports.in_batches(lambda batch: _predict(stripped, batch), x_test), test_data[1])
    results = []
    with tempfile.TemporaryDirectory(prefix="tfimp_export_") as scratch:
        for fmt in formats:
            spec = FORMATS.get(fmt)
            path = _exports.write(spec, stripped, directory, "model", scratch, representative_data)
            raw, packed = file_size(path)
            dense_raw = dense_packed = 0
            if dense is not None:
                dense_dir = os.path.join(directory, "dense_reference")
                os.makedirs(dense_dir, exist_ok=True)
                dense_raw, dense_packed = file_size(_exports.write(spec, dense, dense_dir, "dense", scratch,
                                                                   representative_data))
            loaded = None
            if fmt.startswith("tflite"):
                got, measured_sparsity = run_tflite(tf.lite, path, x), None
                if fmt == "tflite_int8":
                    zeros, total = _exports.check_zeros_kept(fmt, kernels, _exports.tflite_weight_zeros(tf.lite, path))
                    measured_sparsity = zeros / total
            else:
                loaded = keras.models.load_model(path, compile=False)  # predictions only: no compile warnings
                got, measured_sparsity = _predict(loaded, x), pruning.sparsity(loaded)
                if abs(measured_sparsity - sparsity) > 1e-9:
                    raise ExportMismatchError(f"{fmt} export has sparsity {measured_sparsity}, the model {sparsity}")
            error, tolerance = checked_error(fmt, spec, got, expected)
            file_accuracy = None if x_test is None else _exports.accuracy(_test_outputs(fmt, path, loaded, x_test),
                                                                          test_data[1])
            results.append(ExportedFile(fmt, path, raw, packed, dense_raw, dense_packed, error, tolerance,
                                        measured_sparsity, file_accuracy, float_accuracy,
                                        0 if x_test is None else len(x_test)))
    return results
