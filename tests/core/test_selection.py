"""Exact k-smallest selection, against a full stable sort."""

import numpy as np
import pytest

from tfimp import selection


def _reference(arrays, k):
    flat = np.concatenate([a.ravel().astype(np.float64) for a in arrays])
    chosen = np.zeros(flat.size, dtype=bool)
    chosen[np.argsort(flat, kind="stable")[:k]] = True
    return np.split(chosen, np.cumsum([a.size for a in arrays])[:-1])


def _arrays(seed, sizes, dead_fraction, decimals):
    rng = np.random.default_rng(seed)
    arrays = []
    for size in sizes:
        a = np.round(np.abs(rng.normal(size=size)), decimals).astype(np.float32)
        a[rng.random(size) < dead_fraction] = -np.inf
        arrays.append(a)
    return arrays


@pytest.mark.parametrize("dead_fraction", [0.0, 0.5, 0.97])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, 0.99, 1.0])
def test_small_arrays_match_stable_sort(dead_fraction, fraction):
    arrays = _arrays(1, [50, 7, 300, 1], dead_fraction, decimals=1)
    total = sum(a.size for a in arrays)
    dead = sum(int((a == -np.inf).sum()) for a in arrays)
    k = max(dead, int(fraction * total))
    for got, want in zip(selection.select_lowest(arrays, k), _reference(arrays, k)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dead_fraction", [0.0, 0.4])
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_large_arrays_use_the_bracket_and_stay_exact(dead_fraction, fraction):
    arrays = _arrays(2, [1_500_000, 900_000, 10], dead_fraction, decimals=3)  # many ties
    total = sum(a.size for a in arrays)
    k = int(fraction * total)
    for got, want in zip(selection.select_lowest(arrays, k), _reference(arrays, k)):
        np.testing.assert_array_equal(got, want)


def test_a_missed_bracket_falls_back_exactly(monkeypatch):
    calls = []
    real = selection._sample_bracket

    def narrow_bracket(flats, rank, alive_total, seed):
        low, high = real(flats, rank, alive_total, seed)
        calls.append((low, high))
        return high, high  # excludes the threshold on purpose

    monkeypatch.setattr(selection, "_sample_bracket", narrow_bracket)
    arrays = _arrays(3, [2_000_000], 0.0, decimals=4)
    k = 1_234_567
    got = selection.select_lowest(arrays, k)[0]
    assert calls, "the bracket path was not taken"
    np.testing.assert_array_equal(got, _reference(arrays, k)[0])
