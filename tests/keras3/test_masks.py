"""Masks on Keras 3: exact counts, zeros that survive any fit, coverage, saving, stripping, dispatch."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfimp
from tfimp.keras3 import masks
from tfimp.keras3.wrapper import MaskedLayer

import k3_helpers as h

BACKEND = keras.backend.backend()


def test_the_process_is_a_keras3_process_and_the_names_are_keras3s():
    assert tfimp.front_end.of_process() == "keras3"
    assert tfimp.callbacks.__name__ == "tfimp.keras3.callbacks"
    assert tfimp.optimizers.TorchSGD.__module__ == "tfimp.keras3.optimizers"
    assert "tf_keras" not in sys.modules and "tfimp.tf_keras._backend" not in sys.modules
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    # The framework-free table and plot serve Keras 3 under the same names, loading nothing of tf_keras.
    assert tfimp.results.format_table is tfimp.core.results.format_table and callable(tfimp.plots.accuracy_vs_sparsity)
    assert "tf_keras" not in sys.modules and "tfimp.tf_keras._backend" not in sys.modules
    with pytest.raises(AttributeError, match="tf_keras front end.*Keras 3"):
        tfimp.distribute  # noqa: B018
    assert tfimp.DuringTraining.__module__ == "tfimp.keras3.baselines"
    assert tfimp.use_keras(3) is keras and tfimp.keras_of_process() is keras
    with pytest.raises(ValueError, match="this process already uses keras3, not tf_keras"):
        tfimp.use_keras(2)


def test_wrap_copies_a_functional_model_and_prune_is_exact():
    model = h.small_cnn()
    before = [w.copy() for w in model.get_weights()]
    wrapped = tfimp.wrap(model)
    assert [type(layer) for _, layer in masks.wrappers(wrapped)] == [MaskedLayer] * 3
    result = tfimp.prune(wrapped, 0.9)
    kernels = masks.prunable_kernels(wrapped)
    total = sum(k.size for k in kernels)
    pruned = sum(int(np.sum(h.numpy_of(k.mask) == 0)) for k in kernels)
    assert pruned == round(0.9 * total)
    assert set(result) == {"conv", "fc1", "fc2"}
    assert tfimp.sparsity(wrapped) == pruned / total
    for w, b in zip(model.get_weights(), before):  # the model passed in is untouched
        np.testing.assert_array_equal(w, b)
    # Pruned first: the smallest magnitudes of all kernels together.
    values = np.concatenate([np.abs(h.numpy_of(k.weight)).ravel() for k in kernels])
    alive = np.concatenate([h.numpy_of(k.mask).ravel() for k in kernels]) != 0
    assert values[~alive].max() <= values[alive & (values > 0)].min()


def test_pruning_is_monotone_and_never_revives():
    wrapped = tfimp.wrap(h.mlp())
    tfimp.prune(wrapped, 0.5)
    first = [h.numpy_of(k.mask) for k in masks.prunable_kernels(wrapped)]
    tfimp.prune(wrapped, 0.8)
    second = [h.numpy_of(k.mask) for k in masks.prunable_kernels(wrapped)]
    assert all(np.all(b[a == 0] == 0) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="already"):
        tfimp.prune(wrapped, 0.3)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        tfimp.prune(wrapped, 1.0)


@pytest.mark.parametrize("optimizer", ["sgd_nesterov", "adam", "adamw", "torch_sgd"])
def test_pruned_weights_stay_exactly_zero_through_fit(optimizer):
    x, y = h.classification_data()
    wrapped = tfimp.wrap(h.small_cnn())
    make = {"sgd_nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
            "adam": lambda: keras.optimizers.Adam(1e-2),
            "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
            "torch_sgd": lambda: tfimp.optimizers.TorchSGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)}
    h.compile_for_classes(wrapped, make[optimizer]())
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0)  # the optimizer's state is warm when pruning happens
    tfimp.prune(wrapped, 0.9)
    wrapped.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert h.pruned_but_nonzero(wrapped) == 0
    zeros = sum(int(np.sum(h.numpy_of(k.weight) == 0)) for k in masks.prunable_kernels(wrapped))
    assert zeros >= round(0.9 * sum(k.size for k in masks.prunable_kernels(wrapped)))


def test_prune_zeroes_the_optimizer_slots_at_pruned_positions():
    x, y = h.classification_data()
    wrapped = h.compile_for_classes(tfimp.wrap(h.mlp(inputs=192)), keras.optimizers.Adam(1e-2))
    wrapped.fit(x.reshape(len(x), -1), y, batch_size=32, epochs=1, verbose=0)
    optimizer = wrapped.optimizer
    kernel = masks.prunable_kernels(wrapped)[0]
    slots = tfimp.keras3._private.slot_variables(optimizer, kernel.weight)
    assert len(slots) == 2 and all(np.count_nonzero(h.numpy_of(s)) > 0 for s in slots)  # Adam's two moments
    tfimp.prune(wrapped, 0.7)
    dead = h.numpy_of(kernel.mask) == 0
    for slot in slots:
        assert np.count_nonzero(h.numpy_of(slot)[dead]) == 0
        assert np.count_nonzero(h.numpy_of(slot)[~dead]) > 0


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_zeros(policy):
    if BACKEND == "torch" and policy == "mixed_float16":
        pytest.skip("float16 matmul on the torch CPU backend")
    keras.config.set_dtype_policy(policy)
    x, y = h.classification_data()
    wrapped = h.compile_for_classes(tfimp.wrap(h.small_cnn()), keras.optimizers.SGD(0.05, momentum=0.9))
    assert wrapped.layers[1].dtype_policy.name == policy
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0)
    tfimp.prune(wrapped, 0.8)
    wrapped.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert h.pruned_but_nonzero(wrapped) == 0
    assert np.isfinite(wrapped.predict(x[:8], verbose=0)).all()


def test_every_covered_layer_type_is_wrapped_pruned_and_stripped(tmp_path):
    tokens = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(50, 8, name="embedding")(tokens)
    attended = keras.layers.MultiHeadAttention(2, 4, name="attention")(embedded, embedded)
    recurrent = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bilstm")(attended)
    recurrent = keras.layers.GRU(4, return_sequences=True, name="gru")(recurrent)
    recurrent = keras.layers.TimeDistributed(keras.layers.Dense(3), name="per_step")(recurrent)
    projected = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), name="einsum")(recurrent)
    image = keras.layers.Reshape((6, 5, 1))(projected)
    image = keras.layers.Conv2D(2, 2, name="conv")(image)
    image = keras.layers.DepthwiseConv2D(2, name="depthwise")(image)
    image = keras.layers.SeparableConv2D(2, 2, name="separable")(image)
    image = keras.layers.Conv2DTranspose(2, 2, name="transpose")(image)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(image))
    model = keras.Model(tokens, outputs)
    wrapped = tfimp.wrap(model)
    names = set(tfimp.layer_sparsity(wrapped))
    assert names == {"embedding", "attention/query_dense/kernel", "attention/key_dense/kernel",
                     "attention/value_dense/kernel", "attention/output_dense/kernel",
                     "bilstm/forward_layer/kernel", "bilstm/forward_layer/recurrent_kernel",
                     "bilstm/backward_layer/kernel", "bilstm/backward_layer/recurrent_kernel",
                     "gru/kernel", "gru/recurrent_kernel", "per_step", "einsum", "conv", "depthwise",
                     "separable/depthwise_kernel", "separable/pointwise_kernel", "transpose", "head"}
    tfimp.prune(wrapped, 0.75)
    kernels = masks.prunable_kernels(wrapped)
    assert sum(int(np.sum(h.numpy_of(k.mask) == 0)) for k in kernels) == round(0.75 * sum(k.size for k in kernels))
    x = np.random.default_rng(0).integers(0, 50, size=(4, 6)).astype("int32")
    stripped = tfimp.strip(wrapped)
    assert not masks.wrappers(stripped)
    assert tfimp.sparsity(stripped) == tfimp.sparsity(wrapped)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_kinds_and_exclude_choose_what_is_wrapped():
    wrapped = tfimp.wrap(h.small_cnn(), kinds=["dense"])
    assert set(tfimp.layer_sparsity(wrapped)) == {"fc1", "fc2"}
    wrapped = tfimp.wrap(h.small_cnn(), exclude=["fc2"])
    assert set(tfimp.layer_sparsity(wrapped)) == {"conv", "fc1"}
    with pytest.raises(ValueError, match="not in the model"):
        tfimp.wrap(h.small_cnn(), exclude=["nope"])
    with pytest.raises(ValueError, match="unknown weight kinds"):
        tfimp.wrap(h.small_cnn(), kinds=["bias"])
    with pytest.raises(ValueError, match="not wrapped"):
        tfimp.prune(h.small_cnn(), 0.5)


class _Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(6, name="inner")
        self.stack = [keras.layers.Dense(6, name="stack0"), keras.layers.Dense(6, name="stack1")]

    def call(self, x):
        x = self.inner(x)
        for layer in self.stack:
            x = layer(x)
        return x


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.block = _Block(name="block")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x):
        return self.head(self.block(x))


def test_a_subclassed_model_is_wrapped_in_place_trained_and_stripped():
    model = _Subclassed()
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 64).astype("int32")
    model(x[:1])
    wrapped = tfimp.wrap(model)
    assert wrapped is model
    assert set(tfimp.layer_sparsity(model)) == {"block/inner", "block/stack0", "block/stack1", "head"}
    tfimp.prune(model, 0.6)
    h.compile_for_classes(model, keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert h.pruned_but_nonzero(model) == 0
    expected = model.predict(x, verbose=0)
    stripped = tfimp.strip(model)
    assert not masks.wrappers(stripped) and isinstance(stripped.block.stack[0], keras.layers.Dense)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert tfimp.sparsity(stripped) == pytest.approx(0.6, abs=0.01)  # zeros counted in the plain layers


def test_wrapped_model_saves_and_loads_with_its_masks(tmp_path):
    x, _ = h.classification_data(16)
    wrapped = tfimp.wrap(h.small_cnn())
    tfimp.prune(wrapped, 0.85)
    path = str(tmp_path / "wrapped.keras")
    wrapped.save(path)
    loaded = tfimp.load_model(path)
    assert [k.name for k in masks.prunable_kernels(loaded)] == [k.name for k in masks.prunable_kernels(wrapped)]
    for a, b in zip(masks.prunable_kernels(loaded), masks.prunable_kernels(wrapped)):
        np.testing.assert_array_equal(h.numpy_of(a.mask), h.numpy_of(b.mask))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), wrapped.predict(x, verbose=0))


_LOAD_WITHOUT_TFIMP = """
import sys, numpy as np, keras
sys.modules["tfimp"] = None  # tfimp cannot be imported here
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
print(sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0)) for v in model.trainable_weights))
"""


def test_a_stripped_model_loads_on_another_backend_without_tfimp(tmp_path):
    x, _ = h.classification_data(16)
    wrapped = tfimp.wrap(h.small_cnn())
    tfimp.prune(wrapped, 0.9)
    stripped = tfimp.strip(wrapped)
    path = str(tmp_path / "stripped.keras")
    stripped.save(path)
    np.save(tmp_path / "x.npy", x)
    other = "tensorflow" if BACKEND == "jax" else "jax"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env["KERAS_BACKEND"] = other
    done = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TFIMP, path, str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    zeros = sum(int(np.sum(h.numpy_of(v) == 0)) for v in stripped.trainable_weights)
    assert int(done.stdout.strip().splitlines()[-1]) == zeros
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), stripped.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("criterion", ["lamp", "uniform", "uniform_plus", "erk"])
def test_every_criterion_gives_the_cores_exact_counts(criterion):
    wrapped = tfimp.wrap(h.small_cnn())
    kernels = masks.prunable_kernels(wrapped)
    expected = tfimp.core.masking.select_masks(
        [k.name for k in kernels], [h.numpy_of(k.weight) for k in kernels], [h.numpy_of(k.mask) for k in kernels],
        0.8, criterion)
    result = tfimp.prune(wrapped, 0.8, criterion)
    assert result == expected.layer_sparsities
    for kernel, keep in zip(kernels, expected.keep):
        np.testing.assert_array_equal(h.numpy_of(kernel.mask), keep)


class _Scaled(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1], 3), name="scale")

    def call(self, x):
        return keras.ops.matmul(x, self.scale)


def test_a_registered_layer_type_is_pruned_and_verbose_reports_coverage(capsys):
    tfimp.coverage.register(_Scaled, {"scale": "dense"})
    try:
        inputs = keras.Input((5,))
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(_Scaled(name="scaled")(inputs)))
        wrapped = tfimp.wrap(model, verbose=1)
        assert "tfimp.wrap: 21 of 23 parameters (91.3%) are prunable" in capsys.readouterr().out
        result = tfimp.prune(wrapped, 0.5)
        assert set(result) == {"scaled", "head"}
        kernels = masks.prunable_kernels(wrapped)
        values = np.concatenate([np.abs(h.numpy_of(k.weight)).ravel() for k in kernels])
        dead = np.concatenate([h.numpy_of(k.mask).ravel() for k in kernels]) == 0
        assert dead.sum() == tfimp.criteria.round_count(0.5, 21) and dead[:15].sum() == result["scaled"] * 15
        assert values[dead].max() == 0 and values[~dead].min() > 0  # pruned ones zeroed, the others alive
    finally:
        tfimp.keras3.layer_specs._REGISTRY.unregister(_Scaled)
    with pytest.raises(TypeError, match="Keras 3 layer class"):
        tfimp.coverage.register(object, {"x": "dense"})


def test_the_explicit_form_names_the_keras3_front_end():
    from tfimp.keras3 import IMP, Plan, load_model, prune, sparsity, strip, wrap

    assert (wrap, prune, strip, sparsity, load_model) == (masks.wrap, masks.prune, masks.strip, masks.sparsity,
                                                          masks.load_model)
    assert IMP.__module__ == "tfimp.keras3.imp" and Plan is tfimp.Plan


def test_a_keras3_model_saved_as_h5_loads_as_keras3_and_the_process_stays_keras3(tmp_path):
    model = h.mlp()
    wrapped = tfimp.wrap(model)
    tfimp.prune(wrapped, 0.5)
    stripped = tfimp.strip(wrapped)
    path = str(tmp_path / "pruned.h5")
    stripped.save(path)
    loaded = tfimp.load_model(path, compile=False)
    assert tfimp.front_end.of_model(loaded) == "keras3"
    x = np.random.default_rng(0).normal(size=(4, 20)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(stripped(x)))
    assert tfimp.sparsity(loaded, over="all") == pytest.approx(tfimp.sparsity(stripped, over="all"))
    assert "tfimp.tf_keras._backend" not in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") is None
