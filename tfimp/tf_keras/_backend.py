"""The one place where tfimp's tf_keras front end selects the Keras 2 stack.

tfmot only wraps Keras 2 (``tf_keras``) models, and TensorFlow >= 2.16 routes
``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS`` is set *before*
``tf.keras`` is first resolved. Every module of the tf_keras front end imports
``tf`` and ``keras`` from here, so the variable is set exactly once, first;
``import tfimp`` alone does not import this module (see ``tfimp/__init__.py``).
"""

from __future__ import annotations

import os
import sys

from tfimp.core.front_end import LEGACY_KERAS_VALUES
from tfimp.tf_keras import _private


def _uses_keras3() -> bool:
    """Whether this process chose Keras 3: it imported Keras 3 itself, or TensorFlow bound ``tf.keras`` to it.

    TensorFlow imports parts of Keras 3 on its own; that alone chooses nothing.
    """
    keras3 = sys.modules.get("keras")
    if keras3 is None or not str(getattr(keras3, "__version__", "")).startswith("3."):
        return False
    tensorflow = sys.modules.get("tensorflow")
    return tensorflow is None or _private.tf_keras_is_bound(tensorflow)


def _refuse_keras3_process() -> None:
    """Fails in a process that already chose Keras 3: tfimp never switches a Keras 3 user's ``tf.keras``."""
    if _uses_keras3():
        keras3 = sys.modules["keras"]
        raise ImportError(
            f"tfimp's tf_keras front end needs the Keras 2 stack, and this process already uses Keras "
            f"{keras3.__version__} (it imported keras without TF_USE_LEGACY_KERAS); tfimp does not switch it. For "
            "a Keras 3 model use tfimp.wrap and the other model functions, or `from tfimp.keras3 import ...`; for "
            "tf_keras, start a new process and call tfimp.use_keras(2) (or set TF_USE_LEGACY_KERAS=1) first.")


if os.environ.get("TF_USE_LEGACY_KERAS") not in LEGACY_KERAS_VALUES:
    _refuse_keras3_process()
    os.environ["TF_USE_LEGACY_KERAS"] = "1"

_tf_was_imported = "tensorflow" in sys.modules

import tensorflow as tf  # noqa: E402  (must follow the environment variable)
import tf_keras as keras  # noqa: E402


def _check_tf_keras_is_keras2() -> None:
    """Fails when TensorFlow already bound ``tf.keras`` to Keras 3."""
    version_fn = getattr(tf.keras, "version", None)
    version = version_fn() if callable(version_fn) else getattr(tf.keras, "__version__", "")
    if str(version).startswith("3."):
        raise ImportError(
            "tfimp's tf_keras front end needs the Keras 2 stack (tf_keras), but TensorFlow "
            f"had already bound tf.keras to Keras {version}. Use tfimp.keras before touching tf.keras, "
            "or set TF_USE_LEGACY_KERAS=1 in the environment before starting Python; for a Keras 3 "
            "model, tfimp.wrap and the other model functions use tfimp's Keras 3 front end."
        )


def _check_versions_match() -> None:
    """Fails when TensorFlow and tf-keras come from different minor versions (pip cannot couple them)."""
    tf_minor = ".".join(tf.__version__.split(".")[:2])
    keras_minor = ".".join(keras.__version__.split(".")[:2])
    if tf_minor != keras_minor:
        raise ImportError(
            f"tfimp needs TensorFlow and tf-keras of the same minor version, found tensorflow {tf.__version__} "
            f"and tf-keras {keras.__version__}; install the matching one: pip install 'tf-keras=={tf_minor}.*'")


if _tf_was_imported:
    _check_tf_keras_is_keras2()
_check_versions_match()

__all__ = ["tf", "keras"]
