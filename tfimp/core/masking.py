"""Choosing the masks of one pruning step from weights and the masks so far: exact, monotone, framework-free.

Both front ends read their wrapped weights and masks into numpy arrays, call
:func:`select_masks`, and write the new masks back. The rules:

* already-pruned weights are always selected first (IMP never revives);
* among equal scores, the weight that comes first in model order (layer
  order, then row-major position) is pruned first;
* ``global`` and ``lamp`` prune exactly ``round(sparsity * total)``
  weights; layer-wise criteria exactly their per-layer counts;
* selection is linear time, never a full sort (see ``tfimp.core.selection``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from tfimp.core import criteria as _criteria
from tfimp.core.selection import select_lowest, select_lowest_capped


class NonFiniteWeights(ValueError):
    """A weight tfimp would rank by magnitude holds NaN or infinity."""


def check_finite(named_weights, when: str) -> None:
    """Raises :class:`NonFiniteWeights` naming every weight (``layer/weight``) that holds NaN or infinity.

    Magnitudes of NaN cannot be ranked (NumPy sorts them last, so they would
    silently count as the largest weights), so nothing is wrapped or pruned
    while one is there. ``named_weights``: ``(name, array)`` pairs; ``when``
    says what was about to happen, for the message.
    """
    bad = []
    for name, weight in named_weights:
        weight = np.asarray(weight)
        if weight.dtype.kind in "fc":
            count = weight.size - int(np.count_nonzero(np.isfinite(weight)))
            if count:
                bad.append(f"{name} ({count} of {weight.size})")
    if bad:
        raise NonFiniteWeights(f"cannot {when}: non-finite weights (NaN or infinity) in {', '.join(bad)}. "
                               "Restore finite weights (an earlier checkpoint, a lower learning rate) first.")


def already_wrapped(model, kinds, exclude, wrapper):
    """``wrap`` of a model that is wrapped already: the model unchanged, or an error when other settings were asked.

    Raises:
      ValueError: ``kinds``, ``exclude`` or ``wrapper`` given, which a second wrapping would silently ignore.
    """
    if kinds is not None or exclude is not None or wrapper is not None:
        raise ValueError(f"model {model.name!r} is already wrapped; kinds=, exclude= and wrapper= apply when a model "
                         "is first wrapped: wrap the original, unwrapped model with them")
    return model


def validate_sparsity(sparsity: float) -> float:
    """``sparsity`` as a float in [0, 1) (TypeError / ValueError naming the value otherwise)."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise TypeError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return value


def min_kept_counts(sizes: Sequence[int], min_kept_per_layer) -> list[int] | None:
    """How many weights each layer of ``sizes`` must keep under ``min_kept_per_layer`` (None: no guard)."""
    if min_kept_per_layer is None or min_kept_per_layer == 0:
        return None
    if isinstance(min_kept_per_layer, bool) or not isinstance(min_kept_per_layer, (int, float)):
        raise TypeError(f"min_kept_per_layer must be a count (int >= 1) or a fraction in (0, 1), "
                        f"got {min_kept_per_layer!r}")
    if isinstance(min_kept_per_layer, float) and not float(min_kept_per_layer).is_integer():
        if not 0.0 < min_kept_per_layer < 1.0:
            raise ValueError(f"min_kept_per_layer as a fraction must be in (0, 1), got {min_kept_per_layer!r}")
        return [min(size, math.ceil(min_kept_per_layer * size)) for size in sizes]
    if min_kept_per_layer < 0:
        raise ValueError(f"min_kept_per_layer must be >= 0, got {min_kept_per_layer!r}")
    return [min(size, int(min_kept_per_layer)) for size in sizes]


