"""Set-up of the Keras 3 suite: run it with ``TFIMP_TEST_KERAS=3 KERAS_BACKEND=<jax|tensorflow|torch>``.

Nothing here imports tf_keras or sets ``TF_USE_LEGACY_KERAS``: this process is a
Keras 3 user's process. ``keras`` is imported first, so ``tfimp.callbacks``,
``tfimp.lr`` and ``tfimp.optimizers`` are the Keras 3 ones.
"""

import os
import tempfile

import pytest

if os.environ.get("TFIMP_TEST_KERAS") != "3":
    raise RuntimeError("tests/keras3 runs with TFIMP_TEST_KERAS=3 and KERAS_BACKEND set (see the README)")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # two CPU devices for JAX
# JAX compiles the same small train steps again in every test and every subprocess (each Keras model makes
# new jitted functions); one compilation cache for the whole run, shared by both xdist workers and the
# subprocesses they start (they inherit the environment), serves the repeats from disk.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"tfimp-tests-jax-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import keras  # noqa: E402

if os.environ.get("TF_USE_LEGACY_KERAS"):
    raise RuntimeError("the Keras 3 suite must not run with TF_USE_LEGACY_KERAS set")


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
