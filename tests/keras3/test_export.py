"""Exports from Keras 3: each format written, loaded in a fresh process, its predictions and zeros read back."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import tfimp
from tfimp.cli import config as tfimp_config
from tfimp.cli import main
from tfimp.keras3 import export, masks

import k3_helpers as h

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import idx_files  # noqa: E402
import tflite_files  # noqa: E402

BACKEND = keras.backend.backend()
WRITABLE = [fmt for fmt in export.FORMATS if export.unavailable(fmt) is None]


@pytest.fixture
def pruned():
    keras.utils.set_random_seed(0)
    model = masks.wrap(h.small_cnn(), verbose=0)
    model(np.zeros((1, 8, 8, 3), "float32"))
    masks.prune(model, 0.8)
    return model


def _zeros(model):
    return sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0)) for v in model.weights if "float" in str(v.dtype))


def test_every_format_this_backend_writes_is_checked_in_a_fresh_process(tmp_path, pruned):
    # TensorFlow is installed beside every suite's backend; Keras 3 writes SavedModel from TensorFlow and JAX only.
    defaults = ["keras"] if BACKEND == "torch" else ["keras", "savedmodel", "tflite"]
    assert export.default_formats() == defaults and set(defaults) <= set(WRITABLE)
    x, _ = h.classification_data(16)
    calibration, _ = h.classification_data(100, seed=1)
    files = export.export(pruned, str(tmp_path), formats=WRITABLE, check_inputs=x, representative_data=calibration)
    assert [f.format for f in files] == WRITABLE
    stripped = masks.strip(pruned)
    expected = keras.ops.convert_to_numpy(stripped(x, training=False))
    for f in files:
        assert f.max_abs_error <= f.tolerance, f
        assert (f.bytes, f.gzip_bytes) == export.file_size(f.path)
        assert 0 < f.gzip_bytes < f.dense_gzip_bytes, f  # the zeros compress; the refilled reference does not
    by_format = {f.format: f for f in files}
    for fmt in sorted({"keras", "savedmodel", "tflite_int8"} & set(by_format)):  # whose zeros are read back
        assert by_format[fmt].sparsity == masks.sparsity(pruned), fmt
    assert all(f.test_accuracy is None and f.test_examples == 0 for f in files)  # no test data given
    loaded = keras.saving.load_model(by_format["keras"].path, compile=False)  # plain Keras: no tfimp objects
    assert _zeros(loaded) == _zeros(stripped)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), expected, atol=1e-5)
    table = export.size_table(files)
    for f in files:
        line = next(row for row in table.splitlines() if row.split()[0] == f.format)
        assert f"{f.gzip_bytes:,d}" in line and f"{f.dense_gzip_bytes / f.gzip_bytes:.2f}x" in line


_OTHER_BACKEND = """
import sys
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1], compile=False)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
print(keras.backend.backend())
"""


def test_the_stripped_keras_file_loads_on_every_other_backend_without_tfimp(tmp_path, pruned):
    x, _ = h.classification_data(8)
    path = str(tmp_path / "stripped.keras")
    masks.strip(pruned).save(path)
    expected = keras.ops.convert_to_numpy(masks.strip(pruned)(x, training=False))
    np.save(tmp_path / "x.npy", x)
    others = [b for b in ("jax", "tensorflow", "torch") if b != BACKEND and importlib.util.find_spec(b)]
    assert others  # jax and tensorflow are both installed for the suite
    for backend in others:
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env["KERAS_BACKEND"] = backend
        out = str(tmp_path / f"{backend}.npy")
        done = subprocess.run([sys.executable, "-c", _OTHER_BACKEND, path, str(tmp_path / "x.npy"), out],
                              env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-1] == backend
        np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


@pytest.mark.skipif("tflite_int8" not in WRITABLE, reason="Keras 3 writes TFLite from TensorFlow and JAX only")
def test_the_int8_file_keeps_every_pruned_weight_zero_and_records_each_files_accuracy(tmp_path, pruned):
    x, y = h.classification_data(300)
    calibration, _ = h.classification_data(100, seed=1)
    formats = ["keras", "savedmodel", "tflite", "tflite_int8"]
    files = export.export(pruned, str(tmp_path), formats=formats, representative_data=calibration, test_data=(x, y),
                          compare_dense=False)
    by_format = {f.format: f for f in files}
    weights = tflite_files.int8_weights(by_format["tflite_int8"].path)
    wrapped = dict(masks.wrappers(pruned))
    assert len(wrapped) == 3
    for wrapper in wrapped.values():
        mask = h.numpy_of(wrapper.masks[0])
        # TFLite stores output channels first: Conv2D (h, w, in, out) as (out, h, w, in), Dense (in, out) as (out, in).
        expected = (np.moveaxis(mask, -1, 0) if mask.ndim == 4 else mask.T) == 0
        [stored] = weights[expected.shape]  # each kernel of the model has its own shape
        # Every pruned weight is an int8 zero, and (here) no surviving one rounded to zero.
        np.testing.assert_array_equal(stored == 0, expected, err_msg=wrapper.name)
    stripped = masks.strip(pruned)
    float_accuracy = float(np.mean(keras.ops.convert_to_numpy(stripped(x, training=False)).argmax(1) == y))
    lite = tflite_files.outputs(by_format["tflite_int8"].path, x)
    assert by_format["tflite_int8"].test_accuracy == float(np.mean(lite.argmax(1) == y))  # the file's own
    for f in files:
        assert f.test_examples == 300 and f.float_accuracy == float_accuracy, f.format
        # Close: a float file flips at most one of the 300 predictions (near-ties, outputs within 1e-4); the
        # int8 file's quantised outputs (activations rounded too) move its accuracy by at most 5 points.
        assert abs(f.test_accuracy - float_accuracy) <= (0.05 if f.format == "tflite_int8" else 1 / 300), f


def test_keras_int8_quantization_of_a_stripped_model_keeps_the_zeros(tmp_path, pruned):
    """``model.quantize("int8")`` after ``strip``: Keras 3 quantises each Dense kernel per output column with a
    symmetric abs-max scale (``kernel`` becomes int8 beside ``kernel_scale``), so a pruned 0.0 stays the integer 0,
    also through save and load. Keras 3 leaves Conv2D in float (it has no ``quantize``)."""
    x, _ = h.classification_data(32)
    stripped = masks.strip(pruned)
    expected = keras.ops.convert_to_numpy(stripped(x, training=False))
    wrapped = {wrapper.layer.name: h.numpy_of(wrapper.masks[0]) == 0 for _, wrapper in masks.wrappers(pruned)}
    with warnings.catch_warnings():  # "Layer Conv2D does not have a `quantize` method implemented", and the like
        warnings.simplefilter("ignore")
        stripped.quantize("int8")
    path = str(tmp_path / "int8.keras")
    stripped.save(path)
    loaded = keras.saving.load_model(path)
    for model in (stripped, loaded):
        layers = {layer.name: layer for layer in model.layers if layer.name in wrapped}
        assert [layers[name].quantization_mode for name in ("fc1", "fc2")] == ["int8", "int8"]
        for name, pruned_positions in wrapped.items():
            kernel = keras.ops.convert_to_numpy(layers[name].kernel)
            assert kernel.dtype == (np.float32 if name == "conv" else np.int8), name
            np.testing.assert_array_equal(kernel == 0, pruned_positions, err_msg=name)  # no more, no fewer zeros
        got = keras.ops.convert_to_numpy(model(x, training=False))
        assert float(np.abs(got - expected).max()) <= 0.05 * float(np.ptp(expected))


def test_bad_exports_are_refused_before_any_work(tmp_path, pruned):
    with pytest.raises(ValueError, match=r"formats has unknown format\(s\) \['tflit'\]; known: \['keras'"):
        export.export(pruned, str(tmp_path), formats="keras,tflit")
    with pytest.raises(ValueError, match="not a pruned model"):
        export.export(h.small_cnn(), str(tmp_path))  # the default formats: those this backend writes
    unpruned = masks.wrap(h.small_cnn(), verbose=0)
    unpruned(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="not pruned"):
        export.export(unpruned, str(tmp_path))
    if "tflite_int8" in WRITABLE:
        with pytest.raises(ValueError, match=r"format\(s\) \['tflite_int8'\] calibrate on training inputs: pass "
                                             r"representative_data="):
            export.export(pruned, str(tmp_path), formats="keras,tflite_int8")
    else:
        assert "runs on the TensorFlow and JAX backends" in export.unavailable("tflite_int8")
    assert "runs on the TensorFlow and JAX backends, not on 'torch'" in export.unavailable("tflite", "torch")
    if importlib.util.find_spec("jax2onnx") is None:
        assert "needs jax2onnx: pip install jax2onnx" in export.unavailable("onnx", "jax")
    # The defaults (None, or exactly them, as the CLI ships them) leave out what this backend cannot write;
    # the same formats asked for otherwise are refused.
    for shipped in (None, "keras,savedmodel,tflite"):
        formats, left_out = export.resolve_formats(shipped)
        assert formats == export.default_formats()
        assert [why.split()[0] for why in left_out] == (["savedmodel", "tflite"] if BACKEND == "torch" else [])
    if BACKEND == "torch":
        with pytest.raises(ValueError, match=r"cannot be written here \(torch backend\): tflite: "):
            export.resolve_formats("keras,tflite")
    if BACKEND == "jax" and "onnx" not in WRITABLE:
        with pytest.raises(ValueError, match=r"cannot be written here \(jax backend\): onnx: .*jax2onnx"):
            export.check_formats("keras,onnx")
    assert os.listdir(tmp_path) == []  # nothing was written


def test_the_cli_on_keras3_exports_checked_files_with_their_size_table(tmp_path):
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    config = tfimp_config.base()
    config.update(keras=3, data_dir=str(tmp_path / "idx"), train_subset=256, test_subset=64, batch_size=64,
                  dense_epochs=1, cycles=1, retrain_epochs=1, validation_fraction=0.25, chance_guard=False,
                  verbose=0, learning_rate=0.02)
    # The shipped default on torch (keras alone: Keras 3 writes no SavedModel there), two formats elsewhere.
    config.export_formats = tfimp_config.base().export_formats if BACKEND == "torch" else "keras,tflite,tflite_int8"
    bad = tfimp_config.base()
    bad.update(keras=3, export_formats="keras,tflit")
    with pytest.raises(ValueError, match=r"config.export_formats has unknown format\(s\) \['tflit'\]"):
        main.run(bad, str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused")
    workdir = str(tmp_path / "run")
    rows = main.run(config, workdir)
    sizes = json.load(open(os.path.join(workdir, "export", "sizes.json")))
    assert [entry["format"] for entry in sizes] == (["keras"] if BACKEND == "torch" else ["keras", "tflite",
                                                                                          "tflite_int8"])
    for entry in sizes:
        assert entry["bytes"] == export.file_size(entry["path"])[0] and entry["max_abs_error"] <= entry["tolerance"]
        # Each file's test accuracy on the whole (64-example) test set, beside the float model's: a float file
        # flips at most one prediction; the int8 file moves the accuracy by at most 5 points.
        assert entry["test_examples"] == 64 and 0 <= entry["test_accuracy"] <= 1, entry
        allowed = 0.05 if entry["format"] == "tflite_int8" else 1 / 64
        assert abs(entry["test_accuracy"] - entry["float_accuracy"]) <= allowed, entry
    assert len({entry["float_accuracy"] for entry in sizes}) == 1
    assert sizes[0]["sparsity"] == rows[-1]["sparsity"]
    table = open(os.path.join(workdir, "export", "sizes.txt")).read()
    assert table.splitlines()[0].split()[:3] == ["format", "bytes", "gzip"]
    assert f"{sizes[-1]['gzip_bytes']:,d}" in table
    if BACKEND != "torch":
        with open(os.path.join(workdir, "export", "model.tflite"), "rb") as handle:
            assert handle.read(8)[4:8] == b"TFL3"  # a FlatBuffer with TFLite's identifier
    assert tfimp.front_end.of_process() == "keras3"


def test_the_cli_leaves_out_a_default_format_this_backend_cannot_write_and_says_so(tmp_path, monkeypatch, capsys):
    """What a PyTorch user's default run does (Keras 3 writes no SavedModel there), on any backend: here
    SavedModel and TFLite are made unwritable, and the shipped default exports ``.keras`` alone."""
    real = export.unavailable
    monkeypatch.setattr(export, "unavailable", lambda fmt, backend=None: "not here (test)" if fmt in (
        "savedmodel", "tflite") else real(fmt, backend))
    idx_files.make_idx_dataset(str(tmp_path / "idx"), n_train=256, n_test=64)
    config = tfimp_config.base()
    config.update(keras=3, data_dir=str(tmp_path / "idx"), train_subset=256, test_subset=64, batch_size=64,
                  dense_epochs=1, cycles=1, retrain_epochs=1, validation_fraction=0.25, chance_guard=False,
                  verbose=1, learning_rate=0.02)
    assert config.export_formats == "keras,savedmodel,tflite"  # the shipped default
    main.run(config, str(tmp_path / "run"))
    printed = capsys.readouterr().out
    assert ("[tfimp] the default export formats this backend cannot write are left out: "
            "savedmodel (not here (test)); tflite (not here (test))") in printed
    sizes = json.load(open(os.path.join(tmp_path, "run", "export", "sizes.json")))
    assert [entry["format"] for entry in sizes] == ["keras"]
    written = os.listdir(os.path.join(tmp_path, "run", "export"))
    assert "model.keras" in written and not any("tflite" in name or "saved" in name for name in written), written
