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

from tfimp.core import channel_weights as _channel_weights
from tfimp.core import criteria as _criteria
from tfimp.core import notices as _notices
from tfimp.core import structures as _structures
from tfimp.core.selection import select_lowest, select_lowest_capped, select_lowest_in_rows


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
                    min_kept_per_layer, structure="unstructured") -> None:
    """Fails before any training when ``min_kept_per_layer`` leaves too few weights to reach ``target_sparsity``,
    or when ``structure`` cannot reach it on kernels of these ``shapes``.

    The guard caps criteria that rank all weights together (``global``,
    ``lamp``); layer-wise allocations set their own counts and ignore it.
    Under a pooled structure (blocks) everything is counted in its units;
    ``channels`` is checked by the pruning step (a channel's cost depends on
    the model's graph).

    Raises:
      ValueError: the target cannot be reached; the message names both values and what is allowed.
    """
    form = _structures.get(structure)
    if isinstance(form, _structures.NOfM):
        _check_n_of_m_reachable(form, shapes, target_sparsity, min_kept_per_layer)
        return
    if isinstance(form, _structures.Channels):
        return  # what a channel costs depends on the graph: the pruning step itself says when it cannot reach
    shapes = [form.unit_shape(shape) for shape in shapes]
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
            f"min_kept_per_layer={min_kept_per_layer!r} keeps {sum(kept)} of the model's {total} prunable "
            f"{form.unit}, so at most sparsity {reachable / total:.4f} can be reached, not "
            f"target_sparsity={target_sparsity}; lower min_kept_per_layer (a count >= 1 per layer, or a fraction in "
            "(0, 1)) or the target")


