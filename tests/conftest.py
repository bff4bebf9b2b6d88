"""Shared test set-up: the Keras 2 stack and two logical CPU devices; or, for the Keras 3 suite, nothing.

The tf_keras suite (``tests/test_*.py``) and the Keras 3 suite
(``tests/keras3/``, one run per backend) cannot share a process: the first
selects tf_keras for ``tf.keras``, which a Keras 3 process must never see.
``TFIMP_TEST_KERAS=3`` runs the Keras 3 suite (``tests/keras3/conftest.py``
sets it up) and leaves this file's set-up out; without it, ``tests/keras3``
is left out.

The logical devices must be configured before TensorFlow initialises its
runtime, so it happens here, at collection time, for the whole session.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KERAS3_SUITE = os.environ.get("TFIMP_TEST_KERAS") == "3"

if KERAS3_SUITE:
    collect_ignore_glob = ["test_*.py", "multi_worker_job.py"]
else:
    collect_ignore = ["keras3"]

    import tfimp
    from tfimp import keras, tf  # the tf_keras front end: selects tf_keras before anything touches tf.keras

    import helpers

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

    @pytest.fixture(autouse=True)
    def _fresh_keras_session():
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        yield

    @pytest.fixture
    def wrapped_cnn():
        return tfimp.wrap(helpers.small_cnn())

    @pytest.fixture(scope="session")
    def fashion_dir(tmp_path_factory):
        """Real Fashion-MNIST when Debian's package is installed (data_dir ""), else small idx files."""
        from tfimp import data

        if os.path.isdir(data.DEBIAN_FASHION_MNIST):
            return ""
        directory = str(tmp_path_factory.mktemp("fashion"))
        helpers.make_idx_dataset(directory, n_train=600, n_test=200)
        return directory
