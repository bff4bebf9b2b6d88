"""The pruning-during-training methods' rules, checked against numpy references of their definitions, on both front
ends."""

import math

import numpy as np
import pytest

import tfimp


def _global_top_k(weights: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """The reference: keep the (n - floor(S n + 0.5)) largest |w| over all kernels together."""
    flat = np.concatenate([np.abs(w).ravel() for w in weights])
    kept = flat.size - math.floor(sparsity * flat.size + 0.5)
    threshold = np.sort(flat)[::-1][kept - 1]
    return [np.abs(w) >= threshold for w in weights]


def test_dnw_masks_every_step_by_the_global_threshold_and_its_gradient_reaches_pruned_weights(front_end):
    keras = front_end.keras
    x, y = front_end.data(96)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):  # after DNW's own mask update for this step
            seen.append(front_end.kernels(self.model))

    keras.utils.set_random_seed(0)
    runner = tfimp.DuringTraining("dnw", 0.75, 2, batch_size=32, learning_rate=0.05, momentum=0.0, weight_decay=0.0,
                                  chance_guard=False)
    rows = runner.run(front_end.mlp(), (x, y), test=(x, y), verbose=0, callbacks=[Record()])
    assert len(seen) == 6  # 2 epochs of 3 batches, a mask update before every one
    moved_while_pruned = 0
    for step, kernels in enumerate(seen):
        weights, masks = [w for w, _ in kernels], [m != 0 for _, m in kernels]
        for mask, expected in zip(masks, _global_top_k(weights, 0.75)):
            np.testing.assert_array_equal(mask, expected)  # the step's threshold: global, from the dense weights
        if step:
            before_weights, before_masks = [w for w, _ in seen[step - 1]], [m == 0 for _, m in seen[step - 1]]
            moved_while_pruned += sum(int(np.sum((w != v) & pruned)) for w, v, pruned
                                      in zip(weights, before_weights, before_masks))
    assert moved_while_pruned > 0  # straight-through: the gradient reached weights the forward pass left out
    assert rows[-1]["sparsity"] == pytest.approx(0.75, abs=1e-9) and rows[-1]["criterion"] == "global"
    final = front_end.kernels(runner.model)
    assert all(np.all(w[m == 0] == 0) for w, m in final)  # the mask it trained with, made permanent
    assert tfimp.sparsity(runner.model) == pytest.approx(0.75, abs=1e-9)


def _top_k_mask(scores: list[np.ndarray], kept: int) -> list[np.ndarray]:
    flat = np.concatenate([s.ravel() for s in scores])
    order = np.argsort(-flat, kind="stable")[:kept]
    keep = np.zeros(flat.size, dtype=bool)
    keep[order] = True
    parts = np.split(keep, np.cumsum([s.size for s in scores])[:-1])
    return [part.reshape(score.shape) for part, score in zip(parts, scores)]


@pytest.mark.parametrize("rule", ["lc", "gsm"])
def test_lc_and_gsm_change_one_torch_sgd_step_exactly_as_defined(front_end, rule):
    from tfimp.core import gradient_rules

    keras = front_end.keras
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(front_end.mlp())
    model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.0, weight_decay=0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer = model.optimizer
    variables = list(model.trainable_variables)
    optimizer.build(variables)
    kernels = [weight for weight, _ in front_end.kernels(model)]
    kernel_ids = {id(k.weight) for k in (tfimp.keras3.masks.prunable_kernels(model) if front_end.name.startswith(
        "keras3") else tfimp.wrapping.prunable_kernels(model))}
    gradient_rules.install(optimizer, rule, [v for v in variables if id(v) in kernel_ids], 0.75)
    rng = np.random.default_rng(1)
    before = [front_end.numpy(v) for v in variables]
    grads = [rng.normal(size=w.shape).astype("float32") for w in before]
    front_end.apply_gradients(optimizer, grads, variables)
    after = [front_end.numpy(v) for v in variables]
    targets = [i for i, v in enumerate(variables) if id(v) in kernel_ids]
    assert len(targets) == len(kernels) == 2
    total = sum(before[i].size for i in targets)
    kept = total - math.floor(0.75 * total + 0.5)
    scores = [np.abs(before[i]) if rule == "lc" else np.abs(before[i] * grads[i]) for i in targets]
    keep = dict(zip(targets, _top_k_mask(scores, kept)))
    assert sum(int(m.sum()) for m in keep.values()) == kept
    for i, (w, g) in enumerate(zip(before, grads)):
        direction = g + 0.01 * w  # TorchSGD's coupled decay
        if i in keep and rule == "lc":
            direction = direction - 0.01 * w * keep[i]  # no decay on the top-k |w|
        if i in keep and rule == "gsm":
            direction = g * keep[i] + 0.01 * w  # only the top-k |w * g| keep their gradient
        np.testing.assert_allclose(after[i], w - 0.1 * direction, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["lc", "gsm"])
