"""Export round trips: each format's predictions and sparsity, sizes, bad input."""

import os

import numpy as np
import pytest

import tfimp
from tfimp import export, keras, wrapping

import helpers
import tflite_files


@pytest.fixture(scope="module")
def pruned_model():
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(helpers.small_cnn(name="to_export"))
    tfimp.prune(model, 0.9)
    return model


def test_every_format_round_trips_with_predictions_and_sparsity(tmp_path, pruned_model):
    x, _ = helpers.random_data(6)
    calibration, _ = helpers.random_data(100, seed=1)
    files = export.export(pruned_model, str(tmp_path), formats=export.FORMATS, check_inputs=x,
                          representative_data=calibration)
    assert [f.format for f in files] == list(export.FORMATS)
    expected = pruned_model(x, training=False).numpy()
    for f in files:
        assert os.path.exists(f.path) and f.bytes > 0
        if not f.format.startswith("tflite"):
            # Read back here, independently of the check export itself makes.
            reloaded = keras.models.load_model(f.path, compile=False)
            assert float(abs(reloaded(x, training=False).numpy() - expected).max()) <= 1e-5, f.format
            assert f.sparsity == pytest.approx(tfimp.sparsity(pruned_model), abs=1e-12)
        assert f.dense_gzip_bytes > 0
    by_format = {f.format: f for f in files}
    # Sparse weights compress: the pruned .keras file gzips smaller than the dense reference.
    assert by_format["keras"].gzip_bytes < by_format["keras"].dense_gzip_bytes
    # TensorFlow Lite's sparsity optimisation stores fewer bytes than the dense float model.
    assert by_format["tflite"].bytes < by_format["tflite"].dense_bytes
    assert by_format["tflite_dynamic"].bytes < by_format["tflite_dynamic"].dense_bytes
    # The int8 file stores its zeros dense (a byte each): they show in the gzip size, not in the raw one.
    assert by_format["tflite_int8"].bytes == by_format["tflite_int8"].dense_bytes
    assert by_format["tflite_int8"].gzip_bytes < by_format["tflite_int8"].dense_gzip_bytes
    assert by_format["tflite_int8"].bytes < by_format["tflite"].dense_bytes / 2  # int8, not float32, weights
    table = export.size_table(files)
    assert "gzip gain" in table and "tflite_dynamic" in table
    assert all(f.test_accuracy is None and f.test_examples == 0 for f in files)  # no test data given


def test_the_int8_file_keeps_every_pruned_weight_zero_and_records_its_accuracy(tmp_path, pruned_model):
    x, y = helpers.random_data(300)
    calibration, _ = helpers.random_data(100, seed=1)
    files = export.export(pruned_model, str(tmp_path), formats=["keras", "savedmodel", "tflite", "tflite_int8"],
                          representative_data=calibration, test_data=(x, y), compare_dense=False)
    int8 = files[-1]
    weights = tflite_files.int8_weights(int8.path)
    layouts = {"conv": lambda m: np.moveaxis(m, -1, 0), "dense": lambda m: m.T}  # TFLite: output channels first
    covered = wrapping.covered_weights(pruned_model)
    assert len(covered) == 4
    for weight in covered:
        kind = "conv" if isinstance(weight.layer, keras.layers.Conv2D) else "dense"
        expected = layouts[kind](weight.mask.numpy()) == 0
        [stored] = weights[expected.shape]  # each kernel of the model has its own shape
        # Every pruned weight is an int8 zero, and (here) no surviving one rounded to zero.
        np.testing.assert_array_equal(stored == 0, expected, err_msg=weight.name)
    assert int8.sparsity == tfimp.sparsity(pruned_model)
    # Each file's accuracy is its own on the test set: the int8 file run here gives the recorded figure.
    stripped = tfimp.strip(pruned_model)
    float_accuracy = float(np.mean(stripped(x, training=False).numpy().argmax(1) == y))
    lite = tflite_files.outputs(int8.path, x)
    assert int8.test_accuracy == float(np.mean(lite.argmax(1) == y))
    for f in files:
        assert f.test_examples == 300 and f.float_accuracy == float_accuracy, f.format
        # Close: a float file flips at most one of the 300 predictions (near-ties, outputs within 1e-4); the
        # int8 file's quantised outputs (activations rounded too) move its accuracy by at most 5 points.
        assert abs(f.test_accuracy - float_accuracy) <= (0.05 if f.format == "tflite_int8" else 1 / 300), f
    row = next(line for line in export.size_table(files).splitlines() if line.startswith("tflite_int8"))
    assert row.split()[-2:] == [f"{int8.test_accuracy:.4f}", f"{float_accuracy:.4f}"]


def test_the_int8_format_needs_representative_data(tmp_path, pruned_model):
    with pytest.raises(ValueError, match=r"format\(s\) \['tflite_int8'\] calibrate on training inputs: pass "
                                         r"representative_data="):
        export.export(pruned_model, str(tmp_path), formats=["keras", "tflite_int8"])
    with pytest.raises(ValueError, match="representative_data="):
        export.export(pruned_model, str(tmp_path), formats=["tflite_int8"], representative_data=np.zeros((0, 8, 8, 3)))
    assert os.listdir(tmp_path) == []  # refused before any file was written


def test_bad_exports_are_clear_errors(tmp_path, pruned_model):
    with pytest.raises(ValueError, match=r"formats has unknown format\(s\) \['onnx'\]"):
        export.export(pruned_model, str(tmp_path), formats=["onnx"])
    with pytest.raises(ValueError, match="not a pruned model"):
        export.export(helpers.small_cnn(), str(tmp_path))
    with pytest.raises(ValueError, match="not pruned"):
        export.export(tfimp.wrap(helpers.small_cnn(name="dense")), str(tmp_path))
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        export.export(unbuilt, str(tmp_path))


_RELOAD_WITH_TF_KERAS_ONLY = r"""
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tf_keras
import tensorflow as tf
assert "tfimp" not in sys.modules and "tensorflow_model_optimization" not in sys.modules
x = np.load(sys.argv[3])
model = tf_keras.models.load_model(sys.argv[1], compile=False)
kernels = [w.numpy() for w in model.weights if "kernel" in w.name]
zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
interpreter = tf.lite.Interpreter(model_path=sys.argv[2])
interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
interpreter.invoke()
lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
np.save(sys.argv[4], np.stack([np.asarray(model(x, training=False)), lite]))
print(zeros)
"""


def test_exports_load_in_a_process_that_imports_only_tf_keras(tmp_path, pruned_model):
    import subprocess
    import sys

    import numpy as np

    x, _ = helpers.random_data(6)
    files = {f.format: f for f in export.export(pruned_model, str(tmp_path / "out"), formats=("keras", "tflite"),
                                                check_inputs=x, compare_dense=False)}
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "reload.py"
    script.write_text(_RELOAD_WITH_TF_KERAS_ONLY)
    result = subprocess.run([sys.executable, str(script), files["keras"].path, files["tflite"].path,
                             str(tmp_path / "x.npy"), str(tmp_path / "out.npy")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == tfimp.sparsity(pruned_model)  # the zeros survived
    keras_out, lite_out = np.load(tmp_path / "out.npy")
    expected = pruned_model(x, training=False).numpy()
    np.testing.assert_allclose(keras_out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lite_out, expected, rtol=1e-4, atol=1e-4)
