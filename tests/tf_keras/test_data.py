"""Data loading and pipelines on small idx files and a mocked tfds dataset."""

import numpy as np
import pytest

from tfimp import data
from tfimp.tfdata import pipelines as tfdata

from helpers import make_idx_dataset


def _all(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_round_trip(tmp_path, compress):
    arrays = make_idx_dataset(str(tmp_path), compress=compress)
    suffix = ".gz" if compress else ""
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / f"train-images-idx3-ubyte{suffix}")),
                                  arrays["train-images-idx3-ubyte"])
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        data.read_idx(str(tmp_path / "bad"))
    (tmp_path / f"cut{suffix}").write_bytes((tmp_path / f"train-images-idx3-ubyte{suffix}").read_bytes()[:40])
    with pytest.raises(data.DataUnavailableError, match=rf"cut{suffix} is damaged"):
        data.read_idx(str(tmp_path / f"cut{suffix}"))


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_load_from_idx_split_subset_and_normalisation(tmp_path, name):
    arrays = make_idx_dataset(str(tmp_path))
    loaded = data.load(name, data_dir=str(tmp_path), batch_size=16, validation_fraction=0.1, seed=3)
    assert loaded.source == f"idx files in {tmp_path}"
    assert loaded.train_examples == 54 and loaded.steps_per_epoch == 4
    x_train, y_train = _all(loaded.train)
    x_val, y_val = _all(loaded.validation)
    x_test, y_test = _all(loaded.test)
    assert x_train.shape == (54, 28, 28, 1) and x_val.shape == (6, 28, 28, 1) and x_test.shape == (20, 28, 28, 1)
    # Normalised with the dataset's mean and std, test set in its original order.
    spec = data.spec(name)
    expected = (arrays["t10k-images-idx3-ubyte"][..., None] / 255.0 - spec.mean[0]) / spec.std[0]
    np.testing.assert_allclose(x_test, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    # The split is a partition of the training set.
    assert sorted(np.concatenate([y_train, y_val]).tolist()) == sorted(arrays["train-labels-idx1-ubyte"].tolist())

    subset = data.load(name, data_dir=str(tmp_path), batch_size=16, validation_fraction=0.0, train_subset=25,
                       test_subset=7)
    assert subset.validation is None and subset.train_examples == 25
    np.testing.assert_array_equal(_all(subset.test)[1], arrays["t10k-labels-idx1-ubyte"][:7])
    with pytest.raises(ValueError, match="test_subset must be >= 1"):
        data.load(name, data_dir=str(tmp_path), test_subset=0)


def test_split_and_shuffle_are_deterministic_given_the_seed(tmp_path):
    make_idx_dataset(str(tmp_path))
    first = [_all(data.load("mnist", data_dir=str(tmp_path), batch_size=8, seed=1).train)[1] for _ in range(2)]
    other = _all(data.load("mnist", data_dir=str(tmp_path), batch_size=8, seed=2).train)[1]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other)
    train, validation = data.split_indices(100, 0.1, seed=5)
    assert len(train) == 90 and len(validation) == 10 and not set(train) & set(validation)


def test_offline_without_data_fails_fast_and_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tfdata, "DEBIAN_FASHION_MNIST", str(tmp_path / "not_installed"))
    monkeypatch.setenv("TFIMP_OFFLINE", "1")
    import tensorflow_datasets as tfds

    downloads = []  # tfds' download retries for minutes offline: it must never be started
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, *args, **kwargs: downloads.append(self.name))
    (tmp_path / "empty").mkdir()  # a data_dir that exists but holds nothing (a missing one is refused at once)
    for name, hint in [("fashion_mnist", "apt-get install dataset-fashion-mnist"),
                       ("mnist", "idx files"),
                       ("cifar10", "download_and_prepare"),
                       ("imagenet2012", "ILSVRC2012_img_train.tar")]:
        with pytest.raises(data.DataUnavailableError, match=hint) as error:
            data.load(name, data_dir=str(tmp_path / "empty"))
        assert "network is unreachable" in str(error.value)
    assert downloads == []


