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
