"""TorchSGD against a plain numpy implementation of torch.optim.SGD's update rule."""

import numpy as np
import pytest

import tfimp
from tfimp import keras, optimizers, tf

import helpers


def _torch_sgd_reference(w, grads_of, lrs, mu, wd, nesterov, reset_at=()):
    """PyTorch's SGD (dampening 0): the buffer starts at d, or again at d after a reset."""
    w = {k: v.astype(np.float64).copy() for k, v in w.items()}
    buffers = {}
    for step, lr in enumerate(lrs):
        if step in reset_at:
            buffers = {}
        grads = grads_of(w)
        for name in w:
            d = grads[name] + wd * w[name]
            if mu:
                buffers[name] = d.copy() if name not in buffers else mu * buffers[name] + d
                d = d + mu * buffers[name] if nesterov else buffers[name]
            w[name] = w[name] - lr * d
    return w


def _toy_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.normal(size=(32, 3)).astype(np.float32)
    w0 = {"kernel": rng.normal(size=(5, 3)).astype(np.float32), "bias": rng.normal(size=(3,)).astype(np.float32)}

    def grads_of(w):  # loss = mean((x @ W + b - y)^2)
        residual = x.astype(np.float64) @ w["kernel"] + w["bias"] - y
        scale = 2.0 / residual.size
        return {"kernel": scale * x.T.astype(np.float64) @ residual, "bias": scale * residual.sum(axis=0)}

    return x, y, w0, grads_of


@pytest.mark.parametrize("nesterov,mu,wd", [(True, 0.9, 5e-4), (False, 0.9, 1e-2), (False, 0.0, 1e-2)])
def test_matches_torch_update_rule_through_lr_drop_and_momentum_reset(nesterov, mu, wd):
    x, y, w0, grads_of = _toy_problem()
    lrs = [0.05] * 4 + [0.005] * 4 + [0.08] * 4  # a drop, then a restart (SLR-like)
    reset_at = (8,)  # a "fresh optimizer" when retraining starts
    kernel = tf.Variable(w0["kernel"])
    bias = tf.Variable(w0["bias"])
    opt = optimizers.TorchSGD(learning_rate=0.05, momentum=mu, nesterov=nesterov, weight_decay=wd)
    for step, value in enumerate(lrs):
        if step in reset_at:
            for buffer in opt.momentums:
                buffer.assign(tf.zeros_like(buffer))
        opt.learning_rate = value
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.matmul(x, kernel) + bias - y))
        opt.apply_gradients(zip(tape.gradient(loss, [kernel, bias]), [kernel, bias]))
    expected = _torch_sgd_reference(w0, grads_of, lrs, mu, wd, nesterov, reset_at)
    np.testing.assert_allclose(kernel.numpy(), expected["kernel"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bias.numpy(), expected["bias"], rtol=1e-6, atol=1e-7)
    # The decoupled tf_keras SGD is a different optimizer: it must not agree.
    if wd and mu:
        kernel_keras = tf.Variable(w0["kernel"])
        bias_keras = tf.Variable(w0["bias"])
        keras_opt = optimizers.make("keras_sgd_decoupled", 0.05, momentum=mu, nesterov=nesterov, weight_decay=wd)
        for value in lrs:
            keras_opt.learning_rate = value
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.matmul(x, kernel_keras) + bias_keras - y))
            keras_opt.apply_gradients(zip(tape.gradient(loss, [kernel_keras, bias_keras]), [kernel_keras, bias_keras]))
        assert np.max(np.abs(kernel_keras.numpy() - expected["kernel"])) > 1e-4


def test_keeps_pruned_weights_zero_and_round_trips_config():
    model = tfimp.wrap(helpers.small_cnn())
    opt = optimizers.make("torch_sgd", 0.1, momentum=0.9, weight_decay=5e-4)
    assert isinstance(opt, optimizers.TorchSGD) and opt.nesterov  # Nesterov with weight decay, as the paper's code
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tfimp.prune(model, 0.7)
    x, y = helpers.random_data(64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for kernel in tfimp.wrapping.prunable_kernels(model):
        assert np.all(kernel.weight.numpy()[kernel.mask.numpy() == 0] == 0.0)
    assert tfimp.sparsity(model) == pytest.approx(0.7, abs=1 / sum(k.size for k in tfimp.wrapping.prunable_kernels(model)))
    clone = optimizers.TorchSGD.from_config(opt.get_config())
    assert (clone.momentum, clone.nesterov, clone.coupled_weight_decay) == (0.9, True, 5e-4)


def test_momentum_buffers_are_checkpointed(tmp_path):
    x, y = helpers.random_data(64)

    def trained(path=None):
        keras.utils.set_random_seed(0)
        model = helpers.small_cnn()
        model.compile(optimizers.make("torch_sgd", 0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        if path:
            tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(path)
        return model

    saved = trained(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    fresh = helpers.small_cnn()
    fresh.compile(optimizers.make("torch_sgd", 0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fresh.optimizer.build(fresh.trainable_variables)
    tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    for a, b in zip(saved.optimizer.momentums, fresh.optimizer.momentums):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(np.abs(m.numpy()).max() > 0 for m in fresh.optimizer.momentums)


def _mlp():  # no BatchNorm: per-replica batch statistics would differ from one device's
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(5)])


def test_mirrored_strategy_matches_one_device():
    x, y = helpers.random_data(64)
    results = []
    # ReductionToOneDevice: a fresh strategy's collective all-reduce can clash with an earlier test's
    # strategy on the same devices (a TensorFlow limitation of one process), which this test is not about.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    for strategy in (tf.distribute.get_strategy(), mirrored):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tfimp.wrap(_mlp())
            model.compile(optimizers.make("torch_sgd", 0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        tfimp.prune(model, 0.5)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        results.append([k.weight.numpy() for k in tfimp.wrapping.prunable_kernels(model)])
    for one, mirrored in zip(*results):
        np.testing.assert_allclose(one, mirrored, rtol=1e-4, atol=1e-5)


def test_unknown_optimizer_and_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'.*torch_sgd"):
        optimizers.make("adam", 0.1)
    with pytest.raises(ValueError, match="momentum must be in"):
        optimizers.TorchSGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        optimizers.TorchSGD(0.1, nesterov=True)
