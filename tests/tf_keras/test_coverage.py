"""Coverage: every weight kind tfimp prunes, on the architectures users have; strip that always reloads."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tfimp
from tfimp import coverage, keras, wrapping
from tfimp.tf_keras import tfmot_glue

import helpers


def _names(model):
    return [k.name for k in wrapping.prunable_kernels(model)]


def _text_rnn_model():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="embed")(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True, name="lstm"), name="bi")(x)
    x = keras.layers.GRU(5, return_sequences=True, name="gru")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(4, name="td_dense"), name="td")(x)
    x = keras.layers.SimpleRNN(3, name="rnn")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="text_rnn")


@keras.utils.register_keras_serializable(package="tfimp_tests")
class TransformerBlock(keras.layers.Layer):
    """keras.io's text-classification block: layers held as attributes of a custom layer."""

    def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim = embed_dim, num_heads, ff_dim
        self.att = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([keras.layers.Dense(ff_dim, activation="relu"), keras.layers.Dense(embed_dim)])
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.unused = keras.layers.Conv1D(3, 1)  # created, never called

    def call(self, inputs, training=None):
        out1 = self.norm1(inputs + self.att(inputs, inputs, training=training))
        return self.norm2(out1 + self.ffn(out1, training=training))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim}


def _transformer_model():
    inputs = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(40, 8, name="tokens")(inputs)
    x = TransformerBlock(8, 2, 16, name="block")(x)
    x = keras.layers.MultiHeadAttention(2, 4, name="top_attention")(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="transformer")


def _tokens(n, length, vocabulary, seed=0):
    return np.random.default_rng(seed).integers(0, vocabulary, size=(n, length)).astype("int32")


def test_embedding_and_recurrent_weights_are_wrapped_and_pruned_exactly():
    model = tfimp.wrap(_text_rnn_model())
    assert _names(model) == ["embed", "bi/forward_layer/kernel", "bi/forward_layer/recurrent_kernel",
                             "bi/backward_layer/kernel", "bi/backward_layer/recurrent_kernel",
                             "gru/kernel", "gru/recurrent_kernel", "td", "rnn/kernel", "rnn/recurrent_kernel", "head"]
    report = coverage.describe(model)
    assert report.dense_matrix_parameters == 0
    total = sum(k.size for k in wrapping.prunable_kernels(model))
    assert report.prunable_parameters == total
    tfimp.prune(model, 0.9)
    assert sum(int(np.count_nonzero(k.mask.numpy() == 0)) for k in wrapping.prunable_kernels(model)) == round(0.9 * total)
    x, y = _tokens(32, 12, 50), np.random.default_rng(1).integers(0, 2, 32)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for kernel in wrapping.prunable_kernels(model):
        assert not np.any(kernel.weight.numpy()[kernel.mask.numpy() == 0]), kernel.name


def test_kinds_choose_what_is_pruned_and_what_stays_dense_is_warned():
    with pytest.warns(UserWarning, match=r"stay dense \(largest: Embedding"):
        model = tfimp.wrap(_text_rnn_model(), kinds=["dense", "rnn"])
    assert "embed" not in _names(model) and isinstance(model.get_layer("embed"), keras.layers.Embedding)
    report = coverage.describe(model)
    assert report.dense_matrices_by_type == {"Embedding": 50 * 8}
    with pytest.raises(ValueError, match=r"unknown weight kinds \['lstm'\]"):
        tfimp.wrap(_text_rnn_model(), kinds=["lstm"])


def test_wrap_verbose_prints_what_is_pruned_and_dense(capsys):
    tfimp.wrap(_text_rnn_model(), verbose=1)
    out = capsys.readouterr().out
    assert "prunable" in out and "Embedding ×1 (400)" in out and "Bidirectional ×1" in out


def test_transformer_with_custom_block_prunes_attention_and_reloads_in_a_fresh_process(tmp_path):
    model = _transformer_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = tfimp.wrap(model)
    names = _names(wrapped)
    assert names[0] == "tokens"
    block = wrapped.get_layer("block")
    assert f"block/{block.att.layer.name}/query_dense/kernel" in names
    assert f"block/{block.ffn.name}/{block.ffn.layers[0].layer.name}" in names
    assert "top_attention/output_dense/kernel" in names
    assert not any(block.unused.name in name for name in names)  # never called: left out, and said so
    assert not any("stay dense" in str(w.message) for w in caught)
    x = _tokens(16, 10, 40)
    tfimp.prune(wrapped, 0.8, min_kept_per_layer=0.05)  # untrained: the small embedding init would go first
    total = sum(k.size for k in wrapping.prunable_kernels(wrapped))
    wrapped.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    wrapped.fit(x, np.arange(16) % 2, batch_size=4, epochs=1, verbose=0)
    stripped = tfimp.strip(wrapped)
    assert not wrapping.wrappers(stripped)
    assert tfimp.sparsity(stripped) == pytest.approx(round(0.8 * total) / total, abs=0.5 / total)
    # tf_keras' SavedModel does not restore a MultiHeadAttention held inside a custom layer even without
    # tfimp (its projections are built lazily, after the checkpoint is read): .keras and h5 here.
    errors = _reload_errors_in_fresh_process(stripped, x, tmp_path, ("keras", "h5"))
    assert all(error <= 1e-6 for error in errors.values()), errors


