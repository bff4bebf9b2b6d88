"""`import tfimp` selects the Keras 2 stack, or says why it cannot."""

import os
import subprocess
import sys
import textwrap

import tfimp


def test_import_selects_tf_keras():
    import tf_keras

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tfimp.keras is tf_keras
    # tf.keras is tf_keras's API (its module may be named "tensorflow.keras" once another package imported it so)
    assert tfimp.tf.keras.layers.Dense is tf_keras.layers.Dense
    assert os.path.dirname(tfimp.tf.keras.__file__).startswith(os.path.dirname(tf_keras.__file__))


def _run(code: str, env_update: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_update)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300
    )


def test_tensorflow_imported_first_with_keras3_is_a_clear_error():
    result = _run(
        """
        import tensorflow as tf
        tf.keras.layers  # binds tf.keras to Keras 3
        import tfimp
        """,
        {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode != 0
    assert "tfimp needs the Keras 2 stack (tf_keras)" in result.stderr
    assert "Import tfimp before tensorflow" in result.stderr


def test_tensorflow_imported_first_without_touching_keras_still_works():
    result = _run(
        """
        import tensorflow as tf
        import tfimp
        assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
        print("ok")
        """,
        {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
