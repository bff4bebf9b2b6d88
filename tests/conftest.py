"""Which suite this process runs, and the tf_keras suite's set-up (the Keras 2 stack, two logical CPU devices).

The tests mirror the package: ``tests/core`` (the framework-free core, run
with every framework blocked from import), ``tests/tf_keras`` and
``tests/cli`` (the tf_keras front end and the command line), and
``tests/keras3`` (the Keras 3 front end, one run per backend). They cannot
share a process: tf_keras selects Keras 2 for ``tf.keras``, which a Keras 3
process must never see, and the core's run must see no framework at all.

- ``TFIMP_TEST_CORE=1 python -m pytest tests/core``: the core suite
  (``tests/core/conftest.py`` blocks the frameworks);
- ``python -m pytest tests``: the tf_keras and CLI suites (this file's set-up);
- ``TFIMP_TEST_KERAS=3 KERAS_BACKEND=... python -m pytest tests/keras3``:
  the Keras 3 suite (``tests/keras3/conftest.py``).

The logical devices must be configured before TensorFlow initialises its
runtime, so it happens here, at collection time, for the whole session.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KERAS3_SUITE = os.environ.get("TFIMP_TEST_KERAS") == "3"
CORE_SUITE = os.environ.get("TFIMP_TEST_CORE") == "1"

if KERAS3_SUITE:
    collect_ignore = ["core", "tf_keras", "cli"]
elif CORE_SUITE:
    collect_ignore = ["keras3", "tf_keras", "cli", "front_ends"]
else:
    collect_ignore = ["keras3", "core"]

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
        """A folder of Fashion-MNIST idx files: the first 4,000 training and 2,000 test images of the real data
        where Debian's package is installed (a test evaluates on at most what it asks for, not 10,000 images),
        else small generated files (600 and 200)."""
        from tfimp import data

        directory = str(tmp_path_factory.mktemp("fashion"))
        if os.path.isdir(data.DEBIAN_FASHION_MNIST):
            return helpers.copy_idx_subset(data.DEBIAN_FASHION_MNIST, directory, n_train=4000, n_test=2000)
        helpers.make_idx_dataset(directory, n_train=600, n_test=200)
        return directory
