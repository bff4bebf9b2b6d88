"""The framework-free names of ``tfimp`` load no framework (this suite blocks them all), and route nothing."""

import sys

import numpy as np
import pytest

import tfimp

BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "keras_cv", "keras_hub", "jax", "torch")


def test_reading_the_framework_free_names_loads_no_framework():
    for name in ("Plan", "selection", "criteria", "registry", "plan", "core", "front_end", "results", "plots",
                 "architectures", "storage", "use_keras", "keras_of_process", "wrap", "load_model"):
        assert getattr(tfimp, name) is not None, name
    rows = [{"cycle": 0, "sparsity": 0.0, "train_accuracy": 0.9, "test_accuracy": 0.88},
            {"cycle": 1, "sparsity": 0.5, "train_accuracy": 0.91, "test_accuracy": 0.87}]
    table = tfimp.results.format_table(rows)
    assert "0.5" in table or "50" in table
    plan = tfimp.Plan(target_sparsity=0.75, cycles=2, dense_epochs=1, retrain_epochs=1)
    assert [round(plan.sparsity_after(c), 6) for c in (1, 2)] == [0.5, 0.75]
    assert sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED) == []


def test_a_front_end_name_needs_its_framework_and_says_so():
    with pytest.raises(ImportError, match="blocked in the core suite"):
        tfimp.IMP  # noqa: B018  (a tf_keras process by default: its front end needs TensorFlow)


def test_the_core_knows_the_front_end_of_a_file_without_a_framework(tmp_path):
    import json
    import zipfile

    for version, expected in (("3.15.1", "keras3"), ("2.21.0", "tf_keras")):
        path = tmp_path / f"m{version[0]}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.json", json.dumps({"keras_version": version}))
        assert tfimp.front_end.of_file(str(path)) == expected
    h5py = pytest.importorskip("h5py")
    for version, expected in (("3.15.1", "keras3"), (b"2.21.0", "tf_keras")):
        path = tmp_path / "m.h5"
        with h5py.File(path, "w") as handle:
            handle.attrs["keras_version"] = version
            handle.create_dataset("x", data=np.zeros(2))
        assert tfimp.front_end.of_file(str(path)) == expected
    assert tfimp.front_end.of_file(str(tmp_path)) == "tf_keras"  # a SavedModel directory
