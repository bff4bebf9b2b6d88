"""Setting masks by a policy across all layers: exact, monotone, fast.

``prune`` reads every wrapped kernel and its mask, asks a criterion (see
``tfimp.criteria``) for scores and, for layer-wise criteria, per-layer counts,
and then selects exactly that many weights:

* already-pruned weights are always selected first (IMP never revives);
* among equal scores, the weight that comes first in model order (layer
  order, then row-major position) is pruned first;
* selection is linear time, never a full sort (see ``tfimp.selection``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tfimp.core import criteria as _criteria
from tfimp import tfmot_glue
from tfimp.core.selection import select_lowest, select_lowest_capped
from tfimp._backend import keras


def _validate_sparsity(sparsity: float) -> float:
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise TypeError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return value


def _kernels_or_raise(model) -> list[tfmot_glue.PrunableKernel]:
    tfmot_glue.check_tf_keras_model(model)
    unbuilt = tfmot_glue.unbuilt_wrappers(model)
    kernels = tfmot_glue.prunable_kernels(model)
    if unbuilt and (not kernels or not model.built):
        raise ValueError(
            f"model {model.name!r} has not been called yet ({len(unbuilt)} wrapped layers without weights, e.g. "
            f"{unbuilt[0]!r}); run it once on a batch, `model(x[:1])`, or `model.build(input_shape)`, then prune"
        )
    if unbuilt:
        warnings.warn(f"tfimp.prune: {len(unbuilt)} wrapped layers of {model.name!r} have no weights (never "
                      f"called) and are left out of the selection: {unbuilt}", stacklevel=3)
    if kernels:
        return kernels
    if tfmot_glue.covered_weights(model):
        raise ValueError(
            f"model {model.name!r} is not wrapped for pruning; call `model = tfimp.wrap(model)` first"
        )
    raise ValueError(f"model {model.name!r} has nothing to prune: no weight of a kind tfimp prunes "
                     "(see tfimp.coverage)")


def _min_kept_counts(kernels, min_kept_per_layer) -> list[int] | None:
    """How many weights each kernel must keep under ``min_kept_per_layer`` (None: no guard)."""
    if min_kept_per_layer is None or min_kept_per_layer == 0:
        return None
    if isinstance(min_kept_per_layer, bool) or not isinstance(min_kept_per_layer, (int, float)):
        raise TypeError(f"min_kept_per_layer must be a count (int >= 1) or a fraction in (0, 1), "
                        f"got {min_kept_per_layer!r}")
    if isinstance(min_kept_per_layer, float) and not float(min_kept_per_layer).is_integer():
        if not 0.0 < min_kept_per_layer < 1.0:
            raise ValueError(f"min_kept_per_layer as a fraction must be in (0, 1), got {min_kept_per_layer!r}")
        return [min(k.size, math.ceil(min_kept_per_layer * k.size)) for k in kernels]
    if min_kept_per_layer < 0:
        raise ValueError(f"min_kept_per_layer must be >= 0, got {min_kept_per_layer!r}")
    return [min(k.size, int(min_kept_per_layer)) for k in kernels]


def prune(model: keras.Model, sparsity: float, criterion: str = "global", *, allow_revival: bool = False,
          zero_pruned: bool = True, min_kept_per_layer: int | float | None = None) -> dict[str, float]:
    """Prunes a wrapped model to an overall ``sparsity`` with ``criterion``.

    Sets the masks of all wrapped kernels and zeroes the pruned weights at
    once. With ``global`` and ``lamp`` exactly ``round(sparsity * total)``
    weights are pruned; with layer-wise criteria each layer loses exactly its
    allocated count. Weights pruned before stay pruned.

    Example:
      >>> model = tfimp.wrap(model)
      >>> tfimp.prune(model, 0.9, criterion="global")
      {'conv1': 0.41, 'conv2': 0.93, 'dense': 0.95}

    Args:
      model: a model returned by :func:`tfimp.wrap`.
      sparsity: target fraction of pruned weights over all wrapped kernels,
        in [0, 1).
      criterion: a name from ``tfimp.criteria.known()``.
      allow_revival: choose the mask afresh from the dense weights, so weights
        pruned before may return (DPF-style methods); IMP never does this.
      zero_pruned: zero the pruned weights at once (off for methods that keep
        dense weights behind the mask).
      min_kept_per_layer: opt-in guard against *layer collapse* (a layer
        whose weights are all pruned disconnects the network; Tanaka et al.
        2020, arXiv:2006.05467; Lee et al. 2021, arXiv:2010.07611): every
        kernel keeps at least this many weights (an int), or this fraction
        of its weights (a float in (0, 1)). The selection stays exact: the
        weights a capped layer cannot lose are taken, lowest score first,
        from the other layers. Off by default (the paper's plain criterion).
        Weights pruned before stay pruned, even below the minimum.

    Without the guard, a step that empties a layer warns, naming it.

    Returns:
      Each wrapped kernel's sparsity, by layer name.

    Raises:
      ValueError: sparsity outside [0, 1); unknown criterion; the model is not
        wrapped or has nothing to prune; the target is below the sparsity
        already reached; the criterion cannot reach the target.
      TypeError: ``model`` is not a tf_keras model.
    """
    sparsity = _validate_sparsity(sparsity)
    criterion_fn = _criteria.get(criterion)
    kernels = _kernels_or_raise(model)

    weights = [k.weight.numpy() for k in kernels]
    masks = [np.ones_like(w) if allow_revival else k.mask.numpy() for k, w in zip(kernels, weights)]
    already = [m.size - int(np.count_nonzero(m)) for m in masks]
    total = sum(m.size for m in masks)
    target = _criteria.round_count(sparsity, total)
    if target < sum(already):
        raise ValueError(
            f"cannot prune to sparsity {sparsity}: the model is already "
            f"{sum(already) / total:.4f} sparse ({sum(already)} of {total} weights pruned), "
            "and IMP never revives pruned weights"
        )

    effective = [w * m.astype(w.dtype, copy=False) for w, m in zip(weights, masks)]
    selection = criterion_fn(effective, sparsity)
    _check_selection(selection, kernels, criterion)
    ranked = [_rank_pruned_first(s, m, n) for s, m, n in zip(selection.scores, masks, already)]
    kept_minimum = _min_kept_counts(kernels, min_kept_per_layer)
    if selection.layer_counts is None and kept_minimum is not None:
        caps = [max(k.size - keep, done) for k, keep, done in zip(kernels, kept_minimum, already)]
        if sum(caps) < target:
            raise ValueError(
                f"min_kept_per_layer={min_kept_per_layer!r} keeps {total - sum(caps)} of {total} weights, so at "
                f"most sparsity {sum(caps) / total:.4f} can be reached, not {sparsity}")
        pruned = select_lowest_capped(ranked, target, caps)
    elif selection.layer_counts is None:
        pruned = select_lowest(ranked, target)
    else:
        for kernel, count, done in zip(kernels, selection.layer_counts, already):
            if count < done:
                raise ValueError(
                    f"criterion {criterion!r} allots {count} pruned weights to layer "
                    f"{kernel.name!r}, which already has {done}; IMP never revives weights. "
                    "Keep one criterion for all pruning steps of a model."
                )
        pruned = [select_lowest([r], count)[0] for r, count in zip(ranked, selection.layer_counts)]

    for kernel, weight, selected in zip(kernels, weights, pruned):
        keep = np.logical_not(selected).astype(weight.dtype)
        kernel.mask.assign(keep.astype(kernel.mask.dtype.as_numpy_dtype, copy=False))
        if zero_pruned:
            kernel.weight.assign(np.multiply(weight, keep, out=keep))
    result = {k.name: float(np.count_nonzero(p)) / p.size for k, p in zip(kernels, pruned)}
    emptied = [k.name for k, p, done in zip(kernels, pruned, already) if done < p.size == np.count_nonzero(p)]
    if emptied:
        warnings.warn(
            f"tfimp.prune: pruning {model.name!r} to sparsity {sparsity} with {criterion!r} removed every weight "
            f"of {len(emptied)} layers: {emptied}. An emptied layer disconnects the network (layer collapse); on "
            "an untrained model magnitudes say little, so train before pruning, or keep a minimum per layer with "
            "min_kept_per_layer=...", stacklevel=2)
    return result


def emptied_layers(layer_sparsities: dict[str, float]) -> list[str]:
    """The names whose sparsity is 1 in a :func:`prune` result (layers with no weight left)."""
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


def _check_selection(selection, kernels, criterion: str) -> None:
    if not isinstance(selection, _criteria.Selection):
        raise TypeError(f"criterion {criterion!r} returned {type(selection).__name__}, expected Selection")
    if len(selection.scores) != len(kernels):
        raise ValueError(
            f"criterion {criterion!r} returned {len(selection.scores)} score arrays for {len(kernels)} kernels"
        )
    for kernel, score in zip(kernels, selection.scores):
        if tuple(np.shape(score)) != kernel.shape:
            raise ValueError(
                f"criterion {criterion!r} returned scores of shape {np.shape(score)} for layer "
                f"{kernel.name!r} of shape {kernel.shape}"
            )
    if selection.layer_counts is not None:
        if len(selection.layer_counts) != len(kernels):
            raise ValueError(f"criterion {criterion!r} returned {len(selection.layer_counts)} layer counts")
        for kernel, count in zip(kernels, selection.layer_counts):
            if not 0 <= count <= kernel.size:
                raise ValueError(
                    f"criterion {criterion!r} allots {count} pruned weights to layer {kernel.name!r} "
                    f"of size {kernel.size}"
                )


def _zero_counting_arrays(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """What sparsity counts: the masks of a wrapped model, else the weights of every kind tfimp prunes."""
    tfmot_glue.check_tf_keras_model(model)
    kernels = tfmot_glue.prunable_kernels(model)
    if kernels:
        return [(k.name, k.mask.numpy()) for k in kernels]
    arrays = [(weight.name, weight.variable.numpy()) for weight in tfmot_glue.covered_weights(model)]
    if not arrays:
        raise ValueError(f"model {model.name!r} has no weight of a kind tfimp prunes (see tfimp.coverage)")
    return arrays


def layer_sparsity(model: keras.Model) -> dict[str, float]:
    """Sparsity of each prunable kernel, by layer name (the layers' own names, joined by "/" when nested).

    For a wrapped model: the fraction of masked-out weights of each wrapped
    weight. For a stripped or unwrapped model: the fraction of exact zeros in
    each weight of a kind tfimp prunes (``tfimp.coverage.KINDS``).
    """
    return {name: 1.0 - float(np.count_nonzero(a)) / a.size for name, a in _zero_counting_arrays(model)}


#: What :func:`sparsity` can count over.
SPARSITY_SCOPES = ("prunable", "all")


def sparsity(model: keras.Model, over: str = "prunable") -> float:
    """Overall sparsity of ``model``.

    Args:
      over: ``"prunable"`` (default): the fraction of pruned weights over all
        wrapped weights (the masks; on a stripped model, the zeros of every
        weight of a kind tfimp prunes), the number IMP's targets refer to.
        ``"all"``: the fraction of exact zeros over all of the model's
        trainable parameters (biases, normalisation and every weight left
        dense included; tfimp's masks are not parameters).

    Raises:
      ValueError: an unknown ``over``; nothing to count.
    """
    if over not in SPARSITY_SCOPES:
        raise ValueError(f"over must be one of {SPARSITY_SCOPES}, got {over!r}")
    if over == "all":
        tfmot_glue.check_tf_keras_model(model)
        masks = {id(k.weight): k.mask.numpy() != 0 for k in tfmot_glue.prunable_kernels(model)}
        total = zeros = 0
        for variable in model.trainable_weights:
            values = variable.numpy()
            alive = values != 0
            if id(variable) in masks:
                alive &= masks[id(variable)]
            total += values.size
            zeros += values.size - int(np.count_nonzero(alive))
        if not total:
            raise ValueError(f"model {model.name!r} has no trainable parameters")
        return zeros / total
    arrays = [a for _, a in _zero_counting_arrays(model)]
    return float(1.0 - sum(np.count_nonzero(a) for a in arrays) / sum(a.size for a in arrays))
