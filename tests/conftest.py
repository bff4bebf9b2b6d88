"""Shared test set-up: the Keras 2 stack and two logical CPU devices.

The logical devices must be configured before TensorFlow initialises its
runtime, so it happens here, at collection time, for the whole session.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

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