def _check_n_of_m_reachable(form, shapes, sparsity: float, min_kept_per_layer, names=None) -> int:
    """N:M's own checks of a step to ``sparsity``; returns how many weights of each group it prunes."""
    per_group = form.pruned_per_group(validate_sparsity(sparsity))
    names = [f"kernel {index}" for index in range(len(shapes))] if names is None else names
    if not any(form.applies_to(shape) for shape in shapes):
        raise ValueError(f"structure {form.name!r} groups {form.m} consecutive weights along each kernel's input "
                         f"axis (the axis before the last), and no kernel has a multiple of {form.m} there: "
                         f"{ {name: tuple(shape) for name, shape in zip(names, shapes)} }; choose another structure "
                         "or M")
    sizes = [math.prod(shape) for shape in shapes]
    kept_minimum = min_kept_counts(sizes, min_kept_per_layer) or [0] * len(sizes)
    for name, shape, size, minimum in zip(names, shapes, sizes, kept_minimum):
        kept = size - size // form.m * per_group if form.applies_to(shape) else size
        if kept < minimum:
            raise ValueError(f"min_kept_per_layer={min_kept_per_layer!r} asks {name!r} {tuple(shape)} to keep "
                             f"{minimum} weights; structure {form.name!r} at sparsity {sparsity} keeps {kept}")
    return per_group


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
                 min_kept_per_layer: int | float | None = None, structure="unstructured",
                 unit_groups: Sequence[np.ndarray | None] | None = None,
                 channel_costs: _channel_weights.ChannelCosts | None = None) -> MaskStep:
    """The masks that prune ``weights`` (with current ``masks``) to ``sparsity`` by ``criterion``.

    Args:
      names: one readable name per weight (for results and errors).
      weights: the weights' values, any shapes.
      masks: their current masks (non-zero = alive).
      sparsity: the overall target over all given weights, in [0, 1).
      criterion: a name from ``tfimp.criteria.known()``.
      allow_revival: start from all-ones masks (DPF-style methods).
      min_kept_per_layer: see :func:`tfimp.prune`.
      structure: a name from :mod:`tfimp.core.structures` (``"unstructured"``,
        ``"N:M"``, ``"block:RxC"``). A pooled structure (blocks) runs the
        criterion and the exact selection below over each kernel's units,
        and counts in units; N:M selects inside every group.
      unit_groups: per weight, None or an integer group id per unit (-1: on
        its own): units of one id, across weights, are pruned together
        (``channels`` joined by an Add). Their scores are combined (L2: the
        root of the sum of squares; ``channels:l1``: the sum) and a group is
        pruned whole, so the count may fall short of the target by less than
        a group. Only for criteria that rank all units together (``global``,
        ``lamp``); layer-wise criteria ignore it. Under ``channels`` the
        groups of ``channel_costs`` join instead where it is given; without
        it, the joined channels cost their own filters.
      channel_costs: under ``channels``, what each channel costs in weights
        (:func:`tfimp.core.channel_weights.channel_costs`, from the model's
        graph); None: each channel costs its own filter. Under ``channels``
        the sparsity is the share of the weights the slimmed model no longer
        has (see :func:`_select_channels`), and the step's layer sparsities
        are each kernel's share of removed weights.

    Raises:
      ValueError: the target is below what is already pruned; the guard or
        the criterion cannot reach it; a criterion's answer is malformed; the
        structure cannot take the target or the masks.
    """
    sparsity = validate_sparsity(sparsity)
    criterion_fn = _criteria.get(criterion)
    form = _structures.get(structure)
    check_finite(zip(names, weights), f"prune to sparsity {sparsity}")
    masks = [np.ones_like(w) if allow_revival else np.asarray(m) for w, m in zip(weights, masks)]
    if isinstance(form, _structures.NOfM):
        return _select_in_groups(form, names, weights, masks, sparsity, criterion, criterion_fn, min_kept_per_layer)
    if isinstance(form, _structures.Channels):
        costs = channel_costs or _channel_weights.own_costs([np.shape(w) for w in weights], unit_groups)
        return _select_channels(form, names, weights, masks, sparsity, criterion, criterion_fn, costs,
                                min_kept_per_layer)
    # A pooled structure: every step below runs over units (for unstructured pruning, the weights themselves).
    unit = form.unit
    units = [form.alive_units(m, name) for m, name in zip(masks, names)]
    sizes = [int(np.size(u)) for u in units]
    shapes = [tuple(np.shape(u)) for u in units]
    already = [u.size - int(np.count_nonzero(u)) for u in units]
    total = sum(sizes)
    target = _criteria.round_count(sparsity, total)
    if target < sum(already):
        raise ValueError(
            f"cannot prune to sparsity {sparsity}: the model is already "
            f"{sum(already) / total:.4f} sparse ({sum(already)} of {total} {unit} pruned), "
            "and IMP never revives pruned weights"
        )

    effective = [form.pool(w * m.astype(w.dtype, copy=False)) for w, m in zip(weights, masks)]
    selection = criterion_fn(effective, sparsity)
    _check_selection(selection, names, shapes, sizes, criterion)
    ranked = [_rank_pruned_first(s, u, n) for s, u, n in zip(selection.scores, units, already)]
    joined = unit_groups is not None and selection.layer_counts is None and any(g is not None for g in unit_groups)
    if joined:
        ranked = _joined_scores(ranked, unit_groups, getattr(form, "norm", "l2"))
    kept_minimum = min_kept_counts(sizes, min_kept_per_layer)
    if selection.layer_counts is None and kept_minimum is not None:
        caps = [max(size - keep, done) for size, keep, done in zip(sizes, kept_minimum, already)]
        if sum(caps) < target:
            raise ValueError(
                f"min_kept_per_layer={min_kept_per_layer!r} keeps {total - sum(caps)} of {total} {unit}, so at "
                f"most sparsity {sum(caps) / total:.4f} can be reached, not {sparsity}")
        pruned = select_lowest_capped(ranked, target, caps)
    elif selection.layer_counts is None:
        pruned = select_lowest(ranked, target)
    else:
        for name, count, done in zip(names, selection.layer_counts, already):
            if count < done:
                raise ValueError(
                    f"criterion {criterion!r} allots {count} pruned {unit} to layer "
                    f"{name!r}, which already has {done}; IMP never revives weights. "
                    "Keep one criterion for all pruning steps of a model."
                )
        pruned = [select_lowest([r], count)[0] for r, count in zip(ranked, selection.layer_counts)]
    if joined:
        pruned = _whole_groups(pruned, unit_groups)
    return _mask_step(names, weights, [form.expand(p, np.shape(w)) for p, w in zip(pruned, weights)], pruned,
                      already)


def _mask_step(names, weights, pruned, pruned_units, already) -> MaskStep:
    """The step's outcome from the pruned weights and units (booleans); sparsities are counted in units."""
    keep = [np.logical_not(p).astype(np.asarray(w).dtype) for w, p in zip(weights, pruned)]
    layer_sparsities = {name: float(np.count_nonzero(p)) / p.size for name, p in zip(names, pruned_units)}
    emptied = [name for name, p, done in zip(names, pruned_units, already) if done < p.size == np.count_nonzero(p)]
    return MaskStep(keep, layer_sparsities, emptied)


