"""tfimp.wrap on every model style, exclusions, and bad input."""

import numpy as np
import pytest

import tfimp
from tfimp import keras, tf, wrapping
from tfimp.tf_keras import tfmot_glue

import helpers


def _wrapped_names(model):
    return [k.name for k in wrapping.prunable_kernels(model)]


def test_functional_model_wraps_conv_and_dense_only(wrapped_cnn):
    assert _wrapped_names(wrapped_cnn) == ["conv1", "conv2", "fc1", "logits"]
    for _, wrapper in wrapping.wrappers(wrapped_cnn):
        assert isinstance(wrapper, tfmot_glue.PruneLowMagnitude)
        assert isinstance(wrapper.pruning_schedule, tfmot_glue.NeverPrune)
        weight, mask, threshold = wrapper.pruning_vars[0]
        assert "kernel" in weight.name and mask.shape == weight.shape
    # biases and BatchNorm stay out of the masks
    masked = {id(k.weight) for k in wrapping.prunable_kernels(wrapped_cnn)}
    bn = wrapped_cnn.get_layer("bn1")
    assert all(id(v) not in masked for v in bn.weights)


def test_wrap_keeps_weights_and_predictions():
    model = helpers.small_cnn()
    x, _ = helpers.random_data(8)
    before = model.predict(x, verbose=0)
    wrapped = tfimp.wrap(model)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), before, rtol=1e-6, atol=1e-6)


def test_sequential_with_nested_functional_and_unwrappable_layers():
    inner_in = keras.Input((6, 6, 4))
    inner_out = keras.layers.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Rescaling(1 / 255.0, name="rescale"),
            keras.layers.Conv2D(4, 3, padding="same", name="stem"),
            keras.layers.DepthwiseConv2D(3, padding="same", name="dw"),
            keras.layers.SeparableConv2D(4, 3, padding="same", name="sep"),
            inner,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, name="head"),
        ]
    )
    wrapped = tfimp.wrap(model)
    names = _wrapped_names(wrapped)
    # depthwise kernels too (tfmot's registry has none for them)
    assert names == ["stem", "dw", "sep/depthwise_kernel", "sep/pointwise_kernel", "inner/inner_conv", "head"]
    assert isinstance(wrapped.get_layer("rescale"), keras.layers.Rescaling)
    without_depthwise = tfimp.wrap(model, kinds=["conv", "dense"])
    assert _wrapped_names(without_depthwise) == ["stem", "sep", "inner/inner_conv", "head"]
    assert isinstance(without_depthwise.get_layer("dw"), keras.layers.DepthwiseConv2D)
    tfimp.prune(wrapped, 0.5)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.5)


class _Block(keras.layers.Layer):
    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same")
        self.norm = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return keras.activations.relu(self.norm(self.conv(x), training=training))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.stem = keras.layers.Conv2D(4, 3, padding="same")
        self.blocks = [_Block(4, name="block_a"), _Block(4, name="block_b")]
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3)

    def call(self, x, training=None):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(self.pool(x))


def test_subclassed_model_with_layer_lists_is_wrapped_in_place_and_trains():
    model = _Subclassed()
    x, y = helpers.random_data(32, (6, 6, 3), classes=3)
    before = model(x[:4]).numpy()
    wrapped = tfimp.wrap(model)
    assert wrapped is model
    assert len(_wrapped_names(wrapped)) == 4
    np.testing.assert_allclose(wrapped(x[:4]).numpy(), before, rtol=1e-5, atol=1e-6)
    tfimp.prune(wrapped, 0.7)
    wrapped.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.7)
    for k in wrapping.prunable_kernels(wrapped):
        assert not np.any(k.weight.numpy()[k.mask.numpy() == 0])
    stripped = tfimp.strip(wrapped)
    assert not wrapping.wrappers(stripped)
    assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, 0.7)


def test_unbuilt_subclassed_model_needs_a_build_before_prune():
    model = tfimp.wrap(_Subclassed())
    with pytest.raises(ValueError, match=r"has not been called yet.*model\(x\[:1\]\)"):
        tfimp.prune(model, 0.5)
    model(np.zeros((1, 6, 6, 3), "float32"))
    tfimp.prune(model, 0.5)
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.5)


def test_keras_cv_backbone_from_config():
    import keras_cv

    backbone = keras_cv.models.ResNetBackbone(
        stackwise_filters=[4, 8],
        stackwise_blocks=[1, 1],
        stackwise_strides=[1, 2],
        input_shape=(16, 16, 3),
        include_rescaling=True,
    )
    inputs = keras.Input((16, 16, 3))
    features = backbone(inputs)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    wrapped = tfimp.wrap(model)
    names = _wrapped_names(wrapped)
    assert len(names) == len(convs) + 1 and names[-1] == "head"
    tfimp.prune(wrapped, 0.8)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.8)


