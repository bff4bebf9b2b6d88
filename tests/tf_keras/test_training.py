"""Masks stay exact through training, saving, loading, stripping and MirroredStrategy."""

import numpy as np
import pytest

import tfimp
from tfimp import keras, tf, wrapping

import helpers


def _masks(model):
    return [k.mask.numpy().copy() for k in wrapping.prunable_kernels(model)]


class _AssertPrunedAreZero(keras.callbacks.Callback):
    """Reads every kernel after each step and epoch, as a user would."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks
        self.checks = 0

    def _check(self):
        for kernel, mask in zip(wrapping.prunable_kernels(self.model), self.masks):
            np.testing.assert_array_equal(kernel.mask.numpy(), mask)  # masks never move
            weight = kernel.weight.numpy()
            assert not np.any(weight[mask == 0]), f"pruned weights of {kernel.name} moved"
        self.checks += 1

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


OPTIMIZERS = {
    "sgd_momentum_weight_decay": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=1e-2),
    "legacy_sgd_momentum": lambda: keras.optimizers.legacy.SGD(0.05, momentum=0.9, decay=1e-4),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_pruned_weights_stay_zero_through_fit(optimizer):
    model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.75)
    masks = _masks(model)
    checker = _AssertPrunedAreZero(masks)
    model.compile(OPTIMIZERS[optimizer](), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = helpers.random_data(64)
    kept_before = [k.weight.numpy()[m != 0].copy() for k, m in zip(wrapping.prunable_kernels(model), masks)]
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[checker])
    assert checker.checks == 2 * 4 + 2
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.75)
    # Training did happen on the kept weights.
    kept_after = [k.weight.numpy()[m != 0] for k, m in zip(wrapping.prunable_kernels(model), masks)]
    assert any(not np.allclose(a, b) for a, b in zip(kept_before, kept_after))


def test_custom_training_loop_keeps_zeros_via_apply_gradients(wrapped_cnn):
    tfimp.prune(wrapped_cnn, 0.5)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    x, y = helpers.random_data(16)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, wrapped_cnn(x, training=True))
        grads = tape.gradient(loss, wrapped_cnn.trainable_variables)
        optimizer.apply_gradients(zip(grads, wrapped_cnn.trainable_variables))
        for k in wrapping.prunable_kernels(wrapped_cnn):
            assert not np.any(k.weight.numpy()[k.mask.numpy() == 0])


def test_existing_kernel_constraint_is_kept():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, kernel_constraint=keras.constraints.MaxNorm(0.01), name="capped")(inputs)
    outputs = keras.layers.Dense(2, name="out")(x)
    model = tfimp.wrap(keras.Model(inputs, outputs))
    tfimp.prune(model, 0.5)
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32") * 50, verbose=0, epochs=2)
    capped = wrapping.prunable_kernels(model)[0]
    weight = capped.weight.numpy()
    assert np.linalg.norm(weight, axis=0).max() <= 0.01 + 1e-6
    assert not np.any(weight[capped.mask.numpy() == 0])


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "h5"])
def test_save_and_load_model_keep_masks_and_predictions(tmp_path, fmt):
    model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.8, criterion="erk")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = helpers.random_data(32)
    model.fit(x, y, batch_size=8, verbose=0)
    path = {"keras": tmp_path / "m.keras", "savedmodel": tmp_path / "saved", "h5": tmp_path / "m.h5"}[fmt]
    model.save(str(path))
    loaded = tfimp.load_model(str(path))
    for a, b in zip(_masks(model), _masks(loaded)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    # Training the loaded model keeps its pruned weights at zero.
    masks = _masks(loaded)
    loaded.compile(keras.optimizers.SGD(0.05, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
    loaded.fit(x, y, batch_size=8, verbose=0, callbacks=[_AssertPrunedAreZero(masks)])


def test_strip_keeps_zeros_and_loads_without_tfimp_objects(tmp_path, wrapped_cnn):
    tfimp.prune(wrapped_cnn, 0.9, criterion="lamp")
    masks = _masks(wrapped_cnn)
    x, _ = helpers.random_data(8)
    expected = wrapped_cnn.predict(x, verbose=0)
    stripped = tfimp.strip(wrapped_cnn)
    assert not wrapping.wrappers(stripped)
    kernels = [w.variable.numpy() for w in wrapping.covered_weights(stripped)]
    for kernel, mask in zip(kernels, masks):
        assert not np.any(kernel[mask == 0])
    assert tfimp.sparsity(stripped) == helpers.exact_sparsity(stripped, 0.9)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    stripped.save(str(tmp_path / "stripped.keras"))
    plain = keras.models.load_model(str(tmp_path / "stripped.keras"))  # no custom objects needed
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def _two_cpu_strategy():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest configures two logical CPUs"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.mark.parametrize("criterion", ["global", "erk", "lamp"])
def test_mirrored_strategy_gives_the_same_masks(criterion):
    reference = helpers.small_cnn()
    weights = reference.get_weights()
    single = tfimp.wrap(reference)
    tfimp.prune(single, 0.7, criterion=criterion)
    tfimp.prune(single, 0.85, criterion=criterion)

    strategy = _two_cpu_strategy()
    with strategy.scope():
        mirrored_base = helpers.small_cnn(name="mirrored")
        mirrored_base.set_weights(weights)
        mirrored = tfimp.wrap(mirrored_base)
    tfimp.prune(mirrored, 0.7, criterion=criterion)
    with strategy.scope():
        tfimp.prune(mirrored, 0.85, criterion=criterion)
    for a, b in zip(_masks(single), _masks(mirrored)):
        np.testing.assert_array_equal(a, b)
    # Every replica holds the same mask.
    for kernel in wrapping.prunable_kernels(mirrored):
        replicas = [v.numpy() for v in kernel.mask.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])


def test_fit_under_mirrored_strategy_keeps_zeros():
    strategy = _two_cpu_strategy()
    with strategy.scope():
        model = tfimp.wrap(helpers.small_cnn())
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=5e-4),
                      keras.losses.SparseCategoricalCrossentropy(True))
    tfimp.prune(model, 0.8)
    x, y = helpers.random_data(64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for kernel in wrapping.prunable_kernels(model):
        mask = kernel.mask.numpy()
        for replica in kernel.weight.values:
            assert not np.any(replica.numpy()[mask == 0])
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.8)


def _collectives_in_a_replica_forward_pass(model, strategy):
    @tf.function
    def forward(x):
        return strategy.run(lambda inputs: model(inputs, training=True), args=(x,))

    graph = forward.get_concrete_function(tf.TensorSpec((8, 8, 8, 3), tf.float32)).graph
    return [op.type for op in graph.get_operations() if "Collective" in op.type or "AllReduce" in op.type]


def test_masks_cost_no_communication_between_replicas():
    """weight *= mask runs on each replica: the forward pass adds no all-reduce (tfmot's averages every weight)."""
    strategy = _two_cpu_strategy()
    with strategy.scope():
        model = tfimp.wrap(helpers.small_cnn())
    tfimp.prune(model, 0.8)
    assert _collectives_in_a_replica_forward_pass(model, strategy) == []
    with strategy.scope():
        plain = helpers.small_cnn()
        import tensorflow_model_optimization as tfmot

        tfmot_wrapped = tfmot.sparsity.keras.prune_low_magnitude(helpers.small_cnn(name="tfmot"))
    assert _collectives_in_a_replica_forward_pass(plain, strategy) == []
    # tfmot's own wrapper all-reduces each of the 4 kernels on each of the 2 replicas, every step.
    assert len(_collectives_in_a_replica_forward_pass(tfmot_wrapped, strategy)) == 4 * 2
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    strategy.run(lambda inputs: model(inputs, training=True), args=(x,))
    for kernel in wrapping.prunable_kernels(model):  # and it did apply the masks on both replicas
        mask = kernel.mask.numpy()
        for replica in kernel.weight.values:
            assert not np.any(replica.numpy()[mask == 0])