def _select_in_groups(form, names, weights, masks, sparsity: float, criterion: str, criterion_fn,
                      min_kept_per_layer) -> MaskStep:
    """N:M: ``round(sparsity * M)`` weights of every group pruned, the lowest scores of the group first.

    The criterion's scores order the weights inside each group (its layer
    counts are the pattern's business); a kernel whose input axis is not a
    multiple of M keeps its mask, with a warning naming it.
    """
    shapes = [tuple(np.shape(w)) for w in weights]
    per_group = _check_n_of_m_reachable(form, shapes, sparsity, min_kept_per_layer, names)
    applies = [form.applies_to(shape) for shape in shapes]
    skipped = [f"{name} {shape}" for name, shape, ok in zip(names, shapes, applies) if not ok]
    if skipped:
        _notices.warn(f"tfimp.prune: structure {form.name!r} leaves {len(skipped)} kernels as they are (dense): their "
                      f"input axis (the axis before the last) is not a multiple of {form.m}: {skipped}")
    selection = criterion_fn([w * m.astype(w.dtype, copy=False) for w, m in zip(weights, masks)], sparsity)
    _check_selection(selection, names, shapes, [int(np.size(w)) for w in weights], criterion)
    pruned, already = [], []
    for index, (name, shape, mask, score) in enumerate(zip(names, shapes, masks, selection.scores)):
        dead = np.asarray(mask) == 0
        already.append(int(np.count_nonzero(dead)))
        if not applies[index]:
            pruned.append(dead)
            continue
        most = int(np.count_nonzero(form.groups(dead), axis=1).max()) if already[-1] else 0
        if most > per_group:
            raise ValueError(
                f"cannot prune {name!r} {shape} to {form.m - per_group}:{form.m} (sparsity {sparsity}): a group of "
                f"{form.m} already has {most} weights pruned, and IMP never revives pruned weights; keep one "
                "structure for all pruning steps of a model, with targets that only grow")
        ranked = _rank_pruned_first(score, mask, already[-1])
        pruned.append(form.ungroup(select_lowest_in_rows(form.groups(ranked), per_group), shape))
    return _mask_step(names, weights, pruned, pruned, already)


def _select_channels(form, names, weights, masks, sparsity: float, criterion: str, criterion_fn, costs,
                     min_kept_per_layer) -> MaskStep:
    """``channels``: whole output channels pruned until the slimmed model has lost ``round(sparsity * total)``
    of the prunable weights, counted by ``costs`` (:mod:`tfimp.core.channel_weights`).

    ``global`` and ``lamp`` take the alive channels (a joined group whole)
    in ascending order of score (ties: model order) and stop at the first
    prefix that removes enough weights, counted exactly as each channel
    goes. A layer-wise criterion keeps its allocation as each layer's share
    of channels, all shares scaled by one factor, the smallest (found by
    bisection) whose channels remove enough. Channels slimming cannot
    remove (``costs.blocked``: a model output's) are not pruned, nor a
    kernel's last channel (slimming keeps one: no layer collapse); pruned
    channels stay pruned.
    """
    units = [form.alive_units(m, name) for m, name in zip(masks, names)]
    dead = [~u.astype(bool) for u in units]
    already = [int(d.sum()) for d in dead]
    sizes = costs.sizes
    total = int(sizes.sum())
    target = _criteria.round_count(sparsity, total)
    done = int(costs.removed(dead).sum())
    if target <= done:
        # A channel step overshoots its target by up to one channel's cost, so a later step (IMP's next cycle, a
        # prune to the same target after fine-tuning) may ask for less than is already gone: nothing more goes,
        # and nothing comes back.
        return _channel_step(costs, [d.copy() for d in dead], weights, names, sizes, already, form)
    effective = [form.pool(w * m.astype(w.dtype, copy=False)) for w, m in zip(weights, masks)]
    selection = criterion_fn(effective, sparsity)
    shapes = [tuple(np.shape(u)) for u in units]
    _check_selection(selection, names, shapes, [u.size for u in units], criterion)
    ranked = [np.asarray(_rank_pruned_first(s, u, n), np.float64).ravel()
              for s, u, n in zip(selection.scores, units, already)]
    prunable = costs.prunable()
    if selection.layer_counts is None:
        kept = min_kept_counts([u.size for u in units], min_kept_per_layer) or [0] * len(units)
        caps = [max(u.size - max(keep, 1), n) for u, keep, n in zip(units, kept, already)]
        pruned = _channels_in_order(costs, _joined_scores(ranked, costs.out_groups, form.norm), dead, prunable, caps,
                                    target, sparsity, min_kept_per_layer)
    else:
        pruned = _channels_scaled(costs, ranked, dead, prunable, selection.layer_counts, target, sparsity, criterion)
    return _channel_step(costs, pruned, weights, names, sizes, already, form)