def test_lc_and_gsm_train_dense_and_end_at_the_target_exactly(front_end, method):
    x, y = front_end.data(96)
    front_end.keras.utils.set_random_seed(0)
    runner = tfimp.DuringTraining(method, 0.75, 2, batch_size=32, learning_rate=0.05, chance_guard=False)
    rows = runner.run(front_end.mlp(), (x, y), test=(x, y), verbose=0)
    assert [row["sparsity"] for row in rows[:-1]] == [0.0]  # dense until the end
    assert rows[-1]["sparsity"] == pytest.approx(0.75, abs=1e-9) and rows[-1]["criterion"] == "global"
    assert tfimp.sparsity(runner.model) == pytest.approx(0.75, abs=1e-9)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _one_dense(front_end, inputs: int = 6, units: int = 3):
    keras = front_end.keras
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(units, use_bias=False, name="fc")])


def test_cs_gates_each_weight_by_its_score_at_the_scheduled_temperature_and_keeps_positive_scores(front_end):
    keras = front_end.keras
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    y = np.zeros((8, 3), "float32")
    model = front_end.reparam_wrap(_one_dense(front_end), "cs", total_steps=4,
                                   hyperparameters=dict(cs_init=0.5, cs_lambda=0.01, cs_beta_final=16.0))
    model.compile(tfimp.optimizers.TorchSGD(0.0, momentum=0.0), "mse")
    (wrapper,) = front_end.reparam_wrappers(model)
    (scores,) = wrapper.parameters
    np.testing.assert_array_equal(front_end.numpy(scores), np.full((6, 3), 0.5, "float32"))  # started at cs_init
    # Asymmetric about 0, so that the penalty's sum depends on the temperature.
    scores.assign(np.linspace(-1.0, 2.0, 18).reshape(6, 3).astype("float32"))
    (weight,) = [front_end.numpy(w) for w in wrapper.masked_weights()] if hasattr(wrapper, "masked_weights") else [
        wrapper.layer.kernel.numpy()]
    s = front_end.numpy(scores)
    for step in range(6):  # past total_steps the temperature stays at its final value
        beta = 16.0 ** (min(step, 4) / 4)
        kernel = weight * _sigmoid(beta * s) / _sigmoid(0.5)
        prediction = x @ kernel
        np.testing.assert_allclose(front_end.numpy(model(x, training=False)), prediction, rtol=1e-5, atol=1e-6)
        penalty = 0.01 * _sigmoid(beta * s).sum()
        loss = model.train_on_batch(x, y)  # learning rate 0: nothing moves but the step counter
        loss = loss[0] if isinstance(loss, (list, tuple)) else loss
        assert float(loss) == pytest.approx(float(np.mean(prediction ** 2)) + penalty, rel=1e-5)
        assert float(front_end.numpy(wrapper.steps_seen)) == step + 1
    front_end.finalize(wrapper)
    (mask,) = [m for _, m in front_end.kernels(model)]
    np.testing.assert_array_equal(mask != 0, s > 0)  # the scores above 0
    (final,) = [w for w, _ in front_end.kernels(model)]
    expected = weight * _sigmoid(16.0 * s) / _sigmoid(0.5) * (s > 0)
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-7)  # the last effective values
    np.testing.assert_allclose(front_end.numpy(model(x, training=False)), x @ expected, rtol=1e-5, atol=1e-6)
    del keras