def check_reachable(shapes: Sequence[tuple[int, ...]], target_sparsity: float, criterion: str,
                    min_kept_per_layer) -> None:
    """Fails before any training when ``min_kept_per_layer`` leaves too few weights to reach ``target_sparsity``.

    The guard caps criteria that rank all weights together (``global``,
    ``lamp``); layer-wise allocations set their own counts and ignore it.

    Raises:
      ValueError: the target cannot be reached; the message names both values and what is allowed.
    """
    sizes = [math.prod(shape) for shape in shapes]
    kept = min_kept_counts(sizes, min_kept_per_layer)
    if kept is None:
        return
    target_sparsity = validate_sparsity(target_sparsity)
    total = sum(sizes)
    if _criteria.get(criterion)([np.ones(shape, np.float32) for shape in shapes],
                                target_sparsity).layer_counts is not None:
        return
    reachable = total - sum(kept)
    if reachable < _criteria.round_count(target_sparsity, total):
        raise ValueError(
            f"min_kept_per_layer={min_kept_per_layer!r} keeps {sum(kept)} of the model's {total} prunable weights, "
            f"so at most sparsity {reachable / total:.4f} can be reached, not target_sparsity={target_sparsity}; "
            "lower min_kept_per_layer (a count >= 1 per layer, or a fraction in (0, 1)) or the target")


@dataclasses.dataclass(frozen=True)
class PrunableKernel:
    """One masked weight of a wrapped model: its readable name, weight and mask variables, and its wrapper."""

    name: str
    weight: Any
    mask: Any
    wrapper: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.weight.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class MaskStep:
    """The outcome of one pruning step.

    Attributes:
      keep: one array per weight, 1 where the weight stays, 0 where it is
        pruned (the weight's dtype).
      layer_sparsities: each weight's sparsity after the step, by name.
      emptied: names of the weights this step left with nothing (layer
        collapse), in model order.
    """

    keep: list[np.ndarray]
    layer_sparsities: dict[str, float]
    emptied: list[str]


def select_masks(names: Sequence[str], weights: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 sparsity: float, criterion: str = "global", *, allow_revival: bool = False,
                 min_kept_per_layer: int | float | None = None) -> MaskStep:
    """The masks that prune ``weights`` (with current ``masks``) to ``sparsity`` by ``criterion``.

    Args:
      names: one readable name per weight (for results and errors).
      weights: the weights' values, any shapes.
      masks: their current masks (non-zero = alive).
      sparsity: the overall target over all given weights, in [0, 1).
      criterion: a name from ``tfimp.criteria.known()``.
      allow_revival: start from all-ones masks (DPF-style methods).
      min_kept_per_layer: see :func:`tfimp.prune`.

    Raises:
      ValueError: the target is below what is already pruned; the guard or
        the criterion cannot reach it; a criterion's answer is malformed.
    """
    sparsity = validate_sparsity(sparsity)
    criterion_fn = _criteria.get(criterion)
    check_finite(zip(names, weights), f"prune to sparsity {sparsity}")
    sizes = [int(np.size(w)) for w in weights]
    shapes = [tuple(np.shape(w)) for w in weights]
    masks = [np.ones_like(w) if allow_revival else np.asarray(m) for w, m in zip(weights, masks)]
    already = [m.size - int(np.count_nonzero(m)) for m in masks]
    total = sum(sizes)
    target = _criteria.round_count(sparsity, total)
    if target < sum(already):
        raise ValueError(
            f"cannot prune to sparsity {sparsity}: the model is already "
            f"{sum(already) / total:.4f} sparse ({sum(already)} of {total} weights pruned), "
            "and IMP never revives pruned weights"
        )

    effective = [w * m.astype(w.dtype, copy=False) for w, m in zip(weights, masks)]
    selection = criterion_fn(effective, sparsity)
    _check_selection(selection, names, shapes, sizes, criterion)
    ranked = [_rank_pruned_first(s, m, n) for s, m, n in zip(selection.scores, masks, already)]
    kept_minimum = min_kept_counts(sizes, min_kept_per_layer)
    if selection.layer_counts is None and kept_minimum is not None:
        caps = [max(size - keep, done) for size, keep, done in zip(sizes, kept_minimum, already)]
        if sum(caps) < target:
            raise ValueError(
                f"min_kept_per_layer={min_kept_per_layer!r} keeps {total - sum(caps)} of {total} weights, so at "
                f"most sparsity {sum(caps) / total:.4f} can be reached, not {sparsity}")
        pruned = select_lowest_capped(ranked, target, caps)
    elif selection.layer_counts is None:
        pruned = select_lowest(ranked, target)
    else:
        for name, count, done in zip(names, selection.layer_counts, already):
            if count < done:
                raise ValueError(
                    f"criterion {criterion!r} allots {count} pruned weights to layer "
                    f"{name!r}, which already has {done}; IMP never revives weights. "
                    "Keep one criterion for all pruning steps of a model."
                )
        pruned = [select_lowest([r], count)[0] for r, count in zip(ranked, selection.layer_counts)]

    keep = [np.logical_not(p).astype(np.asarray(w).dtype) for w, p in zip(weights, pruned)]
    layer_sparsities = {name: float(np.count_nonzero(p)) / p.size for name, p in zip(names, pruned)}
    emptied = [name for name, p, done in zip(names, pruned, already) if done < p.size == np.count_nonzero(p)]
    return MaskStep(keep, layer_sparsities, emptied)


