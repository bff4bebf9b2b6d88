"""Export a pruned model: ``.keras``, SavedModel and TFLite, checked and measured.

:func:`export` strips the wrappers, writes each format, reloads it, checks
that its predictions match the Keras model on a batch (stated tolerances
below) and that the sparsity survived, and reports each file's size raw and
gzip-compressed against a dense reference of the same architecture.

Tolerances (max absolute difference of the outputs): ``keras`` and
``savedmodel`` 1e-5; ``tflite`` (float, with TensorFlow Lite's sparsity
optimisation) 1e-4; ``tflite_dynamic`` (dynamic-range int8 weights) 5% of the
output range.

The dense reference is the same architecture with its pruned weights
refilled with Gaussian values of each kernel's surviving-weight spread:
what an unpruned model of this shape stores.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import warnings
from typing import Optional, Sequence

import numpy as np

from tfimp import pruning, storage, wrapping
from tfimp._backend import keras, tf

FORMATS = ("keras", "savedmodel", "tflite", "tflite_dynamic")
_TOLERANCE = {"keras": 1e-5, "savedmodel": 1e-5, "tflite": 1e-4}
_DYNAMIC_RANGE_FRACTION = 0.05


class ExportMismatchError(AssertionError):
    """An exported model's predictions or sparsity differ from the Keras model's."""


@dataclasses.dataclass
class ExportedFile:
    format: str
    path: str
    bytes: int
    gzip_bytes: int
    dense_bytes: int
    dense_gzip_bytes: int
    max_abs_error: float
    tolerance: float
    sparsity: Optional[float]  # None where the format's weights cannot be read back


def _size(path: str) -> tuple[int, int]:
    """(raw, gzip-compressed) bytes of a file or of a directory's files together."""
    files = [path] if os.path.isfile(path) else [os.path.join(root, name) for root, _, names in os.walk(path)
                                                 for name in sorted(names)]
    raw = sum(os.path.getsize(f) for f in files)
    compressed = 0
    for name in files:
        with open(name, "rb") as handle:
            compressed += len(gzip.compress(handle.read(), compresslevel=9))
    return raw, compressed