def test_exclude_by_names_and_by_predicate():
    by_name = tfimp.wrap(helpers.small_cnn(), exclude=["conv1", "logits"])
    assert _wrapped_names(by_name) == ["conv2", "fc1"]
    by_predicate = tfimp.wrap(helpers.small_cnn(), exclude=lambda layer: isinstance(layer, keras.layers.Dense))
    assert _wrapped_names(by_predicate) == ["conv1", "conv2"]
    with pytest.raises(ValueError, match=r"not in the model: \['nope'\]"):
        tfimp.wrap(helpers.small_cnn(), exclude=["nope"])


def test_nothing_to_prune_is_an_error():
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="nothing to prune"):
        tfimp.wrap(model)
    with pytest.raises(ValueError, match="nothing to prune"):
        tfimp.prune(model, 0.5)
    with pytest.raises(ValueError, match="nothing to prune"):
        tfimp.wrap(helpers.small_cnn(), exclude=lambda layer: True)


def test_a_keras3_model_goes_to_the_keras3_front_end_and_tfmot_refuses_it_clearly():
    import keras as keras3

    assert keras3.__version__.startswith("3.")
    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    wrapped = tfimp.wrap(model)  # the model functions serve either Keras, by the model's classes
    assert type(wrapped.layers[0]).__module__ == "tfimp.keras3.wrapper"
    assert tfimp.prune(wrapped, 0.5) == {"dense": 0.5} and tfimp.sparsity(wrapped) == 0.5
    for call in (lambda: tfimp.wrapping.wrap(model), lambda: tfimp.pruning.prune(model, 0.5)):
        with pytest.raises(TypeError, match="tf_keras"):
            call()
    with pytest.raises(TypeError, match=r"a Keras model \(tf_keras or Keras 3\)"):
        tfimp.wrap(object())


