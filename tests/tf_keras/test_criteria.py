"""Every criterion against a straightforward numpy reference written here.

The references use a full stable sort (what ``tfimp`` must avoid for speed)
so that "lowest scores first, ties by position, already-pruned first" is
spelled out plainly.
"""

import math

import numpy as np
import pytest

import tfimp
from tfimp import criteria, wrapping

import helpers


def _round(x):
    return int(math.floor(x + 0.5))


def _prune_lowest(scores_flat, alive_flat, k):
    """Prune the k lowest, already-pruned first, ties by position: full sort."""
    forced = np.where(alive_flat, scores_flat.astype(np.float64), -np.inf)
    order = np.argsort(forced, kind="stable")
    pruned = np.zeros(scores_flat.size, dtype=bool)
    pruned[order[:k]] = True
    return pruned


def _reference_lamp(w):
    flat = w.astype(np.float64).ravel() ** 2
    order = np.argsort(flat, kind="stable")
    scores = np.zeros_like(flat)
    for rank, index in enumerate(order):
        tail = sum(flat[j] for j in order[rank:])
        scores[index] = flat[index] / tail if tail > 0 else 0.0
    return scores


def _reference_erk_counts(shapes, s):
    sizes = [int(np.prod(sh)) for sh in shapes]
    raw = [sum(sh) / n for sh, n in zip(shapes, sizes)]
    dense = []
    while True:
        rest = [i for i in range(len(sizes)) if i not in dense]
        eps = ((1 - s) * sum(sizes) - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in rest)
        worst = max(rest, key=lambda i: raw[i])  # one layer at a time, as RigL does
        if eps * raw[worst] > 1:
            dense.append(worst)
            continue
        break
    density = [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
    return [_round((1 - d) * n) for d, n in zip(density, sizes)]


def _reference_uniform_plus_counts(sizes, s):
    total, first, last = sum(sizes), sizes[0], sizes[-1]
    k = s * total
    rest = k / (total - first)
    if rest <= 0.8:
        fr = [0.0] + [rest] * (len(sizes) - 1)
    else:
        mid = (k - 0.8 * last) / (total - first - last)
        fr = [0.0] + [mid] * (len(sizes) - 2) + [0.8]
    return [_round(f * n) for f, n in zip(fr, sizes)]


def reference_masks(weights, alive, sparsity, criterion):
    """Kept-masks (True = kept) the reference algorithm picks."""
    effective = [np.where(a, w, 0) for w, a in zip(weights, alive)]
    sizes = [w.size for w in weights]
    if criterion in ("global", "lamp"):
        if criterion == "global":
            scores = np.concatenate([np.abs(e).ravel() for e in effective])
        else:
            scores = np.concatenate([_reference_lamp(e) for e in effective])
        alive_flat = np.concatenate([a.ravel() for a in alive])
        pruned = _prune_lowest(scores, alive_flat, _round(sparsity * sum(sizes)))
        parts = np.split(pruned, np.cumsum(sizes)[:-1])
    else:
        if criterion == "uniform":
            counts = [_round(sparsity * n) for n in sizes]
        elif criterion == "erk":
            counts = _reference_erk_counts([w.shape for w in weights], sparsity)
        else:
            counts = _reference_uniform_plus_counts(sizes, sparsity)
        parts = [
            _prune_lowest(np.abs(e).ravel(), a.ravel(), c) for e, a, c in zip(effective, alive, counts)
        ]
    return [~p.reshape(w.shape) for p, w in zip(parts, weights)]


def _set_tied_random_weights(model, seed):
    """Random kernels rounded to one decimal: many exact ties."""
    rng = np.random.default_rng(seed)
    for kernel in wrapping.prunable_kernels(model):
        values = np.round(rng.normal(size=kernel.shape), 1).astype("float32")
        kernel.weight.assign(values)


def _masks(model):
    return [k.mask.numpy() != 0 for k in wrapping.prunable_kernels(model)]


def _weights(model):
    return [k.weight.numpy() for k in wrapping.prunable_kernels(model)]


CRITERIA = ["global", "uniform", "uniform_plus", "erk", "lamp"]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_masks_equal_numpy_reference_over_successive_prunes(criterion):
    model = tfimp.wrap(helpers.small_cnn())
    _set_tied_random_weights(model, seed=1)
    total = sum(k.size for k in wrapping.prunable_kernels(model))
    for sparsity in (0.3, 0.6, 0.8):
        weights, alive = _weights(model), _masks(model)
        expected = reference_masks(weights, alive, sparsity, criterion)
        result = tfimp.prune(model, sparsity, criterion=criterion)
        got = _masks(model)
        for name, e, g in zip(result, expected, got):
            np.testing.assert_array_equal(g, e, err_msg=f"{criterion} layer {name} at {sparsity}")
        pruned_count = sum(int((~g).sum()) for g in got)
        if criterion in ("global", "lamp"):
            assert pruned_count == _round(sparsity * total)
        # Pruned weights are zero at once, kept weights untouched.
        for w_before, w_after, keep in zip(weights, _weights(model), got):
            np.testing.assert_array_equal(w_after, np.where(keep, w_before, 0))
        # The returned per-layer sparsity is what the masks say.
        for (name, value), keep in zip(result.items(), got):
            assert value == int((~keep).sum()) / keep.size


def test_uniform_layer_counts_exact():
    model = tfimp.wrap(helpers.small_cnn())
    result = tfimp.prune(model, 0.55, criterion="uniform")
    for kernel in wrapping.prunable_kernels(model):
        expected = _round(0.55 * kernel.size)
        assert int((kernel.mask.numpy() == 0).sum()) == expected
        assert result[kernel.name] == expected / kernel.size


def test_uniform_plus_keeps_first_dense_and_last_at_most_80_percent():
    model = tfimp.wrap(helpers.small_cnn())
    result = tfimp.prune(model, 0.9, criterion="uniform_plus")
    names = list(result)
    assert result[names[0]] == 0.0
    last = wrapping.prunable_kernels(model)[-1]
    assert last.name == names[-1] and result[names[-1]] == _round(0.8 * last.size) / last.size
    assert tfimp.sparsity(model) == helpers.exact_sparsity(model, 0.9)


def test_uniform_plus_unreachable_sparsity_is_an_error():
    model = tfimp.wrap(helpers.small_cnn())
    with pytest.raises(ValueError, match="uniform_plus cannot reach sparsity 0.99"):
        tfimp.prune(model, 0.99, criterion="uniform_plus")
    assert tfimp.sparsity(model) == 0.0  # nothing changed


def test_erk_densities_solve_the_budget_and_cap_at_one():
    shapes = [(3, 3, 3, 6), (3, 3, 6, 8), (128, 16), (16, 5)]
    for s in (0.5, 0.9, 0.97):
        densities = criteria.erk_densities(shapes, s)
        sizes = [int(np.prod(sh)) for sh in shapes]
        assert sum(d * n for d, n in zip(densities, sizes)) == pytest.approx((1 - s) * sum(sizes))
        assert all(0 < d <= 1 for d in densities)
    # At 50% the small layers would exceed density 1 and are made dense.
    assert criteria.erk_densities(shapes, 0.5)[3] == 1.0


def test_lamp_scores_follow_definition():
    w = np.array([[0.5, -2.0], [1.0, 0.0]])
    scores = criteria.lamp_scores(w)
    # ascending squares: 0, 0.25, 1, 4 -> tails 5.25, 5.25, 5, 4
    expected = np.array([[0.25 / 5.25, 1.0], [1.0 / 5.0, 0.0]])
    np.testing.assert_allclose(scores, expected)


def test_register_custom_criterion_and_unknown_names():
    name = "test_reverse_magnitude"

    @criteria.register(name)
    def reverse_magnitude(kernels, sparsity):  # prunes the largest weights
        return criteria.Selection(scores=[-np.abs(k) for k in kernels])

    try:
        assert name in criteria.known()
        model = tfimp.wrap(helpers.small_cnn())
        weights = _weights(model)
        tfimp.prune(model, 0.5, criterion=name)
        for w, keep in zip(weights, _masks(model)):
            if keep.any() and (~keep).any():
                assert np.abs(w[~keep]).min() >= np.abs(w[keep]).max() - 1e-7
        with pytest.raises(ValueError, match="already registered"):
            criteria.register(name, reverse_magnitude)
    finally:
        criteria._REGISTRY.unregister(name)

    with pytest.raises(ValueError, match=r"unknown criterion 'magnitude'.*'erk', 'global', 'lamp'"):
        tfimp.prune(tfimp.wrap(helpers.small_cnn()), 0.5, criterion="magnitude")
