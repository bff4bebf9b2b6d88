"""Selection criteria: which weights a pruning step removes.

A criterion is a plain function with one signature::

    criterion(kernels: Sequence[np.ndarray], sparsity: float) -> Selection

``kernels`` are the effective (already masked) kernels of all prunable
layers in model order; ``sparsity`` is the overall target. The returned
:class:`Selection` holds one score array per kernel (higher = keep) and,
for layer-wise allocations, how many weights each layer must lose. The
exact, monotone selection itself (already-pruned weights stay pruned, ties
broken by position) is done once for all criteria by ``tfimp.pruning``.

Register a new criterion with one decorator::

    @tfimp.criteria.register("my_criterion")
    def my_criterion(kernels, sparsity):
        return Selection(scores=[np.abs(k) for k in kernels])

Definitions, with their papers: ``docs/algorithms.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import numpy as np

from tfimp.core.registry import Registry


@dataclasses.dataclass
class Selection:
    """What a criterion decides.

    Attributes:
      scores: one array per kernel, same shape; lower scores are pruned first.
      layer_counts: ``None`` for one ranking across all layers (prune the
        ``round(sparsity * total)`` globally lowest scores), or the number of
        weights each layer must have pruned (layer-wise allocation).
    """

    scores: list
    layer_counts: Optional[list] = None


Criterion = Callable[[Sequence[np.ndarray], float], Selection]

_REGISTRY: Registry[Criterion] = Registry("criterion")

#: ``@register("name")`` or ``register("name", fn)``: adds a criterion.
register = _REGISTRY.register
#: The criterion registered under a name (ValueError listing the known ones).
get = _REGISTRY.get
#: Names of all registered criteria, sorted.
known = _REGISTRY.known


def round_count(fraction: float, size: int) -> int:
    """``round(fraction * size)`` with halves rounded up (deterministic)."""
    return int(math.floor(fraction * size + 0.5))


def _magnitudes(kernels: Sequence[np.ndarray]) -> list:
    return [np.abs(k) for k in kernels]


@register("global")
def global_magnitude(kernels: Sequence[np.ndarray], sparsity: float) -> Selection:
    """One magnitude threshold over all kernels together (Han et al. 2015)."""
    del sparsity
    return Selection(scores=_magnitudes(kernels))


@register("uniform")
def uniform(kernels: Sequence[np.ndarray], sparsity: float) -> Selection:
    """Every layer pruned to ``sparsity``, first and last included."""
    return Selection(
        scores=_magnitudes(kernels),
        layer_counts=[round_count(sparsity, k.size) for k in kernels],
    )


@register("uniform_plus")
def uniform_plus(kernels: Sequence[np.ndarray], sparsity: float) -> Selection:
    """Uniform+ (Gale et al. 2019, arXiv:1902.09574).

    The first layer stays dense, the last keeps at least 20% of its weights,
    the layers between share the rest uniformly.

    Raises:
      ValueError: fewer than three layers, or ``sparsity`` not reachable.
    """
    if len(kernels) < 3:
        raise ValueError(
            f"uniform_plus needs at least 3 prunable layers (first dense, last capped, "
            f"middle pruned); this model has {len(kernels)}"
        )
    sizes = [k.size for k in kernels]
    total, first, last = sum(sizes), sizes[0], sizes[-1]
    to_prune = sparsity * total
    rest_sparsity = to_prune / (total - first)
    if rest_sparsity <= 0.8:
        last_sparsity = middle_sparsity = rest_sparsity
    else:
        last_sparsity = 0.8
        middle_sparsity = (to_prune - 0.8 * last) / (total - first - last)
    if middle_sparsity > 1.0:
        max_sparsity = (0.8 * last + (total - first - last)) / total
        raise ValueError(
            f"uniform_plus cannot reach sparsity {sparsity}: it keeps the first layer "
            f"dense and 20% of the last, so at most {max_sparsity:.6f} is reachable "
            "on this model"
        )
    fractions = [0.0] + [middle_sparsity] * (len(kernels) - 2) + [last_sparsity]
    return Selection(
        scores=_magnitudes(kernels),
        layer_counts=[min(round_count(f, n), n) for f, n in zip(fractions, sizes)],
    )


def erk_densities(shapes: Sequence[tuple[int, ...]], sparsity: float) -> list[float]:
    """ERK densities (Evci et al. 2020, arXiv:1911.11134).

    ``density_l = eps * sum(shape_l) / prod(shape_l)``, with eps chosen so that
    the kept weights total ``(1 - sparsity) * N``; layers that would exceed
    density 1 are made dense and eps is solved again over the others.
    """
    sizes = [int(np.prod(s)) for s in shapes]
    raw = [float(sum(s)) / n for s, n in zip(shapes, sizes)]
    keep = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(sizes)) if i not in dense]
        budget = keep - sum(sizes[i] for i in dense)
        weighted = sum(raw[i] * sizes[i] for i in free)
        if not free or budget <= 0:
            eps = 0.0
            break
        eps = budget / weighted
        overflowing = {i for i in free if eps * raw[i] > 1.0}
        if not overflowing:
            break
        dense |= overflowing
    return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]


@register("erk")
def erk(kernels: Sequence[np.ndarray], sparsity: float) -> Selection:
    """Erdős–Rényi-Kernel allocation; magnitude order within each layer."""
    densities = erk_densities([k.shape for k in kernels], sparsity)
    return Selection(
        scores=_magnitudes(kernels),
        layer_counts=[round_count(1.0 - d, k.size) for d, k in zip(densities, kernels)],
    )


def lamp_scores(kernel: np.ndarray) -> np.ndarray:
    """LAMP scores of one kernel (Lee et al. 2021, arXiv:2010.07611).

    With the weights sorted ascending by ``w**2`` (stable, so ties keep their
    position order), ``score(u) = w_u**2 / sum_{v >= u} w_v**2``. The layer's
    largest weight scores 1; an all-zero tail scores 0.
    """
    squared = np.square(kernel.astype(np.float64).ravel())
    order = np.argsort(squared, kind="stable")
    sorted_squared = squared[order]
    suffix_sums = np.cumsum(sorted_squared[::-1])[::-1]
    sorted_scores = np.divide(
        sorted_squared, suffix_sums, out=np.zeros_like(sorted_squared), where=suffix_sums > 0
    )
    scores = np.empty_like(sorted_scores)
    scores[order] = sorted_scores
    return scores.reshape(kernel.shape)


@register("lamp")
def lamp(kernels: Sequence[np.ndarray], sparsity: float) -> Selection:
    """Layer-adaptive magnitude pruning: one global ranking of LAMP scores."""
    del sparsity
    return Selection(scores=[lamp_scores(k) for k in kernels])