def test_pruning_an_unwrapped_model_says_to_wrap_it():
    with pytest.raises(ValueError, match=r"tfimp.wrap\(model\)"):
        tfimp.prune(helpers.small_cnn(), 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_unit_interval_is_an_error(wrapped_cnn, bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        tfimp.prune(wrapped_cnn, bad)


def test_lower_sparsity_than_reached_is_an_error(wrapped_cnn):
    tfimp.prune(wrapped_cnn, 0.6)
    for criterion in ("global", "uniform"):
        with pytest.raises(ValueError, match=r"already 0.5999 sparse \(\d+ of \d+ weights pruned\)"):
            tfimp.prune(wrapped_cnn, 0.4, criterion=criterion)
    assert tfimp.sparsity(wrapped_cnn) == helpers.exact_sparsity(wrapped_cnn, 0.6)
    tfimp.prune(wrapped_cnn, 0.6)  # the same target again is a no-op
    assert tfimp.sparsity(wrapped_cnn) == helpers.exact_sparsity(wrapped_cnn, 0.6)


class _Containers(keras.Model):
    """Layers in a list, a tuple and a dict: the common subclassing patterns."""

    def __init__(self):
        super().__init__(name="containers")
        self.blocks = [keras.layers.Conv2D(4, 3, padding="same"), keras.layers.Conv2D(4, 3, padding="same")]
        self.pair = (keras.layers.Dense(5), keras.layers.ReLU())
        self.heads = {"a": keras.layers.Dense(3), "b": keras.layers.Dense(3)}
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        x = self.pair[1](self.pair[0](self.pool(x)))
        return self.heads["a"](x) + self.heads["b"](x)


def test_layers_in_lists_tuples_and_dicts_stay_saveable_after_wrap(tmp_path):
    x, y = helpers.random_data(16, (6, 6, 3), classes=3)
    model = _Containers()
    model(x[:2])
    wrapped = tfimp.wrap(model)
    assert len(wrapping.wrappers(wrapped)) == 5
    assert isinstance(wrapped.pair, tuple) and list(wrapped.heads) == ["a", "b"] and len(wrapped.blocks) == 2
    tfimp.prune(wrapped, 0.6)
    expected = wrapped.predict(x, verbose=0)
    wrapped.save_weights(str(tmp_path / "weights.h5"))
    tf.train.Checkpoint(model=wrapped).write(str(tmp_path / "ckpt"))

    again = tfimp.wrap(_Containers())
    again(x[:2])
    tf.train.Checkpoint(model=again).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    report = tfimp.report.model_report(again)  # subclassed: output sizes traced
    assert len(report.layers) == 5 and report.layers[0].dense_macs == 6 * 6 * 3 * 3 * 3 * 4


def test_imp_run_with_a_workdir_on_a_subclassed_model_and_load_cycle_into_it(tmp_path):
    x, y = helpers.random_data(32, (6, 6, 3), classes=3)
    imp = tfimp.IMP(target_sparsity=0.8, cycles=2, dense_epochs=1, retrain_epochs=1, batch_size=8)
    rows = imp.run(_Containers(), (x, y), workdir=str(tmp_path / "run"), verbose=0)
    assert [r["cycle"] for r in rows] == [0, 1, 2]
    with pytest.raises(ValueError, match="subclassed model: pass a built instance"):
        tfimp.load_cycle(str(tmp_path / "run"), 1)
    fresh = _Containers()
    fresh(x[:2])
    loaded = tfimp.load_cycle(str(tmp_path / "run"), 2, model=fresh)
    assert tfimp.sparsity(loaded) == rows[-1]["sparsity"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), imp.model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_wrap_leaves_the_given_model_as_it_was():
    model = helpers.small_cnn()
    x, y = helpers.random_data(32)
    before = [w.numpy().copy() for w in model.weights]
    wrapped = tfimp.wrap(model)
    tfimp.prune(wrapped, 0.9)
    wrapped.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(True))
    wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for value, weight in zip(before, model.weights):  # neither pruned nor trained
        np.testing.assert_array_equal(weight.numpy(), value)
    assert all(getattr(w, "_constraint", None) is None for w in model.weights)


def test_strip_means_plain():
    model = _Containers()
    x, y = helpers.random_data(32, (6, 6, 3), classes=3)
    model(x[:2])
    stripped = tfimp.strip(tfimp.prune(tfimp.wrap(model), 0.8) and model)
    assert not wrapping.wrappers(stripped)
    leftovers = [w.name for w in stripped.weights
                 if type(getattr(w, "_constraint", None)).__module__.startswith("tfimp")]
    assert leftovers == [] and not any("mask" in w.name or "threshold" in w.name for w in stripped.weights)
    zeros = sum(int(np.sum(w.numpy() == 0)) for w in stripped.weights if "kernel" in w.name)
    assert zeros > 0
    stripped.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(True))
    stripped.fit(x, y, batch_size=8, epochs=1, verbose=0)
    # A plain model: training moves the former zeros.
    assert sum(int(np.sum(w.numpy() == 0)) for w in stripped.weights if "kernel" in w.name) < zeros

    functional = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(functional, 0.8)
    plain = tfimp.strip(functional)
    assert not any(type(getattr(w, "_constraint", None)).__module__.startswith("tfimp") for w in plain.weights)


def test_tfmots_update_pruning_step_callback_is_harmless():
    """tfmot users add UpdatePruningStep out of habit: it must neither move the masks nor unzero a weight."""
    model = tfimp.wrap(helpers.small_cnn())
    x, y = helpers.random_data(32)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    tfimp.prune(model, 0.7)
    kernels = wrapping.prunable_kernels(model)
    masks = [k.mask.numpy().copy() for k in kernels]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfmot_glue.tfmot_step_callback()])
    for kernel, mask in zip(kernels, masks):
        np.testing.assert_array_equal(kernel.mask.numpy(), mask)
        assert not np.any(kernel.weight.numpy()[mask == 0]), kernel.name
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.7)


def test_a_layer_called_twice_is_wrapped_once_and_its_mask_serves_both_calls(tmp_path):
    first, second = keras.Input((6,), name="first"), keras.Input((6,), name="second")
    shared = keras.layers.Dense(8, name="shared")
    merged = keras.layers.Concatenate()([shared(first), shared(second)])
    model = keras.Model([first, second], keras.layers.Dense(2, name="head")(merged))
    wrapped = tfimp.wrap(model)
    assert [k.name for k in wrapping.prunable_kernels(wrapped)] == ["shared", "head"]  # one mask each
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(16, 6)).astype("float32") for _ in range(2)]
    y = rng.integers(0, 2, 16)
    tfimp.prune(wrapped, 0.75)
    wrapped.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    wrapped.fit(x, y, epochs=2, verbose=0)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.75)
    path = str(tmp_path / "shared.keras")
    tfimp.strip(wrapped).save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert int((loaded.get_layer("shared").kernel.numpy() == 0).sum()) == int(
        (wrapping.prunable_kernels(wrapped)[0].mask.numpy() == 0).sum())
