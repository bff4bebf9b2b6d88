"""Export a pruned Keras 3 model: ``.keras``, SavedModel, TFLite and ONNX, each checked in a fresh process.

:func:`export` strips the wrappers, writes each format, then loads every file
in one fresh Python process (:mod:`tfimp.keras3.export_check`: no tfimp
wrapper, no state of this process) and compares its predictions on a batch
with the Keras model's (tolerances in :mod:`tfimp.core.exports`). It checks
that the zeros survived where the format's weights can be read back
(``tflite_int8``: every pruned weight an int8 zero of the file), and
reports each file's size raw and gzip-compressed against a dense reference
of the same architecture (the pruned weights refilled). Given ``test_data``,
the same process runs every file on the test inputs through its own runtime,
and each file's test accuracy is recorded beside the float model's.

Which backend writes what, through Keras 3's own ``model.export``:

| format | TensorFlow | JAX | PyTorch | needs |
|---|---|---|---|---|
| ``keras`` | yes | yes | yes | nothing (the file loads on every backend) |
| ``savedmodel`` | yes | yes (jax2tf) | no | TensorFlow |
| ``tflite``, ``tflite_dynamic`` | yes | yes | no | TensorFlow (converted from the SavedModel, with TFLite's sparsity optimisation) |
| ``tflite_int8`` | yes | yes | no | TensorFlow (converted from the SavedModel, full-integer; ``representative_data``) |
| ``onnx`` | yes | yes | yes | tf2onnx (TensorFlow), jax2onnx (JAX), onnxscript (PyTorch); onnxruntime for the check |

A format this process cannot write is refused by :func:`check_formats`
before any work (the CLI calls it before training).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

import keras
import numpy as np

from tfimp.core import exports as _exports
from tfimp.core import storage as _storage
from tfimp.core.registry import Registry
from tfimp.core.exports import (ExportedFile, ExportFormat, ExportMismatchError, check_exportable, checked_error,  # noqa: F401
                                file_size, in_directory, parse_formats, refill_pruned, size_table)
from tfimp.keras3.export_check import keras_zeros, read_weight_zeros
from tfimp.keras3 import masks as _masks

#: The formats that come from Keras 3's ``tf_saved_model`` export, and the backends that write it.
_SAVED_MODEL_BACKENDS = ("tensorflow", "jax")
#: Keras 3's ONNX converter on each backend: (module, pip package).
_ONNX_CONVERTERS = {"tensorflow": ("tf2onnx", "tf2onnx"), "jax": ("jax2onnx", "jax2onnx"),
                    "torch": ("onnxscript", "onnxscript")}
#: How long the fresh process that loads the exports may take.
CHECK_TIMEOUT_S = 600


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def _saved_model_unavailable(fmt: str):
    def why(backend: str) -> Optional[str]:
        if backend not in _SAVED_MODEL_BACKENDS:
            return (f"{fmt} comes from Keras 3's tf_saved_model export, which runs on the TensorFlow and JAX "
                    f"backends, not on {backend!r}; export 'keras' or 'onnx' there")
        if not _installed("tensorflow"):
            return f"{fmt} needs TensorFlow: pip install tensorflow"
        return None

    return why


def _onnx_unavailable(backend: str) -> Optional[str]:
    module, package = _ONNX_CONVERTERS.get(backend, (None, None))
    if module is None:
        return f"Keras 3 exports ONNX from the TensorFlow, JAX and PyTorch backends, not from {backend!r}"
    if not _installed(module):
        hint = (" (it needs absl-py >= 2, which tfmot's pin excludes: install it where the tf_keras extra "
                "is not)") if backend == "jax" else ""
        return f"onnx on the {backend} backend needs {package}: pip install {package}{hint}"
    if not _installed("onnxruntime"):
        return "the onnx export is checked with onnxruntime: pip install onnxruntime"
    return None


def unavailable(fmt: str, backend: Optional[str] = None) -> Optional[str]:
    """Why this process cannot write and check ``fmt`` on ``backend`` (default: Keras'), or None when it can."""
    return FORMATS.get(fmt).unavailable(backend or keras.backend.backend())


def default_formats() -> list[str]:
    """:data:`DEFAULT_FORMATS` that this process can write (on torch, or without TensorFlow: ``keras`` alone)."""
    return [fmt for fmt in DEFAULT_FORMATS if unavailable(fmt) is None]


def resolve_formats(formats, key: str = "formats") -> tuple[list[str], list[str]]:
    """The formats to write and the default ones left out here (each with why).

    ``None`` or exactly the defaults (the CLI's ``export_formats`` as shipped)
    mean :func:`default_formats`: a PyTorch user's default run must not be
    refused for SavedModel, which Keras 3 writes only from TensorFlow and
    JAX. Any other choice is checked as given (:func:`check_formats`).
    """
    given = None if formats is None else parse_formats(formats, FORMATS, key)
    if given is None or tuple(given) == DEFAULT_FORMATS:
        why = {fmt: unavailable(fmt) for fmt in DEFAULT_FORMATS}
        return [fmt for fmt in DEFAULT_FORMATS if why[fmt] is None], [
            f"{fmt} ({why[fmt]})" for fmt in DEFAULT_FORMATS if why[fmt] is not None]
    return check_formats(given, key), []


def check_formats(formats, key: str = "formats") -> list[str]:
    """``formats`` (a sequence or a comma-separated string) as a list, each one this process can write.

    Raises:
      ValueError: an unknown format, or one this backend or environment cannot write (each named, with why).
    """
    names = parse_formats(formats, FORMATS, key)
    problems = [f"{fmt}: {why}" for fmt in names for why in [unavailable(fmt)] if why]
    if problems:
        raise ValueError(f"{key} cannot be written here ({keras.backend.backend()} backend): " + "; ".join(problems))
    return names


def _tflite_bytes(saved_model: str, dynamic_range: bool, representative_data=None) -> bytes:
    """The TFLite model converted from ``saved_model``: float with TFLite's sparsity optimisation, dynamic-range,
    or full-integer when given ``representative_data`` (:func:`tfimp.core.exports.full_integer`)."""
    import tensorflow as tf  # noqa: PLC0415  (only these formats need it)
    from absl import logging  # noqa: PLC0415  (TensorFlow's logger)

    # Loading a jax2tf SavedModel logs "ops with unsaved custom gradients" per function: an export needs none.
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if representative_data is not None:
            return _exports.full_integer(tf.lite, converter, representative_data)
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        if dynamic_range:
            converter.optimizations.append(tf.lite.Optimize.DEFAULT)
        return converter.convert()
    finally:
        logging.set_verbosity(level)


def _saved_model(model: keras.Model, path: str) -> None:
    # On JAX, a model with seeded layers (Dropout) is exported as stateful unless told otherwise, carrying its
    # uint32 seed state, which TFLite cannot convert; the served inference pass updates no state.
    options = {"is_static": True} if keras.backend.backend() == "jax" else {}
    model.export(path, format="tf_saved_model", verbose=False, **options)


def _write_keras(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
    path = os.path.join(directory, f"{stem}.keras")
    model.save(path)
    return path


def _write_savedmodel(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
    path = os.path.join(directory, f"{stem}_savedmodel")
    shutil.rmtree(path, ignore_errors=True)
    _saved_model(model, path)
    return path


def _write_onnx(model: keras.Model, directory: str, stem: str, scratch: str) -> str:
    path = os.path.join(directory, f"{stem}.onnx")
    model.export(path, format="onnx", verbose=False)
    return path


def _tflite_writer(suffix: str, dynamic_range: bool):
    def write(model: keras.Model, directory: str, stem: str, scratch: str, representative_data=None) -> str:
        saved = os.path.join(scratch, f"{stem}_for_tflite")  # one SavedModel for every TFLite variant
        if not os.path.isdir(saved):
            _saved_model(model, saved)
        path = os.path.join(directory, f"{stem}{suffix}.tflite")
        with open(path, "wb") as handle:
            handle.write(_tflite_bytes(saved, dynamic_range=dynamic_range, representative_data=representative_data))
        return path

    return write


#: The formats :func:`export` writes, by name (registration order is the documented order); which backend
#: can write which is each entry's ``unavailable``. A new format is one entry
#: (:class:`tfimp.core.exports.ExportFormat`) and its writer.
FORMATS: Registry[ExportFormat] = Registry("Keras 3 export format")
FORMATS.register("keras", ExportFormat(_write_keras, tolerance=1e-5, default=True))
FORMATS.register("savedmodel", ExportFormat(_write_savedmodel, tolerance=1e-5,
                                            unavailable=_saved_model_unavailable("savedmodel"), default=True))
FORMATS.register("tflite", ExportFormat(_tflite_writer("", False), tolerance=1e-4,
                                        unavailable=_saved_model_unavailable("tflite"), default=True))
FORMATS.register("tflite_dynamic", ExportFormat(_tflite_writer("_dynamic_range", True), tolerance=None,
                                                unavailable=_saved_model_unavailable("tflite_dynamic")))
FORMATS.register("tflite_int8", ExportFormat(_tflite_writer("_int8", False), tolerance=None, representative=True,
                                             range_fraction=_exports.FULL_INTEGER_FRACTION,
                                             unavailable=_saved_model_unavailable("tflite_int8")))
FORMATS.register("onnx", ExportFormat(_write_onnx, tolerance=1e-4, unavailable=_onnx_unavailable))
#: What :func:`export` and the CLI write unless told otherwise, less those this backend cannot write.
DEFAULT_FORMATS = tuple(name for name in FORMATS if FORMATS.get(name).default)


def dense_reference(stripped: keras.Model, seed: int = 0) -> keras.Model:
    """The same architecture with every pruned weight refilled: what an unpruned model of this shape stores."""
    rng = np.random.default_rng(seed)
    dense = keras.models.clone_model(stripped)
    dense.set_weights(stripped.get_weights())
    for _, variable in _masks.covered_weights(dense):
        variable.assign(refill_pruned(keras.ops.convert_to_numpy(variable.value), rng))
    return dense


def _check_in_fresh_process(paths: dict[str, str], x: np.ndarray, scratch: str,
                            x_test: Optional[np.ndarray] = None) -> dict:
    """Loads every export in a new Python process (:mod:`tfimp.keras3.export_check`); returns what it measured."""
    inputs = os.path.join(scratch, "check_inputs.npy")
    np.save(inputs, x)
    test = []
    if x_test is not None:
        test = [f"--test={os.path.join(scratch, 'test_inputs.npy')}"]
        np.save(test[0].partition("=")[2], x_test)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["KERAS_BACKEND"] = keras.backend.backend()
    command = [sys.executable, "-m", "tfimp.keras3.export_check", *test, inputs, scratch,
               *[f"{fmt}={path}" for fmt, path in paths.items()]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    if done.returncode != 0:
        raise ExportMismatchError(f"the exports did not load in a fresh process ({' '.join(command[:3])} ...):\n"
                                  f"{done.stderr[-3000:]}")
    with open(os.path.join(scratch, "check_results.json"), encoding="utf-8") as handle:
        return json.load(handle)


def export(model: keras.Model, directory: str, *, formats: Optional[Sequence[str]] = None,
           check_inputs: Optional[np.ndarray] = None, compare_dense: bool = True,
           representative_data: Optional[np.ndarray] = None,
           test_data: Optional[tuple[np.ndarray, np.ndarray]] = None) -> list[ExportedFile]:
    """Strips ``model`` and exports it in ``formats`` to ``directory``, each file checked in a fresh process.

    Args:
      model: a Keras 3 model wrapped by :func:`tfimp.wrap` and pruned (sparsity > 0), built.
      directory: where the files go (created; any file system, see :mod:`tfimp.core.storage`).
      formats: any of :data:`FORMATS` this process can write (see the module docstring); default
        :func:`default_formats` (:data:`DEFAULT_FORMATS` less what this backend cannot write).
      check_inputs: a batch to compare predictions on (default: 8 standard normal inputs of the model's shape).
      compare_dense: also export a dense reference for the size columns.
      representative_data: model inputs from the training data (an array);
        ``tflite_int8`` calibrates its activation ranges on the first 100.
      test_data: ``(x, y)`` test arrays (class labels): each file's accuracy
        on them, through its own runtime in the fresh process, and the float
        model's go into its :class:`tfimp.core.exports.ExportedFile`.

    Returns:
      One :class:`tfimp.core.exports.ExportedFile` per format.

    Raises:
      ValueError: an unknown or unwritable format; an unbuilt, unwrapped or unpruned model; ``tflite_int8``
        without ``representative_data``.
      ExportMismatchError: an export's predictions or zeros differ from the Keras model's.
    """
    formats, _ = resolve_formats(formats)
    _masks.check_keras3_model(model)
    sparsity = check_exportable(model, formats, FORMATS, wrapped=bool(_masks.wrappers(model)),
                                sparsity=lambda: _masks.sparsity(model), representative_data=representative_data)
    with _storage.local_dir(directory) as local:  # SavedModel and zip writers want local paths
        files = _export_checked(model, local, formats, check_inputs, compare_dense, sparsity, representative_data,
                                test_data)
        return in_directory(files, local, directory)


def _export_checked(model: keras.Model, directory: str, formats: Sequence[str], check_inputs, compare_dense: bool,
                    sparsity: float, representative_data, test_data) -> list[ExportedFile]:
    stripped = _masks.strip(model)
    x = check_inputs if check_inputs is not None else np.random.default_rng(0).normal(
        size=(8, *stripped.input_shape[1:])).astype("float32")
    x = np.asarray(x, dtype="float32")
    expected = keras.ops.convert_to_numpy(stripped(x, training=False))
    zeros = keras_zeros(stripped)
    kernels = [(name, keras.ops.convert_to_numpy(variable.value)) for name, variable in _masks.covered_weights(stripped)]
    x_test = None if test_data is None else np.asarray(test_data[0], dtype="float32")
    float_accuracy = None if x_test is None else _exports.accuracy(_exports.in_batches(
        lambda batch: keras.ops.convert_to_numpy(stripped(batch, training=False)), x_test), test_data[1])
    dense = dense_reference(stripped) if compare_dense else None
    with tempfile.TemporaryDirectory(prefix="tfimp_export_") as scratch:
        paths = {fmt: _exports.write(FORMATS.get(fmt), stripped, directory, "model", scratch, representative_data)
                 for fmt in formats}
        dense_sizes = {}
        if dense is not None:
            dense_dir = os.path.join(directory, "dense_reference")
            os.makedirs(dense_dir, exist_ok=True)
            dense_sizes = {fmt: file_size(_exports.write(FORMATS.get(fmt), dense, dense_dir, "dense", scratch,
                                                         representative_data)) for fmt in formats}
        checked = _check_in_fresh_process(paths, x, scratch, x_test)
        results = []
        for fmt in formats:
            found = checked[fmt]
            error, tolerance = checked_error(fmt, FORMATS.get(fmt), np.load(found["outputs"]), expected)
            if found["zeros"] is not None and found["zeros"] != zeros:
                raise ExportMismatchError(f"{fmt} export holds {found['zeros']} zeros, the model {zeros}")
            measured = found["sparsity"]
            if measured is not None and abs(measured - sparsity) > 1e-9:
                raise ExportMismatchError(f"{fmt} export has sparsity {measured}, the model {sparsity}")
            if measured is None and found["zeros"] is not None:
                measured = sparsity  # its zeros are the model's, counted one by one
            if found["weight_zeros"] is not None:  # the int8 file's zeros, read back tensor by tensor
                kept, total = _exports.check_zeros_kept(fmt, kernels, read_weight_zeros(found["weight_zeros"]))
                measured = kept / total
            file_accuracy = None if x_test is None else _exports.accuracy(np.load(found["test_outputs"]),
                                                                          test_data[1])
            raw, packed = file_size(paths[fmt])
            dense_raw, dense_packed = dense_sizes.get(fmt, (0, 0))
            results.append(ExportedFile(fmt, paths[fmt], raw, packed, dense_raw, dense_packed, error, tolerance,
                                        measured, file_accuracy, float_accuracy, 0 if x_test is None else len(x_test)))
    return results