@keras.utils.register_keras_serializable(package="tfimp_tests")
class DenseBlock(keras.layers.Layer):
    """A custom layer holding layers in an attribute and in a list."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.first = keras.layers.Dense(units, activation="relu")
        self.rest = [keras.layers.Dense(units), keras.layers.Dense(units)]

    def call(self, x):
        x = self.first(x)
        for layer in self.rest:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_recurrent_model_with_a_custom_block_reloads_in_every_format(tmp_path):
    inputs = keras.Input((12,), dtype="int32")
    features = _text_rnn_model()(inputs)
    outputs = keras.layers.Dense(2, name="out")(DenseBlock(4, name="custom")(features))
    wrapped = tfimp.wrap(keras.Model(inputs, outputs))
    assert any(name.startswith("custom/") for name in _names(wrapped))
    tfimp.prune(wrapped, 0.7)
    x = _tokens(8, 12, 50)
    stripped = tfimp.strip(wrapped)
    errors = _reload_errors_in_fresh_process(stripped, x, tmp_path, ("keras", "h5", "savedmodel"))
    assert all(error <= 1e-6 for error in errors.values()), errors


def _reload_errors_in_fresh_process(model, x, tmp_path, formats):
    """Saves ``model`` in each format and loads it in a new process with plain tf_keras (and this file's classes)."""
    names = {"keras": "m.keras", "h5": "m.h5", "savedmodel": "saved"}
    paths = {fmt: str(tmp_path / names[fmt]) for fmt in formats}
    for path in paths.values():
        model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model(x, training=False).numpy())
    script = textwrap.dedent(f"""
        import os, sys, json
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(__file__))!r}]
        import numpy as np
        import tf_keras
        import test_coverage  # registers the user's own classes (TransformerBlock, DenseBlock)
        x = np.load({str(tmp_path / "x.npy")!r}); expected = np.load({str(tmp_path / "expected.npy")!r})
        errors = {{}}
        for fmt, path in {paths!r}.items():
            loaded = tf_keras.models.load_model(path, compile=False)
            assert not any("prune" in type(layer).__name__.lower() for layer in loaded._flatten_layers())
            errors[fmt] = float(np.max(np.abs(np.asarray(loaded(x, training=False)) - expected)))
        print(json.dumps(errors))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(errors) == set(formats)
    return errors


def test_strip_removes_wrappers_inside_custom_layers_in_their_order():
    model = _transformer_model()
    before = [tuple(w.shape) for w in model.get_layer("block").weights]
    wrapped = tfimp.wrap(model)
    stripped = tfimp.strip(wrapped)
    block = stripped.get_layer("block")
    assert isinstance(block.att, keras.layers.MultiHeadAttention) and not hasattr(block.att, "get_prunable_weights")
    assert [type(layer) for layer in block.ffn.layers] == [keras.layers.Dense, keras.layers.Dense]
    assert [tuple(w.shape) for w in block.weights] == before  # h5 files are read in this order


def test_strip_raises_naming_a_wrapper_it_cannot_reach():
    class Hidden(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._dense = keras.layers.Dense(3)  # private: tfimp neither wraps nor strips it

        def call(self, x):
            return self._dense(x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(Hidden(name="hidden")(inputs)))
    wrapped = tfimp.wrap(model)
    hidden = wrapped.get_layer("hidden")
    object.__setattr__(hidden, "_dense", tfmot_glue.PolicyPruneLowMagnitude(hidden._dense))
    hidden._track_trackable(hidden._dense, name="_dense_wrapped")
    hidden._self_tracked_trackables.append(hidden._dense)
    with pytest.raises(ValueError, match="could not remove the pruning wrapper of layer 'hidden/dense"):
        tfimp.strip(wrapped)


def test_layer_names_with_slashes_are_reported_as_they_are():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1/conv")(inputs)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    wrapped = tfimp.wrap(keras.Model(inputs, outputs))
    assert list(tfimp.prune(wrapped, 0.5)) == ["conv1/conv", "head"]
    assert list(tfimp.layer_sparsity(wrapped)) == ["conv1/conv", "head"]


def test_depthwise_separable_conv1d3d_transpose_einsum_are_covered():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    x = keras.layers.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(x)
    x = keras.layers.Reshape((16 * 16, 4))(x)
    x = keras.layers.Conv1D(4, 3, name="c1")(x)
    x = keras.layers.SeparableConv1D(4, 3, name="sep1")(x)
    x = keras.layers.Reshape((2, 9, 14, 4))(x[:, :2 * 9 * 14])
    x = keras.layers.Conv3D(2, 1, name="c3")(x)
    x = keras.layers.Conv3DTranspose(2, 1, name="c3t")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.EinsumDense("ab,bc->ac", output_shape=3, name="einsum")(x)
    model = tfimp.wrap(keras.Model(inputs, outputs))
    kinds = {w.name: w.kind for w in wrapping.covered_weights(model)}
    assert kinds == {"dw": "depthwise", "sep/depthwise_kernel": "depthwise", "sep/pointwise_kernel": "conv",
                     "up": "conv", "c1": "conv", "sep1/depthwise_kernel": "depthwise",
                     "sep1/pointwise_kernel": "conv", "c3": "conv", "c3t": "conv", "einsum": "dense"}
    tfimp.prune(model, 0.75)
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.75)


def test_sparsity_over_all_parameters_counts_every_zero():
    model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.5)
    masked = sum(int(np.count_nonzero(k.mask.numpy() == 0)) for k in wrapping.prunable_kernels(model))
    all_params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    zero_biases = sum(int(np.count_nonzero(v.numpy() == 0)) for v in model.trainable_weights if len(v.shape) == 1)
    assert tfimp.sparsity(model, over="all") == (masked + zero_biases) / all_params
    with pytest.raises(ValueError, match="over must be one of"):
        tfimp.sparsity(model, over="everything")


def test_collapse_is_warned_and_the_guard_keeps_a_minimum_exactly():
    inputs = keras.Input((20,))
    x = keras.layers.Dense(10, name="big", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(inputs)
    outputs = keras.layers.Dense(4, name="small", kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3))(x)
    model = tfimp.wrap(keras.Model(inputs, outputs))
    with pytest.warns(UserWarning, match=r"removed every weight of 1 layers: \['small'\]"):
        per_layer = tfimp.prune(model, 0.3)
    assert tfimp.pruning.emptied_layers(per_layer) == ["small"]

    guarded = tfimp.wrap(keras.Model(inputs, outputs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_layer = tfimp.prune(guarded, 0.3, min_kept_per_layer=0.25)
    kernels = {k.name: k for k in wrapping.prunable_kernels(guarded)}
    kept_small = int(np.count_nonzero(kernels["small"].mask.numpy()))
    assert kept_small == 10  # ceil(0.25 * 40): the guard's minimum, and no more
    assert sum(int(np.count_nonzero(k.mask.numpy() == 0)) for k in kernels.values()) == round(0.3 * 240)
    # the weights "small" keeps are its largest ones
    small = np.abs(kernels["small"].weight.numpy())
    kept = small[kernels["small"].mask.numpy() != 0]
    assert kept.min() >= np.sort(small.ravel())[-10]
    with pytest.raises(ValueError, match="at most sparsity"):
        tfimp.prune(tfimp.wrap(keras.Model(inputs, outputs)), 0.95, min_kept_per_layer=0.5)


def test_capped_selection_matches_a_brute_force_water_filling():
    rng = np.random.default_rng(3)
    scores = [rng.normal(size=s) for s in (50, 30, 20)]
    caps = [10, 30, 20]
    chosen = tfimp.selection.select_lowest_capped(scores, 40, caps)
    counts = [int(np.count_nonzero(c)) for c in chosen]
    assert sum(counts) == 40 and counts[0] == 10
    # brute force: the 10 lowest of array 0, then the 30 lowest of the rest together
    rest = np.concatenate(scores[1:])
    threshold = np.sort(rest)[29]
    assert counts[1] + counts[2] == 30
    assert all(np.all(s[c] <= threshold) for s, c in zip(scores[1:], chosen[1:]))
    assert np.all(scores[0][chosen[0]] <= np.sort(scores[0])[9])


def _collapsing_model():
    inputs = keras.Input((20,))
    x = keras.layers.Dense(10, name="big", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(inputs)
    outputs = keras.layers.Dense(4, name="small", kernel_initializer=keras.initializers.RandomNormal(stddev=1e-4))(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("guard", [None, 0.25])
def test_imp_rows_record_emptied_layers_and_the_plan_guard_prevents_them(tmp_path, guard, capsys):
    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    y = np.argmax(x[:, :4], axis=1)  # learnable: the chance-level guard has nothing to say
    # A rate so low that "small" stays tiny through the dense epoch (and the loss near chance: guard off).
    imp = tfimp.IMP(target_sparsity=0.3, cycles=1, dense_epochs=1, retrain_epochs=1, min_kept_per_layer=guard,
                    learning_rate=1e-4, batch_size=16, chance_guard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = imp.run(_collapsing_model(), (x, y), workdir=str(tmp_path / "run"), verbose=1)
    saved = json.loads((tmp_path / "run" / "cycle_1" / "row.json").read_text())
    if guard is None:
        assert rows[-1]["emptied_layers"] == saved["emptied_layers"] == ["small"]
        assert any("emptied 1 layers (layer collapse): ['small']" in str(w.message) for w in caught)
        assert "cycle 1 emptied 1 layers" in capsys.readouterr().out
    else:
        assert rows[-1]["emptied_layers"] == saved["emptied_layers"] == []
        small = [k for k in wrapping.prunable_kernels(imp.model) if k.name == "small"][0]
        assert int(np.count_nonzero(small.mask.numpy())) == 10
        assert json.loads((tmp_path / "run" / "identity.json").read_text())["plan"]["min_kept_per_layer"] == 0.25


def test_a_run_at_chance_level_stops_with_a_clear_error_unless_the_guard_is_off(tmp_path):
    from tfimp import guards

    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    y = np.arange(64) % 4  # balanced: a dead network's loss is exactly ln 4

    def dead():  # every ReLU unit dead from the start: only the output bias learns
        inputs = keras.Input((20,))
        hidden = keras.layers.Dense(8, activation="relu", bias_initializer=keras.initializers.Constant(-100.0),
                                    name="hidden")(inputs)
        return keras.Model(inputs, keras.layers.Dense(4, name="out")(hidden))

    imp = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=2, retrain_epochs=1, learning_rate=0.05,
                    batch_size=16, weight_decay=0.0)
    with pytest.raises(guards.ChanceLevelError, match=r"chance level through epoch \d.*ln\(4\) = 1.3863.*learning rate"):
        imp.run(dead(), (x, y), workdir=str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run" / "cycle_1").exists()  # no pruning step ran on it
    rows = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=2, retrain_epochs=1, learning_rate=0.05,
                     batch_size=16, weight_decay=0.0, chance_guard=False).run(dead(), (x, y), verbose=0)
    assert len(rows) == 2
    with pytest.raises(guards.ChanceLevelError):
        tfimp.Dense(epochs=3, learning_rate=0.05, batch_size=16, weight_decay=0.0).run(dead(), (x, y), verbose=0)
    # a network that learns is never stopped
    learnable = np.argmax(x[:, :4], axis=1)
    learning = tfimp.Dense(epochs=3, learning_rate=0.05, batch_size=16).run(_collapsing_model(), (x, learnable),
                                                                             verbose=0)
    assert len(learning) == 1


@keras.utils.register_keras_serializable(package="tfimp_tests")
class ScaledDense(keras.layers.Layer):
    """A user's own layer type with its own kernel (no sublayers)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", shape=(int(input_shape[-1]), self.units))
        self.scale = self.add_weight("scale", shape=(), initializer="ones")

    def call(self, x):
        return self.scale * tfimp.tf.matmul(x, self.kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_a_registered_layer_type_is_pruned_and_strips_to_a_loadable_model(tmp_path):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, ScaledDense(4, name="scaled")(inputs))
    with pytest.raises(ValueError, match="nothing to prune"):
        tfimp.wrap(model)
    coverage.register(ScaledDense, {"kernel": "dense"})
    try:
        wrapped = tfimp.wrap(model)
        assert _names(wrapped) == ["scaled"]
        tfimp.prune(wrapped, 0.5)
        assert int(np.count_nonzero(wrapping.prunable_kernels(wrapped)[0].mask.numpy() == 0)) == 12
        stripped = tfimp.strip(wrapped)
        stripped.save(str(tmp_path / "m.keras"))
        loaded = keras.models.load_model(str(tmp_path / "m.keras"))
        assert isinstance(loaded.get_layer("scaled"), ScaledDense)
        assert int(np.count_nonzero(loaded.get_layer("scaled").kernel.numpy() == 0)) == 12
    finally:
        tfimp.tf_keras.layer_specs._REGISTRY.unregister(ScaledDense)
