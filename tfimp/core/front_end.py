"""Which front end serves a call: tf_keras (through tfmot) or Keras 3 (tfimp's own wrapper), decided without importing either.

Model functions (``tfimp.wrap``, ``prune``, ``strip``, ``sparsity``,
``layer_sparsity``) look at the model they are given: a tf_keras model goes
to the tf_keras front end, a Keras 3 model to ``tfimp.keras3``.

Names that are used before any model exists (``tfimp.callbacks``,
``tfimp.optimizers``, ``tfimp.lr``, ``tfimp.coverage``, ``tfimp.batchnorm``) follow the Keras the
process chose, the one explicit choice: the process is a **Keras 3** process
when it imported Keras 3 (``import keras``) and has not used tfimp's tf_keras
front end (``tfimp.keras``) or set ``TF_USE_LEGACY_KERAS=1``; otherwise it is
a tf_keras process, as before Keras 3 existed. Import Keras first, then use
these names.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
LEGACY_KERAS_VALUES = ("1", "true", "True")


def of_model(model) -> str:
    """``"tf_keras"`` or ``"keras3"`` by the classes ``model`` is made of.

    Raises:
      TypeError: ``model`` is a model of neither Keras.
    """
    for klass in type(model).__mro__:
        module = klass.__module__ or ""
        if module.startswith("tf_keras"):
            return TF_KERAS
        if module.startswith("keras.src.") or module == "keras":
            return KERAS3
    raise TypeError(f"expected a Keras model (tf_keras or Keras 3), got {type(model).__name__}: {model!r}")


def of_process() -> str:
    """The front end of names used before any model exists (see the module docstring)."""
    if "tfimp.tf_keras._backend" in sys.modules or os.environ.get("TF_USE_LEGACY_KERAS") in LEGACY_KERAS_VALUES:
        return TF_KERAS
    keras = sys.modules.get("keras")
    if keras is not None and str(getattr(keras, "__version__", "")).startswith("3."):
        return KERAS3
    return TF_KERAS


def of_file(path: str) -> str:
    """The front end that wrote a saved model, by the Keras version the file records.

    A ``.keras`` archive names it in ``metadata.json``, an HDF5 file in its
    ``keras_version`` attribute (read with h5py, which both Kerases bring); a
    SavedModel directory, or a file that records no version, is tf_keras'.
    """
    path = str(path)
    if path.endswith(".keras") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" in archive.namelist():
                return _front_end_of_version(json.loads(archive.read("metadata.json")).get("keras_version"))
    elif path.endswith((".h5", ".hdf5")) and os.path.isfile(path):
        try:
            import h5py  # noqa: PLC0415  (only for HDF5 files)
        except ImportError:
            return TF_KERAS
        with h5py.File(path, "r") as handle:
            return _front_end_of_version(handle.attrs.get("keras_version"))
    return TF_KERAS


def lambda_layers(path: str) -> list[str]:
    """The names of the ``Lambda`` layers an HDF5 file or a SavedModel directory records (their Python code runs
    when Keras 2 loads them; ``.keras`` files are Keras' own ``safe_mode`` business)."""
    path = str(path)
    if path.endswith((".h5", ".hdf5")) and os.path.isfile(path):
        try:
            import h5py  # noqa: PLC0415  (only for HDF5 files)
        except ImportError:
            return []
        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
        text = config.decode("utf-8", "replace") if isinstance(config, bytes) else str(config or "")
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "keras_metadata.pb")):
        with open(os.path.join(path, "keras_metadata.pb"), "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    else:
        return []
    return sorted(set(re.findall(r'"class_name": "Lambda", "config": \{"name": "([^"]*)"', text)))


def _front_end_of_version(version) -> str:
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return KERAS3 if str(version or "").startswith("3.") else TF_KERAS
