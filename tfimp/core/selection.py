"""Exact k-smallest selection over many arrays, in linear time.

``select_lowest(scores, k)`` marks exactly the ``k`` lowest scores across a
list of arrays (one per layer), ties broken by position (array order, then
row-major index). Scores of ``-inf`` mark already-pruned weights: they are
always selected first, and never enter the search.

Finding the threshold never sorts. A full ``np.partition`` over tens of
millions of values costs ~0.15 s on one core and degrades badly when many
values are equal (e.g. the ``-inf`` of already-pruned weights), so the
threshold is searched among the *alive* scores only, inside a bracket
estimated from a random sample: one counting pass finds how many alive
scores lie below the bracket, one pass collects the few inside it, and only
those are partitioned. If the bracket misses (a ~5-sigma event) the search
falls back to partitioning all alive scores; the result is exact either way.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Below this many alive scores, partition them all directly.
_DIRECT_LIMIT = 1 << 20
_SAMPLE_POSITIONS = 1 << 18
_MIN_ALIVE_SAMPLES = 1 << 14
_BRACKET_SIGMAS = 5.0


def select_lowest(scores: Sequence[np.ndarray], k: int, *, seed: int = 0) -> list[np.ndarray]:
    """Boolean arrays marking exactly the ``k`` lowest entries of ``scores``.

    Args:
      scores: arrays of scores, any shapes; ``-inf`` marks entries that must be
        selected before all others (already pruned). NaN scores rank last.
      k: how many entries to select in total, clipped to [0, total].
      seed: seed of the sample that brackets the threshold (affects speed only).

    Returns:
      One boolean array per input, same shapes; ``True`` = selected.
    """
    flats = [np.ravel(s) for s in scores]
    total = sum(f.size for f in flats)
    dead = sum(int(np.count_nonzero(f == -np.inf)) for f in flats)
    rank = k - dead  # how many alive entries to select
    if k >= total:
        selected = [np.ones(f.size, dtype=bool) for f in flats]
    elif rank <= 0:
        selected = [np.zeros(f.size, dtype=bool) for f in flats]
        _take_first_ties(flats, selected, -np.inf, k)
    else:
        threshold = _alive_kth_smallest(flats, rank, total - dead, dead, seed)
        selected = [f < threshold for f in flats]
        _take_first_ties(flats, selected, threshold, k - sum(int(np.count_nonzero(s)) for s in selected))
    return [s.reshape(np.shape(x)) for s, x in zip(selected, scores)]


def _take_first_ties(flats, selected, value, missing: int) -> None:
    """Selects the first ``missing`` entries equal to ``value``, in position order."""
    for flat, chosen in zip(flats, selected):
        if missing <= 0:
            return
        ties = np.flatnonzero(flat == value)
        ties = ties[~chosen[ties]][:missing]
        chosen[ties] = True
        missing -= ties.size


def _alive_kth_smallest(flats, rank: int, alive_total: int, dead: int, seed: int) -> float:
    """The ``rank``-th smallest (1-based) score that is not -inf."""
    if alive_total > _DIRECT_LIMIT:
        bracket = _sample_bracket(flats, rank, alive_total, seed)
        if bracket is not None:
            low, high = bracket  # low is finite, so every -inf lies below it
            below = sum(int(np.count_nonzero(f < low)) for f in flats) - dead
            inside = np.concatenate([f[(f >= low) & (f <= high)] for f in flats])
            if below < rank <= below + inside.size:
                return np.partition(inside, rank - below - 1)[rank - below - 1]
    alive = np.concatenate([f[f != -np.inf] for f in flats])
    return np.partition(alive, rank - 1)[rank - 1]


def _sample_bracket(flats, rank: int, alive_total: int, seed: int):
    """A value interval that holds the threshold with overwhelming probability."""
    sizes = np.array([f.size for f in flats])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.integers(0, offsets[-1], size=min(_SAMPLE_POSITIONS, int(offsets[-1]))))
    layer_of = np.searchsorted(offsets, positions, side="right") - 1
    sample = np.concatenate([flats[i][positions[layer_of == i] - offsets[i]] for i in np.unique(layer_of)])
    sample = np.sort(sample[sample != -np.inf])
    if sample.size < _MIN_ALIVE_SAMPLES or np.isnan(sample[-1]):
        return None
    q = rank / alive_total
    center = q * sample.size
    margin = _BRACKET_SIGMAS * math.sqrt(sample.size * q * (1 - q)) + 8
    low_index, high_index = int(center - margin), int(math.ceil(center + margin))
    low = sample[low_index] if low_index >= 0 else -np.finfo(np.float64).max
    high = sample[high_index] if high_index < sample.size else np.inf
    return low, high


def select_lowest_in_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean array marking exactly the ``k`` lowest entries of every row of the 2-D ``scores``.

    :func:`select_lowest`'s rule, one row at a time and all rows at once:
    each row's threshold is its ``k``-th smallest score (``np.partition``
    along the rows, never a sort), everything below it is selected, and the
    first entries equal to it (column order) fill the row up to ``k``.
    ``-inf`` entries therefore go first; NaN ranks last. N:M sparsity is
    this selection over a kernel's groups of M.
    """
    scores = np.asarray(scores)
    rows, width = scores.shape
    if k <= 0 or rows == 0:
        return np.zeros(scores.shape, dtype=bool)
    if k >= width:
        return np.ones(scores.shape, dtype=bool)
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        scores = np.where(np.isnan(scores), np.inf, scores)
    threshold = np.partition(scores, k - 1, axis=1)[:, k - 1:k]
    selected = scores < threshold
    ties = scores == threshold
    missing = k - _row_counts(selected)
    crowded = np.flatnonzero(_row_counts(ties) > missing)  # more ties than places: the first ones only
    if crowded.size:
        some = ties[crowded]
        ties[crowded] = some & (np.cumsum(some, axis=1) <= missing[crowded, None])
    selected |= ties
    return selected