def _channel_step(costs, pruned, weights, names, sizes, already, form) -> MaskStep:
    """The :class:`MaskStep` of a channels selection: ``pruned`` (per kernel, its pruned channels) as masks."""
    removed = costs.removed(pruned)
    keep = [np.logical_not(form.expand(p, np.shape(w))).astype(np.asarray(w).dtype) for p, w in zip(pruned, weights)]
    layer_sparsities = {name: float(r) / float(s) if s else 0.0 for name, r, s in zip(names, removed, sizes)}
    emptied = [name for name, p, n in zip(names, pruned, already) if n < p.size == np.count_nonzero(p)]
    return MaskStep(keep, layer_sparsities, emptied)


def _unreachable(sparsity: float, removable: int, total: int, why: str) -> ValueError:
    return ValueError(f"structure 'channels' cannot reach sparsity {sparsity}: pruning every channel it may "
                      f"({why}) removes {removable} of the {total} prunable weights ({removable / total:.4f}); "
                      "lower the target")


def _channels_in_order(costs, scores, dead, prunable, caps, target: int, sparsity: float,
                       min_kept_per_layer) -> list[np.ndarray]:
    """Alive prunable channels (a group whole) lowest score first, counting removed weights as each goes."""
    pruned = [d.copy() for d in dead]
    ins, outs = costs.removed_channels(pruned)
    alive_in = costs.inputs - np.array([int(i.sum()) for i in ins], np.int64)
    alive_out = costs.outputs - np.array([int(o.sum()) for o in outs], np.int64)
    removed = int((costs.sizes - costs.spatial * alive_in * alive_out).sum())
    if removed >= target:
        return pruned
    readers: dict[int, list[tuple[int, int]]] = {}
    makers: dict[int, list[tuple[int, np.ndarray]]] = {}
    for index, groups in enumerate(costs.in_groups):
        if groups is not None:
            ids, counts = np.unique(groups, return_counts=True)
            for group, count in zip(ids.tolist(), counts.tolist()):
                readers.setdefault(group, []).append((index, count))
    for index, groups in enumerate(costs.out_groups):
        for group in np.unique(groups[groups >= 0]).tolist():
            makers.setdefault(group, []).append((index, np.flatnonzero(groups == group)))
    kernel = np.concatenate([np.full(np.size(s), i) for i, s in enumerate(scores)])
    column = np.concatenate([np.arange(np.size(s)) for s in scores])
    flat = np.concatenate([np.asarray(s, np.float64).ravel() for s in scores])
    candidate = np.concatenate([p & ~d for p, d in zip(prunable, dead)])
    order = np.flatnonzero(candidate)[np.argsort(flat[candidate], kind="stable")]
    counted = [int(d.sum()) for d in dead]
    spatial, alive_in, alive_out = costs.spatial.tolist(), alive_in.tolist(), alive_out.tolist()
    taken: set[int] = set()
    for k, c in zip(kernel[order].tolist(), column[order].tolist()):
        group = int(costs.out_groups[k][c])
        if group in taken or pruned[k][c]:
            continue
        members = [(k, np.array([c]))] if group < 0 else makers[group]
        new = [(m, cols[~pruned[m][cols]]) for m, cols in members]
        if any(counted[m] + cols.size > caps[m] for m, cols in new):
            continue
        # the kernels this channel (group) touches: each keeps spatial * alive_in * alive_out weights
        shrunk = {m: cols.size for m, cols in (members if group >= 0 else new)}
        read = dict(readers.get(group, ())) if group >= 0 else {}
        for m in set(shrunk) | set(read):
            kept = spatial[m] * alive_in[m] * alive_out[m]
            alive_out[m] -= shrunk.get(m, 0)
            alive_in[m] -= read.get(m, 0)
            removed += kept - spatial[m] * alive_in[m] * alive_out[m]
        for m, cols in new:
            pruned[m][cols] = True
            counted[m] += cols.size
        if group >= 0:
            taken.add(group)
        if removed >= target:
            return pruned
    why = "every layer keeps a channel, and the model's outputs all theirs" if min_kept_per_layer is None else \
        f"min_kept_per_layer={min_kept_per_layer!r}"
    raise _unreachable(sparsity, removed, int(costs.sizes.sum()), why)


