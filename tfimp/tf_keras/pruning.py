"""Setting masks by a policy across all layers: exact, monotone, fast.

``prune`` reads every wrapped kernel and its mask, asks a criterion (see
``tfimp.criteria``) for scores and, for layer-wise criteria, per-layer counts,
and then selects exactly that many weights:

* already-pruned weights are always selected first (IMP never revives);
* among equal scores, the weight that comes first in model order (layer
  order, then row-major position) is pruned first;
* selection is linear time, never a full sort (see ``tfimp.selection``).

The choice itself is framework-free (``tfimp.core.masking``); this module
reads and writes the tf_keras variables.
"""

from __future__ import annotations


import numpy as np

from tfimp.core import channel_graph as _channel_graph
from tfimp.core import channel_selection as _channel_selection
from tfimp.core import channel_weights as _channel_weights
from tfimp.core import criteria as _criteria
from tfimp.core import masking as _masking
from tfimp.core import notices as _notices
from tfimp.core import structures as _structures
from tfimp.tf_keras import channels as _channels
from tfimp.tf_keras import tfmot_glue, wrapping
from tfimp.tf_keras._backend import keras


def _kernels_or_raise(model) -> list[tfmot_glue.PrunableKernel]:
    wrapping.check_tf_keras_model(model)
    unbuilt = wrapping.unbuilt_wrappers(model)
    kernels = wrapping.prunable_kernels(model)
    if unbuilt and (not kernels or not model.built):
        raise ValueError(
            f"model {model.name!r} has not been called yet ({len(unbuilt)} wrapped layers without weights, e.g. "
            f"{unbuilt[0]!r}); run it once on a batch, `model(x[:1])`, or `model.build(input_shape)`, then prune"
        )
    if unbuilt:
        _notices.warn(f"tfimp.prune: {len(unbuilt)} wrapped layers of {model.name!r} have no weights (never "
                      f"called) and are left out of the selection: {unbuilt}")
    if kernels:
        return kernels
    if wrapping.covered_weights(model):
        raise ValueError(
            f"model {model.name!r} is not wrapped for pruning; call `model = tfimp.wrap(model)` first"
        )
    raise ValueError(f"model {model.name!r} has nothing to prune: no weight of a kind tfimp prunes "
                     "(see tfimp.coverage)")