def _dst_slope(distance):
    size = np.abs(distance)
    return np.where(size <= 0.4, 2.0 - 4.0 * size, np.where(size <= 1.0, 0.4, 0.0))


def test_dst_steps_by_its_surrogate_gradient_and_penalty_and_resets_an_emptied_layer(front_end):
    keras = front_end.keras
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    model = front_end.reparam_wrap(_one_dense(front_end), "dst", hyperparameters=dict(dst_alpha=0.05))
    model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.0), "mse")
    (wrapper,) = front_end.reparam_wrappers(model)
    (thresholds,) = wrapper.parameters
    np.testing.assert_array_equal(front_end.numpy(thresholds), np.zeros(3, "float32"))  # one per output unit, at 0
    start = np.array([0.2, 0.5, 0.9], "float32")
    thresholds.assign(start)
    (w,) = [k for k, _ in front_end.kernels(model)]
    distance = np.abs(w) - start
    kept = (distance > 0).astype("float32")
    prediction = x @ (w * kept)
    np.testing.assert_allclose(front_end.numpy(model(x, training=False)), prediction, rtol=1e-5, atol=1e-6)
    # The reference step: d loss / d kernel_eff of the mean squared error, through w * step(|w| - t).
    upstream = x.T @ (2.0 * (prediction - y) / prediction.size)
    slope = _dst_slope(distance)
    grad_w = upstream * (kept + w * slope * np.sign(w))
    grad_t = (upstream * w * -slope).sum(axis=0) - 0.05 * np.exp(-start)
    model.train_on_batch(x, y)
    (w_after,) = [k for k, _ in front_end.kernels(model)]
    np.testing.assert_allclose(w_after, w - 0.1 * grad_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(front_end.numpy(thresholds), start - 0.1 * grad_t, rtol=1e-4, atol=1e-6)
    # The reset rule: a layer keeping at most 1% of its weights gets its thresholds back at 0.
    thresholds.assign(np.full(3, 100.0, "float32"))
    from tfimp.core import reparametrisations

    assert reparametrisations.needs_reset(np.abs(w_after), np.full(3, 100.0))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[_reset_callback(front_end)])
    np.testing.assert_array_equal(front_end.numpy(thresholds), np.zeros(3, "float32"))
    del keras


def _reset_callback(front_end):
    if front_end.name.startswith("keras3"):
        from tfimp.keras3 import baselines
    else:
        from tfimp import baselines
    return baselines.ResetEmptyThresholds()


@pytest.mark.parametrize("method", ["cs", "dst"])
def test_cs_and_dst_runs_end_with_exact_masks_and_say_how_far_from_the_target_they_ended(front_end, method):
    import warnings

    x, y = front_end.data(96)
    front_end.keras.utils.set_random_seed(0)
    strong = {"cs": dict(cs_lambda=0.002, cs_beta_final=50.0), "dst": dict(dst_alpha=0.05)}[method]
    runner = tfimp.DuringTraining(method, 0.5, 3, batch_size=32, learning_rate=0.1, chance_guard=False, **strong)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = runner.run(front_end.mlp(), (x, y), test=(x, y), verbose=0)
    reached = tfimp.sparsity(runner.model)
    assert 0.0 < reached < 1.0
    assert rows[-1]["sparsity"] == pytest.approx(reached, abs=1e-9)  # the row says what the model holds
    assert all(np.all(w[m == 0] == 0) for w, m in front_end.kernels(runner.model))  # exact: pruned weights are 0
    messages = [str(w.message) for w in caught if f"{method} ended at sparsity" in str(w.message)]
    if abs(reached - 0.5) > 0.01:
        assert len(messages) == 1 and f"{abs(reached - 0.5):.4f} away" in messages[0] and "calibrate" in messages[0]
    else:
        assert not messages
