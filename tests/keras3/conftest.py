"""Set-up of the Keras 3 suite: run it with ``TFIMP_TEST_KERAS=3 KERAS_BACKEND=<jax|tensorflow|torch>``.

Nothing here imports tf_keras or sets ``TF_USE_LEGACY_KERAS``: this process is a
Keras 3 user's process. ``keras`` is imported first, so ``tfimp.callbacks``,
``tfimp.lr`` and ``tfimp.optimizers`` are the Keras 3 ones.
"""

import os

import pytest

if os.environ.get("TFIMP_TEST_KERAS") != "3":
    raise RuntimeError("tests/keras3 runs with TFIMP_TEST_KERAS=3 and KERAS_BACKEND set (see the README)")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # two CPU devices for JAX

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