def prune(model: keras.Model, sparsity: float, criterion: str = "global", *, allow_revival: bool = False,
          zero_pruned: bool = True, min_kept_per_layer: int | float | None = None,
          structure: str = "unstructured") -> dict[str, float]:
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
      structure: which weights are pruned together (:mod:`tfimp.core.structures`):
        ``"unstructured"`` (default: every weight on its own), ``"N:M"``
        (e.g. ``"2:4"``: at most N nonzero weights in every group of M along
        each kernel's input axis; ``sparsity`` prunes ``round(sparsity * M)``
        of every group and may not exceed ``1 - N/M``) or ``"block:RxC"``
        (whole R x C blocks of each kernel's 2-D view, ranked by mean |w|
        with ``criterion``; ``sparsity`` and the counts are in blocks) or
        ``"channels"`` (whole output channels ranked by L2 norm;
        ``"channels:l1"``: L1; ``sparsity`` is the share of the prunable
        weights that :func:`tfimp.slim` removes: a channel takes its filter
        and the next layers' weights that read it; a pruned channel's bias and
        the gamma and beta of a BatchNormalization reading it are zeroed too,
        and held at zero after every optimizer step; a depthwise kernel is
        masked where it reads a pruned channel, see :mod:`tfimp.tf_keras.channels`).

    Without the guard, a step that empties a layer warns, naming it.

    Returns:
      Each wrapped kernel's sparsity, by layer name (counted in the
      structure's unit: blocks for ``block:RxC``; for ``channels``, the share
      of the kernel's weights the slimmed model no longer has).

    Raises:
      ValueError: sparsity outside [0, 1); unknown criterion or structure; the
        model is not wrapped or has nothing to prune; the target is below the
        sparsity already reached; the criterion or the structure cannot reach
        the target.
      TypeError: ``model`` is not a tf_keras model.
    """
    sparsity = _masking.validate_sparsity(sparsity)
    _criteria.get(criterion)
    _structures.get(structure)
    kernels = _kernels_or_raise(model)
    weights = [k.weight.numpy() for k in kernels]
    channels = isinstance(_structures.get(structure), _structures.Channels)
    masks = [k.mask.numpy() for k in kernels]
    options = {"allow_revival": allow_revival, "min_kept_per_layer": min_kept_per_layer}
    step = (_channel_selection.select_channels(kernels, weights, masks, _channels.nodes(model), sparsity, criterion,
                                               structure, **options) if channels else
            _masking.select_masks([k.name for k in kernels], weights, masks, sparsity, criterion, structure=structure,
                                  **options))
    for kernel, weight, keep in zip(kernels, weights, step.keep):
        kernel.mask.assign(keep.astype(kernel.mask.dtype.as_numpy_dtype, copy=False))
        if zero_pruned:
            kernel.weight.assign(np.multiply(weight, keep, out=keep))
    if zero_pruned and channels:
        _channel_graph.zero_dead_channels(kernels, [k.mask.numpy() for k in kernels],
                                          nodes=_channels.nodes(model), get_layer=model.get_layer,
                                          zero=_channels.zero)
        _channels.hold(model)
    if step.emptied:
        _notices.warn(_masking.collapse_message(model.name, sparsity, criterion, step.emptied))
    return step.layer_sparsities


emptied_layers = _masking.emptied_layers


def load_model(path: str, **options) -> keras.Model:
    """:func:`tfimp.tf_keras.wrapping.load_model`; a model pruned with ``structure="channels"`` (every mask keeps
    or prunes whole output channels) gets back the hold of its pruned channels' biases and BatchNormalization
    (:func:`tfimp.tf_keras.channels.hold`), so training it on keeps them zero."""
    model = wrapping.load_model(path, **options)
    kernels = wrapping.prunable_kernels(model) if isinstance(model, keras.Model) else []
    if _channel_graph.pruned_by_channels([k.mask.numpy() for k in kernels]):
        _channels.hold(model)
    return model


def _zero_counting_arrays(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """What sparsity counts: the masks of a wrapped model, else the weights of every kind tfimp prunes."""
    wrapping.check_tf_keras_model(model)
    kernels = wrapping.prunable_kernels(model)
    if kernels:
        return [(k.name, k.mask.numpy()) for k in kernels]
    arrays = [(weight.name, weight.variable.numpy()) for weight in wrapping.covered_weights(model)]
    if not arrays:
        raise ValueError(f"model {model.name!r} has no weight of a kind tfimp prunes (see tfimp.coverage)")
    return arrays


def layer_sparsity(model: keras.Model, structure: str = "unstructured") -> dict[str, float]:
    """Sparsity of each prunable kernel, by layer name (the layers' own names, joined by "/" when nested).

    For a wrapped model: the fraction of masked-out weights of each wrapped
    weight. For a stripped or unwrapped model: the fraction of exact zeros in
    each weight of a kind tfimp prunes (``tfimp.coverage.KINDS``). With a
    ``structure``, counted in its unit (see :func:`sparsity`); ``channels``:
    the share of each kernel's weights the slimmed model no longer has.
    """
    if isinstance(_structures.get(structure), _structures.Channels):
        return {name: removed / size if size else 0.0 for name, (removed, size) in channel_counts(model).items()}
    return _structures.layer_sparsities(_zero_counting_arrays(model), structure)


def channel_counts(model: keras.Model) -> dict[str, tuple[int, int]]:
    """Per prunable kernel, (weights the slimmed model no longer has, weights): ``structure="channels"``'s count."""
    wrapping.check_tf_keras_model(model)
    kernels = wrapping.prunable_kernels(model)
    if kernels:
        entries = [(k.name, k.mask.numpy(), layer, class_name)
                   for k, (layer, class_name, _) in zip(kernels, _channel_weights.kernel_entries(kernels))]
    else:
        entries = [(w.name, w.variable.numpy(), w.outer.name, type(w.layer).__name__)
                   for w in wrapping.covered_weights(model)]
    if not entries:
        raise ValueError(f"model {model.name!r} has no weight of a kind tfimp prunes (see tfimp.coverage)")
    return _channel_weights.count(entries, _channels.nodes(model))


#: What :func:`sparsity` can count over.
SPARSITY_SCOPES = ("prunable", "all")


def sparsity(model: keras.Model, over: str = "prunable", structure: str = "unstructured") -> float:
    """Overall sparsity of ``model``.

    Args:
      over: ``"prunable"`` (default): the fraction of pruned weights over all
        wrapped weights (the masks; on a stripped model, the zeros of every
        weight of a kind tfimp prunes), the number IMP's targets refer to.
        ``"all"``: the fraction of exact zeros over all of the model's
        trainable parameters (biases, normalisation and every weight left
        dense included; tfimp's masks are not parameters).
      structure: count in a structure's unit (:mod:`tfimp.core.structures`,
        over the prunable weights): ``"block:RxC"``, the fraction of whole
        zero blocks; ``"N:M"``, the fraction of weights an N:M kernel skips
        (zeros up to M - N in each group: 0.5 for an exact 2:4 model).

    Raises:
      ValueError: an unknown ``over`` or ``structure``; a structure with
        ``over="all"``; nothing to count.
    """
    if over not in SPARSITY_SCOPES:
        raise ValueError(f"over must be one of {SPARSITY_SCOPES}, got {over!r}")
    form = _structures.for_sparsity(over, structure)
    if over == "all":
        wrapping.check_tf_keras_model(model)
        masks = {id(k.weight): k.mask.numpy() for k in wrapping.prunable_kernels(model)}
        zeros, total = _masking.zeros_over_all((v.numpy(), masks.get(id(v))) for v in model.trainable_weights)
        if not total:
            raise ValueError(f"model {model.name!r} has no trainable parameters")
        return zeros / total
    if isinstance(form, _structures.Channels):
        counts = list(channel_counts(model).values())
        return sum(r for r, _ in counts) / sum(s for _, s in counts)
    arrays = [a for _, a in _zero_counting_arrays(model)]
    if form.structured:
        return _structures.unit_sparsity(form, arrays)
    return float(1.0 - sum(np.count_nonzero(a) for a in arrays) / sum(a.size for a in arrays))