def _channels_scaled(costs, ranked, dead, prunable, layer_counts, target: int, sparsity: float,
                     criterion: str) -> list[np.ndarray]:
    """Each kernel's allotted share of channels times one factor: the smallest factor removing ``target`` weights."""
    orders, limits, shares = [], [], []
    for scores, d, p, count in zip(ranked, dead, prunable, layer_counts):
        blocked = ~p & ~d
        orders.append(np.lexsort((np.arange(scores.size), np.where(blocked, np.inf, scores))))
        limits.append(max(min(int(scores.size - blocked.sum()), scores.size - 1), int(d.sum())))
        shares.append(count / scores.size if scores.size else 0.0)
    already = [int(d.sum()) for d in dead]

    def chosen(factor: float) -> list[np.ndarray]:
        out = []
        for order, limit, share, n, d in zip(orders, limits, shares, already, dead):
            count = min(limit, max(n, _criteria.round_count(min(factor * share, 1.0), d.size)))
            p = np.zeros(d.size, bool)
            p[order[:count]] = True
            out.append(p)
        return out

    def removed(factor: float) -> int:
        return int(costs.removed(chosen(factor)).sum())

    positive = [s for s in shares if s > 0]
    high = 1.0 / min(positive) if positive else 0.0
    if removed(high) < target:
        raise _unreachable(sparsity, removed(high), int(costs.sizes.sum()),
                           f"criterion {criterion!r} prunes only the layers it allots channels to, every layer keeps a "
                           "channel, and the model's outputs all theirs")
    low = 0.0
    if removed(low) >= target:
        return chosen(low)
    for _ in range(60):
        middle = (low + high) / 2
        if removed(middle) >= target:
            high = middle
        else:
            low = middle
    return chosen(high)


def collapse_message(model_name: str, sparsity: float, criterion: str, emptied: Sequence[str]) -> str:
    """The warning for a step that emptied layers, with the way out."""
    return (f"tfimp.prune: pruning {model_name!r} to sparsity {sparsity} with {criterion!r} removed every weight "
            f"of {len(emptied)} layers: {list(emptied)}. An emptied layer disconnects the network (layer collapse); "
            "on an untrained model magnitudes say little, so train before pruning, or keep a minimum per layer with "
            "min_kept_per_layer=...")


def emptied_layers(layer_sparsities: dict[str, float]) -> list[str]:
    """The names whose sparsity is 1 in a pruning result (layers with no weight left)."""
    return [name for name, value in layer_sparsities.items() if value >= 1.0]


def _group_ids(ranked, unit_groups) -> np.ndarray:
    return np.concatenate([np.full(np.size(r), -1, np.int64) if g is None else np.asarray(g, np.int64).ravel()
                           for r, g in zip(ranked, unit_groups)])


def _joined_scores(ranked, unit_groups, norm: str) -> list[np.ndarray]:
    """Every grouped unit's score replaced by its group's (L2 or L1 combination; -inf if any member is pruned)."""
    ids = _group_ids(ranked, unit_groups)
    flat = np.concatenate([np.asarray(r, np.float64).ravel() for r in ranked])
    members = ids >= 0
    if not members.any():
        return ranked
    labels, inverse = np.unique(ids[members], return_inverse=True)
    values = flat[members]
    if norm == "l1":
        combined = np.bincount(inverse, weights=np.abs(values), minlength=labels.size)
    else:
        combined = np.sqrt(np.bincount(inverse, weights=np.square(np.where(np.isfinite(values), values, 0.0)),
                                       minlength=labels.size))
    combined[np.bincount(inverse, weights=np.isneginf(values), minlength=labels.size) > 0] = -np.inf
    flat = flat.copy()
    flat[members] = combined[inverse]
    out, start = [], 0
    for r in ranked:
        out.append(flat[start:start + np.size(r)].reshape(np.shape(r)))
        start += np.size(r)
    return out


def _whole_groups(pruned, unit_groups) -> list[np.ndarray]:
    """A selection without partly selected groups: their selected members are kept (the count may fall short)."""
    ids = _group_ids(pruned, unit_groups)
    flat = np.concatenate([np.asarray(p, bool).ravel() for p in pruned])
    members = ids >= 0
    if members.any():
        labels, inverse = np.unique(ids[members], return_inverse=True)
        counts = np.bincount(inverse, minlength=labels.size)
        chosen = np.bincount(inverse, weights=flat[members], minlength=labels.size)
        whole = flat[members] & (chosen == counts)[inverse]
        flat = flat.copy()
        flat[members] = whole
    out, start = [], 0
    for p in pruned:
        out.append(flat[start:start + np.size(p)].reshape(np.shape(p)))
        start += np.size(p)
    return out


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
