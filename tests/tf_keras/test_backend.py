"""`import tfimp` selects no framework; the tf_keras front end selects the Keras 2 stack, or says why it cannot."""

import os
import subprocess
import sys
import textwrap

import pytest

import tfimp


def test_the_tf_keras_front_end_selects_tf_keras():
    import tf_keras

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tfimp.keras is tf_keras
    # tf.keras is tf_keras's API (its module may be named "tensorflow.keras" once another package imported it so)
    assert tfimp.tf.keras.layers.Dense is tf_keras.layers.Dense
    assert os.path.dirname(tfimp.tf.keras.__file__).startswith(os.path.dirname(tf_keras.__file__))


def test_choosing_a_keras_commits_the_process_or_says_why_it_cannot():
    assert tfimp.use_keras(2) is tfimp.keras and tfimp.keras_of_process() is tfimp.keras
    with pytest.raises(ValueError, match="this process already uses tf_keras, not keras3"):
        tfimp.use_keras(3)
    with pytest.raises(ValueError, match="must be 2 \\(tf_keras\\) or 3, got 4"):
        tfimp.use_keras(4)
    fresh = _run("""
        import tfimp
        keras = tfimp.use_keras(3)
        print(keras.__version__, tfimp.front_end.of_process(), tfimp.callbacks.__name__)
    """, {})
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert fresh.stdout.split()[1:] == ["keras3", "tfimp.keras3.callbacks"] and fresh.stdout.startswith("3.")


def _run(code: str, env_update: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_update)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300
    )


def test_in_a_keras3_process_no_tfimp_name_switches_to_tf_keras():
    result = _run(
        """
        import os
        import tensorflow as tf
        tf.keras.layers  # binds tf.keras to Keras 3: a Keras 3 process
        import tfimp
        for read in (lambda: tfimp.keras, lambda: tfimp.tf, lambda: tfimp.IMP.__module__):
            try:
                print(read())
            except (AttributeError, ImportError) as error:
                print("refused:", error)
        try:
            import tfimp.tf_keras
        except ImportError as error:
            print("refused:", error)
        assert "TF_USE_LEGACY_KERAS" not in os.environ
        assert str(tf.keras.version()).startswith("3."), tf.keras.version()
        print("still Keras 3")
        """,
        {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "still Keras 3"
    assert lines[2] == "tfimp.keras3.imp"  # tfimp.IMP is Keras 3's here
    for refusal in (lines[0], lines[1], lines[3]):
        assert refusal.startswith("refused: tfimp's tf_keras front end needs the Keras 2 stack, and this process "
                                  "already uses Keras 3"), refusal
        assert "tfimp.use_keras(2)" in refusal


def test_tensorflow_imported_first_without_touching_keras_still_works():
    result = _run(
        """
        import tensorflow as tf
        import tfimp
        tfimp.keras
        assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
        print("ok")
        """,
        {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


_BLOCK_FRAMEWORKS = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "jax", "torch"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocked())
"""


def test_import_tfimp_selects_no_framework_and_the_core_needs_none():
    result = _run(
        _BLOCK_FRAMEWORKS + """
import os
import numpy as np
import tfimp
from tfimp.core import retraining
assert "TF_USE_LEGACY_KERAS" not in os.environ
kept = tfimp.selection.select_lowest([np.array([3.0, 1.0, 2.0]), np.array([0.5, 4.0])], 2)
assert [m.tolist() for m in kept] == [[False, True, False], [True, False]], kept
assert tfimp.criteria.known() == ["erk", "global", "lamp", "uniform", "uniform_plus"]
plan = tfimp.Plan(target_sparsity=0.875, cycles=3, dense_epochs=2, retrain_epochs=1, retrain_schedule="slr")
assert [round(plan.sparsity_after(c), 6) for c in (1, 2, 3)] == [0.5, 0.75, 0.875]
values = retraining.retrain_values("llr", retraining.Original(np.array([0.1, 0.1, 0.01])), 10)
assert values[0] == 0.0 and values[1] == 0.1 and values[-1] > 0
assert callable(tfimp.wrap)  # the model functions wait for a model to pick a front end
try:
    tfimp.IMP
except ImportError as error:
    assert "blocked" in str(error), error
else:
    raise AssertionError("the tf_keras front end imported without TensorFlow")
print("ok")
""",
        {},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_a_keras3_process_keeps_keras3_after_import_tfimp():
    result = _run(
        """
        import keras
        import tfimp
        tfimp.criteria.get("global")
        import tensorflow as tf
        assert keras.version().startswith("3."), keras.version()
        assert tf.keras.version().startswith("3."), tf.keras.version()
        print("ok")
        """,
        {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
