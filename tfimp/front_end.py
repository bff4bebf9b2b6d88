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
import sys
import zipfile

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
_LEGACY_KERAS_VALUES = ("1", "true", "True")


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
    if "tfimp._backend" in sys.modules or os.environ.get("TF_USE_LEGACY_KERAS") in _LEGACY_KERAS_VALUES:
        return TF_KERAS
    keras = sys.modules.get("keras")
    if keras is not None and str(getattr(keras, "__version__", "")).startswith("3."):
        return KERAS3
    return TF_KERAS


def choose(version: int):
    """Commits this process to a Keras, before anything of tfimp's follows it; returns that Keras module.

    ``choose(3)`` imports Keras 3 (``import keras``), ``choose(2)`` tfimp's
    tf_keras (``tfimp.keras``): a script's ``--keras`` flag. Afterwards the
    names of the module docstring resolve to that front end.

    Raises:
      ValueError: ``version`` is not 2 or 3, or the process is already committed to the other Keras.
    """
    if version not in (2, 3):
        raise ValueError(f"Keras version must be 2 (tf_keras) or 3, got {version!r}")
    wanted = KERAS3 if version == 3 else TF_KERAS
    if ("keras" in sys.modules or "tfimp._backend" in sys.modules) and of_process() != wanted:
        raise ValueError(f"this process already uses {of_process()}, not {wanted}: choose the Keras before "
                         "importing either (for Keras 3, without TF_USE_LEGACY_KERAS)")
    if version == 3:
        if os.environ.get("TF_USE_LEGACY_KERAS") in _LEGACY_KERAS_VALUES:
            raise ValueError("Keras 3 needs a process without TF_USE_LEGACY_KERAS (it makes tf.keras Keras 2)")
        import keras  # noqa: PLC0415

        return keras
    from tfimp._backend import keras  # noqa: PLC0415

    return keras


def keras_of_process():
    """The Keras module this process uses (see :func:`of_process`): Keras 3, or tfimp's tf_keras."""
    return choose(3 if of_process() == KERAS3 else 2)


def of_file(path: str) -> str:
    """The front end that wrote a saved model: a ``.keras`` file says its Keras version; h5 and SavedModel are tf_keras."""
    if str(path).endswith(".keras") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" in archive.namelist():
                version = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
                return KERAS3 if version.startswith("3.") else TF_KERAS
    return TF_KERAS