def test_unknown_dataset_and_augmentation():
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; known: \['cifar10', 'cifar100'"):
        data.load("svhn")
    import tensorflow as tf
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        data.pipeline(dataset, data.spec("cifar10"), batch_size=2, training=True, augmentation="mixup")


@pytest.fixture
def mocked_tfds(monkeypatch):
    """A tiny tfds dataset: tfds' own mock generates examples from the builder's features."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfdata, "network_reachable", lambda timeout=5.0: True)
    with tfds.testing.mock_data(num_examples=24):
        yield


@pytest.mark.parametrize("name, augmentation", [("cifar10", "crop_flip"), ("cifar100", "crop_flip_rotate")])
def test_cifar_through_tfds_with_paper_augmentation(mocked_tfds, tmp_path, name, augmentation):
    loaded = data.load(name, data_dir=str(tmp_path), batch_size=8, validation_fraction=0.25, seed=0)
    assert loaded.spec.augmentation == augmentation
    assert loaded.train_examples == 18 and "tensorflow-datasets" in loaded.source
    x, y = next(iter(loaded.train))
    assert x.shape == (8, 32, 32, 3) and y.dtype.name == "int64"
    # Evaluation data is not augmented: identical on every pass.
    np.testing.assert_array_equal(_all(loaded.test)[0], _all(loaded.test)[0])


@pytest.mark.parametrize("augmentation", ["crop_flip", "crop_flip_rotate", "imagenet"])
def test_augmentation_is_deterministic_given_the_seed_and_changes_per_epoch(augmentation):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    size = 40 if augmentation == "imagenet" else 32
    images = rng.integers(0, 256, size=(12, size, size, 3)).astype(np.uint8)
    labels = np.arange(12, dtype=np.int64)

    def make(seed):
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        return data.pipeline(dataset, data.spec("cifar100"), batch_size=4, training=True,
                             augmentation=augmentation, seed=seed)

    pipeline = make(seed=0)
    epoch_1, epoch_2 = _all(pipeline), _all(pipeline)
    again = _all(make(seed=0))
    np.testing.assert_array_equal(epoch_1[0], again[0])
    np.testing.assert_array_equal(epoch_1[1], again[1])
    assert not np.array_equal(epoch_1[0], epoch_2[0])
    assert not np.array_equal(epoch_1[0], _all(make(seed=1))[0])
    if augmentation != "imagenet":
        assert epoch_1[0].shape == (12, 32, 32, 3)
    else:
        assert epoch_1[0].shape == (12, 224, 224, 3)


def test_crop_flip_pads_by_four_and_keeps_content():
    import tensorflow as tf
    image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32) + 1.0, (32, 32, 3))
    out = tfdata._crop_flip(image, tf.constant([1, 2], tf.int64)).numpy()
    nonzero_rows = np.flatnonzero(out.any(axis=(1, 2)))
    assert out.shape == (32, 32, 3) and 28 <= len(nonzero_rows) <= 32  # at most 4 padded rows


def test_imagenet_pipeline_shapes(mocked_tfds, tmp_path):
    loaded = data.load("imagenet2012", data_dir=str(tmp_path), batch_size=4, validation_fraction=0.25,
                       train_subset=16)
    assert loaded.train_examples == 12 and loaded.validation is not None
    x, _ = next(iter(loaded.train))
    x_test, _ = next(iter(loaded.test))
    assert x.shape == (4, 224, 224, 3) and x_test.shape == (4, 224, 224, 3)


def test_epoch_ordered_training_data_depends_only_on_the_seed_and_the_epoch(tmp_path):
    make_idx_dataset(str(tmp_path), n_train=40, n_test=10)
    loaded = data.load("fashion_mnist", data_dir=str(tmp_path), batch_size=8, seed=3, validation_fraction=0.0)
    ordered = loaded.train_epochs
    assert ordered.steps_per_epoch == loaded.steps_per_epoch == 5

    def labels(dataset):
        return np.concatenate([y.numpy() for _, y in dataset])

    whole = labels(ordered.epochs(0, 3))
    assert len(whole) == 3 * 40
    resumed = labels(ordered.epochs(2, 3))  # a run resumed at epoch 2
    np.testing.assert_array_equal(resumed, whole[80:])
    np.testing.assert_array_equal(labels(ordered.epoch(1)), labels(ordered.epoch(1)))  # same on every pass
    assert not np.array_equal(whole[:40], whole[40:80])  # and a new order each epoch
    again = data.load("fashion_mnist", data_dir=str(tmp_path), batch_size=8, seed=3, validation_fraction=0.0)
    images = [x.numpy() for x, _ in again.train_epochs.epoch(2)]
    np.testing.assert_array_equal(np.concatenate(images), np.concatenate([x.numpy() for x, _ in ordered.epoch(2)]))


class _FakeProxy:
    """A local HTTPS proxy that answers every CONNECT with ``status`` and records the requested targets."""

    def __init__(self, status: bytes):
        import socket
        import threading

        self.status, self.requests = status, []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                self.requests.append(connection.recv(1024).split(b"\r\n", 1)[0].decode())
                connection.sendall(b"HTTP/1.1 " + self.status + b"\r\n\r\n")


def _closed_port():
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def online_probe(monkeypatch):
    for name in ("TFIMP_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_network_probe_asks_the_https_proxy(online_probe):
    proxy = _FakeProxy(b"200 Connection established")
    online_probe.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    assert data.https_proxy() == ("127.0.0.1", proxy.port)
    assert data.network_reachable(timeout=2.0)
    assert proxy.requests == ["CONNECT storage.googleapis.com:443 HTTP/1.1"]

    refusing = _FakeProxy(b"502 Bad Gateway")  # the proxy is up, the internet behind it is not
    online_probe.setenv("https_proxy", f"http://127.0.0.1:{refusing.port}")
    assert not data.network_reachable(timeout=2.0)


def test_a_dead_proxy_fails_fast_and_is_named(online_probe, tmp_path):

    import socket

    port = _closed_port()
    online_probe.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")  # scheme-less, as some users write it
    connects = []
    create_connection = socket.create_connection

    def recording(address, timeout=None, *args, **kwargs):
        connects.append((tuple(address), timeout))
        return create_connection(address, timeout, *args, **kwargs)

    online_probe.setattr(socket, "create_connection", recording)
    assert not data.network_reachable(timeout=2.0)
    assert connects == [(("127.0.0.1", port), 2.0)]  # one try, at the proxy, bounded by the timeout
    with pytest.raises(data.DataUnavailableError, match=rf"unreachable \(through the proxy 127.0.0.1:{port}\)"):
        data.load("cifar10", data_dir=str(tmp_path))


def test_no_proxy_sends_the_probe_direct(online_probe):
    online_probe.setenv("https_proxy", "http://127.0.0.1:1")
    online_probe.setenv("no_proxy", "localhost,.googleapis.com")
    assert data.https_proxy() is None
