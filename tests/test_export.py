"""Export round trips: each format's predictions and sparsity, sizes, bad input."""

import os

import pytest

import tfimp
from tfimp import export, keras

import helpers


@pytest.fixture(scope="module")
def pruned_model():
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(helpers.small_cnn(name="to_export"))
    tfimp.prune(model, 0.9)
    return model


def test_every_format_round_trips_with_predictions_and_sparsity(tmp_path, pruned_model):
    x, _ = helpers.random_data(6)
    files = export.export(pruned_model, str(tmp_path), formats=export.FORMATS, check_inputs=x)
    assert [f.format for f in files] == list(export.FORMATS)
    for f in files:
        assert os.path.exists(f.path) and f.bytes > 0 and f.max_abs_error <= f.tolerance
        if not f.format.startswith("tflite"):
            assert f.sparsity == pytest.approx(tfimp.sparsity(pruned_model), abs=1e-12)
        assert f.dense_gzip_bytes > 0
    by_format = {f.format: f for f in files}
    # Sparse weights compress: the pruned .keras file gzips smaller than the dense reference.
    assert by_format["keras"].gzip_bytes < by_format["keras"].dense_gzip_bytes
    # TensorFlow Lite's sparsity optimisation stores fewer bytes than the dense float model.
    assert by_format["tflite"].bytes < by_format["tflite"].dense_bytes
    assert by_format["tflite_dynamic"].bytes < by_format["tflite_dynamic"].dense_bytes
    table = export.size_table(files)
    assert "gzip gain" in table and "tflite_dynamic" in table


def test_bad_exports_are_clear_errors(tmp_path, pruned_model):
    with pytest.raises(ValueError, match=r"unknown export format\(s\) \['onnx'\]"):
        export.export(pruned_model, str(tmp_path), formats=["onnx"])
    with pytest.raises(ValueError, match="not a pruned model"):
        export.export(helpers.small_cnn(), str(tmp_path))
    with pytest.raises(ValueError, match="not pruned"):
        export.export(tfimp.wrap(helpers.small_cnn(name="dense")), str(tmp_path))
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        export.export(unbuilt, str(tmp_path))
