"""FLOPs and parameter report against a hand count."""

import json

import numpy as np
import pytest

import tfimp
from tfimp import keras, report


def _net():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)           # 8x8 out
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", name="conv_b")(x)     # 3x3 out
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="fc")(x)                                    # 54 -> 5
    return keras.Model(inputs, outputs)


def test_macs_and_parameters_match_a_hand_count():
    model = tfimp.wrap(_net())
    dense = report.model_report(model)
    # conv_a: 3*3*3*4 = 108 weights x 64 positions; conv_b: 3*3*4*6 = 216 x 9; fc: 54*5 = 270 x 1
    assert [layer.dense_macs for layer in dense.layers] == [108 * 64, 216 * 9, 270]
    assert dense.total_parameters == 108 + 4 + 216 + 6 + 270 + 5
    assert dense.speedup == 1.0 and dense.compression == 1.0

    tfimp.prune(model, 0.5, criterion="uniform")
    sparse = report.model_report(model)
    nonzero = [54, 108, 135]  # half of each layer (uniform)
    assert [layer.sparse_macs for layer in sparse.layers] == [54 * 64, 108 * 9, 135]
    assert sparse.speedup == pytest.approx((108 * 64 + 216 * 9 + 270) / (54 * 64 + 108 * 9 + 135))
    assert sparse.compression == pytest.approx(609 / (609 - (108 + 216 + 270) + sum(nonzero)))
    # The stripped model reports the same.
    stripped = report.model_report(tfimp.strip(model))
    assert stripped.sparse_macs == sparse.sparse_macs and stripped.compression == pytest.approx(sparse.compression)
    assert "theoretical speed-up" in sparse.table()
    assert '"speedup"' in sparse.to_json()


def test_unbuilt_model_is_an_error():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        report.model_report(model)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.convs = [keras.layers.Conv2D(4, 3, padding="same", name="conv_a"),
                      keras.layers.Conv2D(6, 3, strides=2, padding="valid", name="conv_b")]
        self.head = {"fc": keras.layers.Dense(5, name="fc")}
        self.flatten = keras.layers.Flatten()

    def call(self, x):
        for conv in self.convs:
            x = conv(x)
        return self.head["fc"](self.flatten(x))


def _sequential():
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", name="conv_a"),
                             keras.layers.Conv2D(6, 3, strides=2, padding="valid", name="conv_b"),
                             keras.layers.Flatten(), keras.layers.Dense(5, name="fc")])


def _nested():
    inputs = keras.Input((8, 8, 3))
    inner = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs), name="inner")
    outer_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", name="conv_b")(inner(outer_in))
    return keras.Model(outer_in, keras.layers.Dense(5, name="fc")(keras.layers.Flatten()(x)))


def _subclassed():
    model = _Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))  # subclassed: built by a call
    return model


@pytest.mark.parametrize("build", [_net, _sequential, _nested, _subclassed],
                         ids=["functional", "sequential", "nested", "subclassed"])
def test_the_report_counts_every_model_kind_wrap_supports(build):
    model = tfimp.wrap(build())
    tfimp.prune(model, 0.5, criterion="uniform")
    counted = report.model_report(model)
    assert sorted(layer.dense_macs for layer in counted.layers) == sorted([108 * 64, 216 * 9, 270])
    assert sorted(layer.sparse_macs for layer in counted.layers) == sorted([54 * 64, 108 * 9, 135])
    assert counted.total_parameters == 609


def test_a_report_survives_its_json():
    model = tfimp.wrap(_net())
    tfimp.prune(model, 0.7)
    original = report.model_report(model)
    again = report.ModelReport.from_dict(json.loads(original.to_json()))
    assert again.to_dict() == original.to_dict()
    assert again.table() == original.table()


def test_the_cycle_reporter_uses_the_report_the_runner_wrote(tmp_path, monkeypatch):
    """The CLI's reporter reads cycle_N/report.json instead of tracing the model a second time."""
    model = tfimp.wrap(_net())
    tfimp.prune(model, 0.5)
    saved = report.model_report(model)
    saved.layers[0].sparse_macs = 1  # a value only the saved file can hold
    cycle = tmp_path / "cycle_1"
    cycle.mkdir()
    (cycle / "report.json").write_text(saved.to_json())
    monkeypatch.setattr(report, "model_report", lambda model: pytest.fail("the report was computed again"))
    printed = []
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: printed.append(" ".join(map(str, args))))
    report.CycleReporter(str(tmp_path), verbose=1)(model, {"cycle": 1, "sparsity": 0.5})
    assert saved.table() in printed[0]