def _tflite_bytes(model: keras.Model, dynamic_range: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if dynamic_range:
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
    return converter.convert()


def _tflite_predict(path: str, x: np.ndarray) -> np.ndarray:
    # The default XNNPack delegate cannot prepare sparse dynamic-range kernels; the built-in ops can.
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: it is the one TF ships
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(
            model_path=path,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _write(model: keras.Model, fmt: str, directory: str, stem: str) -> str:
    if fmt == "keras":
        path = os.path.join(directory, f"{stem}.keras")
        model.save(path)
    elif fmt == "savedmodel":
        path = os.path.join(directory, f"{stem}_savedmodel")
        shutil.rmtree(path, ignore_errors=True)
        # An uncompiled model makes tf_keras log "Compiled the loaded model, but the compiled metrics have yet
        # to be built" on a SavedModel save: noise about metrics an export does not have.
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            model.save(path, save_format="tf", include_optimizer=False)
        finally:
            logger.setLevel(level)
    else:
        path = os.path.join(directory, f"{stem}.tflite" if fmt == "tflite" else f"{stem}_dynamic_range.tflite")
        with open(path, "wb") as handle:
            handle.write(_tflite_bytes(model, dynamic_range=fmt == "tflite_dynamic"))
    return path


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    # A direct call, not `predict`: one checked batch, and no retracing warnings from many small models.
    return np.asarray(model(x, training=False))


def dense_reference(stripped: keras.Model, seed: int = 0) -> keras.Model:
    """The same architecture with every pruned kernel weight refilled (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dense = keras.models.clone_model(stripped)
    dense.set_weights(stripped.get_weights())
    for weight in wrapping.covered_weights(dense):
        variable = weight.variable
        values = variable.numpy()
        alive = values[values != 0]
        spread = float(alive.std()) if alive.size > 1 else 0.01
        values[values == 0] = rng.normal(0.0, spread or 0.01, size=int(np.sum(values == 0)))
        variable.assign(values)
    return dense


def export(model: keras.Model, directory: str, *, formats: Sequence[str] = ("keras", "savedmodel", "tflite"),
           check_inputs: Optional[np.ndarray] = None, compare_dense: bool = True) -> list[ExportedFile]:
    """Strips ``model`` and exports it in ``formats`` to ``directory`` (any file system: see :mod:`tfimp.storage`), checked.

    Args:
      model: a model wrapped by :func:`tfimp.wrap` and pruned (sparsity > 0), built.
      directory: where the files go (created).
      formats: any of ``keras``, ``savedmodel``, ``tflite``, ``tflite_dynamic``.
      check_inputs: a batch to compare predictions on (default: 8 standard
        normal inputs of the model's input shape).
      compare_dense: also export a dense reference for the size columns.

    Returns:
      One :class:`ExportedFile` per format.

    Raises:
      ValueError: unknown format, unbuilt, unwrapped or unpruned model.
      ExportMismatchError: an export's predictions or sparsity do not match.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown or list(formats)}; known: {list(FORMATS)}")
    wrapping.check_tf_keras_model(model)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on a batch or build it before exporting")
    if not wrapping.wrappers(model):
        raise ValueError(f"model {model.name!r} is not a pruned model: wrap it with tfimp.wrap and prune it first")
    sparsity = pruning.sparsity(model)
    if sparsity == 0.0:
        raise ValueError(f"model {model.name!r} is not pruned (sparsity 0); call tfimp.prune before exporting")

    with storage.local_dir(directory) as local:  # SavedModel, zip and h5 writers want local paths
        files = _export_checked(model, local, formats, check_inputs, compare_dense, sparsity)
    return [dataclasses.replace(f, path=os.path.join(directory, os.path.relpath(f.path, local))) for f in files]


def _export_checked(model: keras.Model, directory: str, formats: Sequence[str], check_inputs, compare_dense: bool,
                    sparsity: float) -> list[ExportedFile]:
    stripped = wrapping.strip(model)
    x = check_inputs if check_inputs is not None else np.random.default_rng(0).normal(
        size=(8, *stripped.input_shape[1:])).astype("float32")
    expected = _predict(stripped, x)
    dense = dense_reference(stripped) if compare_dense else None
    results = []
    for fmt in formats:
        path = _write(stripped, fmt, directory, "model")
        raw, packed = _size(path)
        dense_raw = dense_packed = 0
        if dense is not None:
            dense_dir = os.path.join(directory, "dense_reference")
            os.makedirs(dense_dir, exist_ok=True)
            dense_raw, dense_packed = _size(_write(dense, fmt, dense_dir, "dense"))
        if fmt.startswith("tflite"):
            got, measured_sparsity = _tflite_predict(path, x), None
        else:
            loaded = keras.models.load_model(path, compile=False)  # predictions only: no compile warnings
            got, measured_sparsity = _predict(loaded, x), pruning.sparsity(loaded)
            if abs(measured_sparsity - sparsity) > 1e-9:
                raise ExportMismatchError(f"{fmt} export has sparsity {measured_sparsity}, the model {sparsity}")
        error = float(np.max(np.abs(got - expected)))
        tolerance = _TOLERANCE.get(fmt, _DYNAMIC_RANGE_FRACTION * float(np.ptp(expected) or 1.0))
        if error > tolerance:
            raise ExportMismatchError(f"{fmt} export's predictions differ by {error:.3g} > tolerance {tolerance:.3g}")
        results.append(ExportedFile(fmt, path, raw, packed, dense_raw, dense_packed, error, tolerance,
                                    measured_sparsity))
    return results


def size_table(files: Sequence[ExportedFile]) -> str:
    """The exports' sizes, raw and gzip, against the dense reference's."""
    lines = [f"{'format':15s} {'bytes':>12s} {'gzip':>12s} {'dense bytes':>12s} {'dense gzip':>12s} "
             f"{'gzip gain':>9s} {'max |err|':>10s}"]
    for f in files:
        gain = f"{f.dense_gzip_bytes / f.gzip_bytes:.2f}x" if f.dense_gzip_bytes else "-"
        lines.append(f"{f.format:15s} {f.bytes:>12,d} {f.gzip_bytes:>12,d} {f.dense_bytes:>12,d} "
                     f"{f.dense_gzip_bytes:>12,d} {gain:>9s} {f.max_abs_error:>10.2g}")
    return "\n".join(lines)
