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