def _row_counts(flags: np.ndarray) -> np.ndarray:
    """``np.count_nonzero(flags, axis=1)``; for narrow rows (N:M groups) column by column, 3x faster."""
    if flags.shape[1] > 16:
        return np.count_nonzero(flags, axis=1)
    counts = flags[:, 0].astype(np.intp)
    for column in range(1, flags.shape[1]):
        counts += flags[:, column]
    return counts


def select_lowest_capped(scores: Sequence[np.ndarray], k: int, caps: Sequence[int], *, seed: int = 0) -> list[np.ndarray]:
    """Like :func:`select_lowest`, but array ``i`` gives at most ``caps[i]`` entries.

    Exact water-filling: select the ``k`` lowest over the uncapped arrays;
    every array that got more than its cap is fixed at its ``caps[i]`` lowest
    entries and leaves the search, which repeats for the remaining count over
    the others. An array over its cap at one threshold is over it at every
    higher one, so each fixed array stays fixed and the result is the ``k``
    lowest entries under the caps (ties by position, as in ``select_lowest``).

    Raises:
      ValueError: the caps add up to less than ``k``.
    """
    if sum(caps) < k:
        raise ValueError(f"the caps allow {sum(caps)} selected entries, fewer than k={k}")
    result: list = [None] * len(scores)
    free = list(range(len(scores)))
    remaining = k
    while free:
        chosen = select_lowest([scores[i] for i in free], remaining, seed=seed)
        over = [i for i, c in zip(free, chosen) if int(np.count_nonzero(c)) > caps[i]]
        if not over:
            for i, c in zip(free, chosen):
                result[i] = c
            break
        for i in over:
            result[i] = select_lowest([scores[i]], caps[i], seed=seed)[0]
            remaining -= caps[i]
            free.remove(i)
    return result