def collapse_message(model_name: str, sparsity: float, criterion: str, emptied: Sequence[str]) -> str:
    """The warning for a step that emptied layers, with the way out."""
    return (f"tfimp.prune: pruning {model_name!r} to sparsity {sparsity} with {criterion!r} removed every weight "
            f"of {len(emptied)} layers: {list(emptied)}. An emptied layer disconnects the network (layer collapse); "
            "on an untrained model magnitudes say little, so train before pruning, or keep a minimum per layer with "
            "min_kept_per_layer=...")


def emptied_layers(layer_sparsities: dict[str, float]) -> list[str]:
    """The names whose sparsity is 1 in a pruning result (layers with no weight left)."""
    return [name for name, value in layer_sparsities.items() if value >= 1.0]


def _rank_pruned_first(scores, mask: np.ndarray, pruned: int) -> np.ndarray:
    """Float scores with already-pruned weights set to -inf (may reuse ``scores``)."""
    ranked = np.asarray(scores)
    if not np.issubdtype(ranked.dtype, np.floating):
        ranked = ranked.astype(np.float64)
    if pruned:
        if not ranked.flags.writeable:
            ranked = ranked.copy()
        np.copyto(ranked, -np.inf, where=mask == 0)
    return ranked


def _check_selection(selection, names, shapes, sizes, criterion: str) -> None:
    if not isinstance(selection, _criteria.Selection):
        raise TypeError(f"criterion {criterion!r} returned {type(selection).__name__}, expected Selection")
    if len(selection.scores) != len(names):
        raise ValueError(
            f"criterion {criterion!r} returned {len(selection.scores)} score arrays for {len(names)} kernels"
        )
    for name, shape, score in zip(names, shapes, selection.scores):
        if tuple(np.shape(score)) != shape:
            raise ValueError(
                f"criterion {criterion!r} returned scores of shape {np.shape(score)} for layer "
                f"{name!r} of shape {shape}"
            )
    if selection.layer_counts is not None:
        if len(selection.layer_counts) != len(names):
            raise ValueError(f"criterion {criterion!r} returned {len(selection.layer_counts)} layer counts")
        for name, size, count in zip(names, sizes, selection.layer_counts):
            if not 0 <= count <= size:
                raise ValueError(
                    f"criterion {criterion!r} allots {count} pruned weights to layer {name!r} "
                    f"of size {size}"
                )


def count_zeros(arrays: Sequence[np.ndarray]) -> tuple[int, int]:
    """(zeros, total) over ``arrays``."""
    total = sum(int(np.size(a)) for a in arrays)
    return total - sum(int(np.count_nonzero(a)) for a in arrays), total


def zeros_over_all(values_and_masks) -> tuple[int, int]:
    """(zeros, total) over parameters, a value counting as zero where it is 0 or its mask (if any) is 0."""
    zeros = total = 0
    for values, mask in values_and_masks:
        alive = values != 0
        if mask is not None:
            alive &= mask != 0
        total += alive.size
        zeros += alive.size - int(np.count_nonzero(alive))
    return zeros, total
