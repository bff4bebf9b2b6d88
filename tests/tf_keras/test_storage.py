"""Workdirs on file systems other than the local disk (tf.io.gfile), with TensorFlow's in-memory ram://."""

import json
import os
import uuid

import numpy as np
import pytest

import tfimp
from tfimp.tf_keras import checkpoint
from tfimp.cli import config as tfimp_config, main
from tfimp import storage, tf, workdir

import helpers


@pytest.fixture
def ram():
    """A fresh ram:// directory (the in-memory file system lives as long as this process)."""
    return f"ram://tfimp-test-{uuid.uuid4().hex}"


def _read_all(directory):
    found = {}
    for root, _, files in tf.io.gfile.walk(directory):
        for name in files:
            with tf.io.gfile.GFile(os.path.join(root, name), "rb") as handle:
                found[os.path.relpath(os.path.join(root, name), directory)] = handle.read()
    return found


def test_files_directories_and_local_stand_ins(ram, tmp_path):
    storage.atomic_write_text(f"{ram}/a/b/c.txt", "first")
    storage.atomic_write_text(f"{ram}/a/b/c.txt", "second")
    assert storage.read_text(f"{ram}/a/b/c.txt") == "second"
    assert storage.listdir(f"{ram}/a/b") == ["c.txt"]  # no .tmp left behind
    assert storage.listdir(f"{ram}/nothing") == [] and storage.read_json(f"{ram}/nothing.json") is None

    with storage.local_file(f"{ram}/blob.bin", "w") as local:
        assert not local.startswith("ram://")
        with open(local, "wb") as handle:
            handle.write(b"\x00\x01")
    with storage.local_file(f"{ram}/blob.bin", "r") as local:
        assert open(local, "rb").read() == b"\x00\x01"
    with storage.local_dir(f"{ram}/tree") as local:
        os.makedirs(os.path.join(local, "x"))
        open(os.path.join(local, "x", "y.txt"), "w").write("deep")
    assert _read_all(f"{ram}/tree") == {"x/y.txt": b"deep"}

    storage.remove(f"{ram}/a")
    assert not storage.exists(f"{ram}/a/b/c.txt")
    with storage.local_file(str(tmp_path / "local.txt"), "w") as local:  # a local target is used as it is
        assert local == str(tmp_path / "local.txt")


def test_an_imp_run_in_a_ram_workdir_writes_resumes_and_loads_cycles(ram):
    x, y = helpers.random_data(48)
    imp = tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=16,
                    learning_rate=0.05)
    rows = imp.run(helpers.small_cnn(), (x, y), test=(x, y), workdir=ram, verbose=0)
    assert workdir.cycles(ram) == [0, 1, 2]
    stored = json.loads(storage.read_text(f"{ram}/results.json"))
    assert [r["sparsity"] for r in stored["rows"]] == pytest.approx([r["sparsity"] for r in rows])
    assert storage.read_text(f"{ram}/results.csv").splitlines()[0].startswith("cycle,")
    assert json.loads(storage.read_text(f"{ram}/cycle_1/row.json"))["cycle"] == 1
    assert not storage.exists(f"{ram}/run.lock")

    loaded = tfimp.load_cycle(ram, 1)
    assert tfimp.sparsity(loaded) == rows[1]["sparsity"]
    final = tfimp.load_cycle(ram, 2)
    np.testing.assert_array_equal(final.predict(x, verbose=0), imp.model.predict(x, verbose=0))

    again = tfimp.IMP(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=16,
                      learning_rate=0.05)
    assert again.run(helpers.small_cnn(), (x, y), test=(x, y), workdir=ram, verbose=0) == rows
    np.testing.assert_array_equal(again.model.predict(x, verbose=0), imp.model.predict(x, verbose=0))


def test_a_save_cut_short_is_ignored_and_the_previous_one_restored(ram):
    model = tfimp.wrap(helpers.small_cnn())
    model.compile(optimizer=tfimp.optimizers.make("torch_sgd", 0.1), loss="mse")
    checkpoint.save(ram, model, {"next_epoch": 1})
    checkpoint.save(ram, model, {"next_epoch": 2})
    assert storage.listdir(f"{ram}/checkpoint") == ["save_0", "save_1"]  # the two newest whole saves are kept
    # A kill while writing save_2: its variables are there, its state.json is not.
    tf.train.Checkpoint(model=model).write(f"{ram}/checkpoint/save_2/ckpt")
    assert checkpoint.load_state(ram) == {"next_epoch": 2}
    assert checkpoint.restore(ram, model) == {"next_epoch": 2}
    checkpoint.save(ram, model, {"next_epoch": 3})
    assert storage.listdir(f"{ram}/checkpoint") == ["save_1", "save_3"]  # the cut save_2 goes too


def test_a_dense_run_and_the_cli_outputs_in_a_ram_workdir(ram, fashion_dir):
    config = tfimp_config.base()
    config.update(method="oneshot", dense_epochs=1, retrain_epochs=1, target_sparsity=0.8, data_dir=fashion_dir,
                  train_subset=256, batch_size=64, verbose=0, export_formats="keras,tflite")
    rows = main.run(config, ram)
    assert [r["cycle"] for r in rows] == [0, 1]
    files = _read_all(ram)
    assert files["accuracy_vs_sparsity.png"].startswith(b"\x89PNG")
    assert json.loads(files["config.json"])["method"] == "oneshot"
    sizes = json.loads(files["export/sizes.json"])
    assert [s["format"] for s in sizes] == ["keras", "tflite"]
    assert all(s["path"].startswith(ram) for s in sizes)
    assert files["export/model.tflite"][4:8] == b"TFL3"
    with storage.local_file(f"{ram}/model_stripped.keras", "r") as local:
        stripped = tfimp.keras.models.load_model(local)
    assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, 0.8) == rows[-1]["sparsity"]
    assert any(name.startswith("tensorboard/") for name in files)

    dense_run = f"{ram}-dense"
    dense = tfimp.Dense(1, batch_size=16, learning_rate=0.05)
    x, y = helpers.random_data(32)
    row = dense.run(helpers.small_cnn(), (x, y), test=(x, y), workdir=dense_run, verbose=0)
    assert storage.exists(f"{dense_run}/checkpoint") and storage.exists(f"{dense_run}/cycle_0/row.json")
    again = tfimp.Dense(1, batch_size=16, learning_rate=0.05)
    assert again.run(helpers.small_cnn(), (x, y), test=(x, y), workdir=dense_run, verbose=0) == row
    np.testing.assert_array_equal(again.model.predict(x, verbose=0), dense.model.predict(x, verbose=0))
