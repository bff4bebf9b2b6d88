"""Wrapping, pruning, stripping and counting Keras 3 models: ``tfimp.wrap``/``prune``/``strip``/``sparsity`` for Keras 3.

The behaviour is the tf_keras front end's (``tfimp.tf_keras.tfmot_glue``,
``tfimp.pruning``): the same coverage by kind, the same exact global
selection (:mod:`tfimp.core.masking`), the same names. What differs is how
masks act (:class:`tfimp.keras3.wrapper.MaskedLayer`, in the forward pass)
and that pruning also zeroes the optimizer's slots at pruned positions, so
no optimizer state can move a pruned weight again.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

import keras
import numpy as np

from tfimp.keras3 import _private
from tfimp.keras3 import channels as _channels
from tfimp.core import coverage as _core_coverage
from tfimp.core import channel_graph as _channel_graph
from tfimp.core import channel_selection as _channel_selection
from tfimp.core import channel_weights as _channel_weights
from tfimp.core import criteria as _criteria
from tfimp.core import masking as _masking
from tfimp.core import notices as _notices
from tfimp.core import structures as _structures
from tfimp.keras3 import layer_specs as coverage
from tfimp.keras3.wrapper import MaskedLayer, ReparamMaskedLayer

_log = logging.getLogger("tfimp")

#: What :func:`sparsity` can count over.
SPARSITY_SCOPES = ("prunable", "all")


PrunableKernel = _masking.PrunableKernel


def check_keras3_model(model, what: str = "model") -> None:
    """Raises TypeError unless ``model`` is a Keras 3 model."""
    if isinstance(model, keras.Model):
        return
    raise TypeError(f"expected a Keras 3 Model as {what}, got {type(model).__name__} "
                    f"from {type(model).__module__!r}")


# --------------------------------------------------------------------------
# Traversal
# --------------------------------------------------------------------------


def _direct_sublayers(layer) -> list:
    return _private.flatten_layers(layer, recursive=False)


def _walk(layer, prefix: str, seen: set[int]) -> Iterator[tuple[str, keras.layers.Layer]]:
    """(path name, layer) below ``layer`` in model order; a wrapper is named by its layer and not entered."""
    return _core_coverage.walk(layer, _direct_sublayers, MaskedLayer, prefix, seen)


def wrappers(model: keras.Model) -> list[tuple[str, MaskedLayer]]:
    """(path name, wrapper) for every :class:`MaskedLayer` of ``model``, in model order."""
    return [(path, layer) for path, layer in _walk(model, "", set()) if isinstance(layer, MaskedLayer)]


def _weight_label(path: str) -> str:
    """A readable name for a weight path: ``forward_layer.cell.kernel`` -> ``forward_layer/kernel``."""
    return "/".join(step.lstrip("_") for step in path.split(".") if step != "cell")


def prunable_kernels(model: keras.Model) -> list[PrunableKernel]:
    """Every masked weight of ``model``, in model order (a wrapper that was never built has none)."""
    kernels = []
    for path, wrapper in wrappers(model):
        if not wrapper.masks:
            continue
        paths = wrapper.weight_paths
        for label, weight, mask in zip(paths, wrapper.masked_weights(), wrapper.masks):
            name = path if len(paths) == 1 else f"{path}/{_weight_label(label)}"
            kernels.append(PrunableKernel(name, weight, mask, wrapper))
    return kernels


def covered_weights(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """(name, variable) of every built weight of a kind tfimp prunes, of an unwrapped or stripped model."""
    return [(name, variable) for name, variable, _, _ in covered_weight_records(model)]


def covered_weight_records(model: keras.Model) -> list[tuple[str, keras.Variable, str, keras.layers.Layer]]:
    """(name, variable, kind, layer) of every built weight of a kind tfimp prunes outside a wrapper."""
    found, inside = [], set()
    for path, layer in _walk(model, "", set()):
        if id(layer) in inside:
            inside.update(id(sub) for sub in _direct_sublayers(layer))
            continue
        layer_specs = coverage.specs(layer)
        if not layer_specs:
            continue
        inside.update(id(sub) for sub in _direct_sublayers(layer))
        for spec_path, kind in layer_specs:
            try:
                variable = _core_coverage.resolve(layer, spec_path)
            except (AttributeError, TypeError, IndexError):
                continue  # never built
            if variable is None:
                continue
            found.append((path if len(layer_specs) == 1 else f"{path}/{_weight_label(spec_path)}", variable, kind,
                          layer))
    return found


# --------------------------------------------------------------------------
# Wrapping
# --------------------------------------------------------------------------


def wrap(model: keras.Model, *, kinds: Iterable[str] | str | None = None, exclude=None,
         verbose: int = 0, wrapper: Callable | None = None) -> keras.Model:
    """Wraps every prunable weight of a Keras 3 ``model`` (see ``tfimp.wrap``; the same arguments and rules).

    ``wrapper(layer, weight_paths)`` makes each wrapper (default
    :class:`MaskedLayer`; the baselines pass a
    :class:`tfimp.keras3.wrapper.ReparamMaskedLayer` factory).

    Sequential and functional models are copied first, weights included, so
    the model passed in is left as it was; subclassed models are wrapped in
    place (their layer attributes and the layers in their lists and dicts
    are replaced, in the places Keras tracks them) and returned.

    Raises:
      TypeError: not a Keras 3 model.
      ValueError: an unknown kind; ``exclude`` names a layer that is not in
        the model; nothing to prune; the model was never built.
    """
    check_keras3_model(model)
    if wrappers(model):
        return _masking.already_wrapped(model, kinds, exclude, wrapper)
    chosen = _core_coverage.normalize_kinds(kinds)
    excluded = _core_coverage.exclusion(exclude, (layer.name for _, layer in _walk(model, "", set())))
    if not model.built:
        raise ValueError(f"model {model.name!r} has not been built yet; run it once on a batch, `model(x[:1])`, "
                         "or `model.build(input_shape)`, then wrap it")
    _masking.check_finite(((v.path.removeprefix(f"{model.name}/"), keras.ops.convert_to_numpy(v.value))
                           for v in model.trainable_weights), f"wrap model {model.name!r}")
    left_out: dict[str, str] = {}
    made: dict[int, MaskedLayer] = {}  # a layer used in two graphs (Gemma's tied embedding) gets one wrapper

    def wrapper_for(layer) -> MaskedLayer | None:
        if id(layer) in made:
            return made[id(layer)]
        if isinstance(layer, MaskedLayer) or excluded(layer):
            return None
        paths = [path for path, _ in coverage.specs(layer, chosen)]
        if not paths:
            return None
        if not layer.built:
            left_out[layer.name] = "never called: no weights"
            return None
        made[id(layer)] = MaskedLayer(layer, paths) if wrapper is None else wrapper(layer, paths)
        return made[id(layer)]

    if _private.is_functional(model):
        wrapped = _wrap_graph(_independent_copy(model), wrapper_for)
    else:
        _wrap_in_place(model, wrapper_for)
        wrapped = model
    if not wrappers(wrapped):
        raise _core_coverage.nothing_to_prune(model.name, chosen, exclude, left_out)
    _after_structure_change(wrapped)
    _core_coverage.say_what_was_wrapped(describe(wrapped, left_out), model.name, chosen, left_out, verbose)
    return wrapped


def _independent_copy(model: keras.Model) -> keras.Model:
    """A copy of a Sequential/functional model with its own variables and the same values.

    A functional model whose class has its own config (a keras-hub
    backbone) is rebuilt from that config, the way its class saves and loads
    it: its layers' configs need not round-trip one by one (keras-hub's
    ``ViTPatchingAndEmbedding`` does not).
    """
    if _has_own_config(model):
        copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    else:
        copy = keras.models.clone_model(model, clone_function=_clone_layer, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _clone_layer(layer):
    """A fresh layer from ``layer``'s config, as ``clone_model`` makes one; a ``Lambda`` keeps its function.

    A ``Lambda``'s config holds its function as bytecode, which Keras' safe
    mode refuses to load; here it is the user's own function, already running
    in this process, not code read from a file.
    """
    if isinstance(layer, keras.layers.Lambda):
        return keras.layers.Lambda.from_config(layer.get_config(), safe_mode=False)
    return layer.__class__.from_config(layer.get_config())


def _has_own_config(model: keras.Model) -> bool:
    """Whether a class outside Keras defines ``model``'s ``get_config`` (keras-hub's backbones and tasks do)."""
    for klass in type(model).__mro__:
        if klass.__module__.startswith("keras.src."):
            return False
        if "get_config" in vars(klass):
            return True
    return False


def _wrap_graph(model: keras.Model, wrapper_for: Callable) -> keras.Model:
    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an op called on symbolic tensors (``x[0]``, ``ops.multiply``): no weights, kept as is
        if isinstance(layer, keras.Model) and _private.is_functional(layer):
            return _wrap_graph(layer, wrapper_for)
        wrapper = wrapper_for(layer)
        if wrapper is not None:
            return wrapper
        if _direct_sublayers(layer):
            _wrap_in_place(layer, wrapper_for)
        return layer

    wrapped = keras.models.clone_model(model, clone_function=clone_function)
    if _has_own_config(model):
        # Keras rebuilds a subclassed functional model as a plain one; strip rebuilds the class from this.
        object.__setattr__(wrapped, _SOURCE_CONFIG, keras.saving.serialize_keras_object(model))
    return wrapped


#: Where a wrapped functional model keeps the config of the class it was built from (a keras-hub task).
_SOURCE_CONFIG = "_tfimp_source_config"


def _rebuild_source(wrapped: keras.Model, source_config: dict) -> keras.Model:
    """A new instance of the class ``wrapped`` was built from (keras-hub's ``ResNetBackbone``), holding its weights.

    The wrapped model is left as it is: its weights, masks left out, are
    copied in the order both list them (the graph's).

    Raises:
      ValueError: the rebuilt model's weights do not line up with the wrapped model's.
    """
    rebuilt = keras.saving.deserialize_keras_object(source_config)
    masks = {id(kernel.mask) for kernel in prunable_kernels(wrapped)}
    weights = [w for w in wrapped.weights if id(w) not in masks]
    shapes = [tuple(w.shape) for w in weights], [tuple(w.shape) for w in rebuilt.weights]
    if shapes[0] != shapes[1]:
        raise ValueError(f"tfimp.strip: {type(rebuilt).__name__} {rebuilt.name!r} rebuilt from its config has "
                         f"weights of shapes {shapes[1]}, the wrapped model {shapes[0]}: they do not line up, so "
                         "its values cannot be copied in")
    rebuilt.set_weights([keras.ops.convert_to_numpy(w.value) for w in weights])
    return rebuilt


_KERAS_OWN_ATTRIBUTES: set[str] = set()


def _keras_own_attributes() -> set[str]:
    """The attributes Keras' own ``Layer``/``Model`` set on every instance (its tracker, lists, caches).

    Each probe is given a sublayer first: on TensorFlow, TF's checkpoint tracking
    adds its own ``_self_*`` attributes (a dict of dependencies by name among
    them) only once a layer holds another, and those must not be walked as if
    the user's class had set them.
    """
    if not _KERAS_OWN_ATTRIBUTES:
        for probe in (keras.layers.Layer(), keras.Model()):
            probe.tfimp_probe_child = keras.layers.Layer()
            _KERAS_OWN_ATTRIBUTES.update(name for name in vars(probe) if name != "tfimp_probe_child")
    return _KERAS_OWN_ATTRIBUTES


def _attributes(container) -> list[tuple[str, object]]:
    """The attributes ``container``'s own class set (public or private), without Keras' own bookkeeping.

    Private ones count: keras-hub's blocks hold their sublayers as
    ``self._self_attention_layer``, ``self._feedforward_intermediate_dense``.
    On torch also its child modules, which torch keeps out of ``vars``.
    """
    own = _keras_own_attributes()
    found = [(name, value) for name, value in vars(container).items() if name not in own]
    if keras.backend.backend() == "torch":
        known = {name for name, _ in found}
        found += [(name, child) for name, child in container.named_children() if name not in known | own]
    return found


def _set_attribute(container, name: str, new) -> None:
    """Sets a layer attribute without Keras tracking it again (it was replaced in the tracker already)."""
    if name in vars(container):
        object.__setattr__(container, name, new)
    else:  # a torch child module: torch's own registry of children, in the old one's place
        import torch  # noqa: PLC0415  (torch backend only)

        torch.nn.Module.add_module(container, name, new)


def _replace_in_place(container, replacement: Callable) -> None:
    """Puts ``replacement(layer)`` where ``container`` holds each sublayer: attributes, lists, tuples, dicts."""
    for name, value in _attributes(container):
        if isinstance(value, keras.layers.Layer):
            new = replacement(value)
            if new is not value:
                _private.replace_tracked_layer(container, value, new)
                _set_attribute(container, name, new)  # tracked above, in the old one's place
            continue
        if isinstance(value, dict):
            for key, item in list(value.items()):
                if isinstance(item, keras.layers.Layer) and (new := replacement(item)) is not item:
                    _private.replace_tracked_layer(container, item, new)
                    dict.__setitem__(value, key, new)
        elif isinstance(value, (list, tuple)):
            items = list(value)
            changed = False
            for index, item in enumerate(items):
                if isinstance(item, keras.layers.Layer) and (new := replacement(item)) is not item:
                    _private.replace_tracked_layer(container, item, new)
                    items[index] = new
                    changed = True
            if changed and isinstance(value, list):
                list.__setitem__(value, slice(None), items)
            elif changed:
                object.__setattr__(container, name, type(value)(items))


def _wrap_in_place(container, wrapper_for: Callable, done: dict | None = None) -> None:
    done = {} if done is None else done  # id(layer) -> what replaced it: a layer held twice gets one wrapper

    def replacement(layer):
        if id(layer) in done:
            return done[id(layer)]
        done[id(layer)] = layer  # a layer that holds itself (or a cycle) is entered once
        if isinstance(layer, keras.Model) and _private.is_functional(layer):
            new = _wrap_graph(layer, wrapper_for)
        elif (wrapper := wrapper_for(layer)) is not None:
            wrapper.build()
            new = wrapper
        else:
            if not isinstance(layer, MaskedLayer):
                _wrap_in_place(layer, wrapper_for, done)
            new = layer
        done[id(layer)] = new
        return new

    _replace_in_place(container, replacement)


def _after_structure_change(model: keras.Model) -> None:
    """What Keras' own ``Model.quantize`` does after changing layers: retrace, and re-list torch parameters."""
    for name in ("train_function", "test_function", "predict_function"):
        if hasattr(model, name):
            setattr(model, name, None)
    if keras.backend.backend() == "torch":
        _private.retrack_torch_parameters(model)


def describe(model: keras.Model, left_out: dict[str, str] | None = None) -> _core_coverage.Coverage:
    """The coverage of ``model``: parameters under masks and left dense, by layer type."""
    masked = {id(kernel.weight) for kernel in prunable_kernels(model)}
    leaves = _core_coverage.children_first(list(_walk(model, "", set())))
    entries = [(type(layer.layer if isinstance(layer, MaskedLayer) else layer).__name__, layer.trainable_weights)
               for _, layer in leaves]
    return _core_coverage.tally(entries, masked, _core_coverage.count_parameters(model.trainable_weights), left_out)


# --------------------------------------------------------------------------
# Pruning and counting
# --------------------------------------------------------------------------


def _kernels_or_raise(model: keras.Model) -> list[PrunableKernel]:
    check_keras3_model(model)
    kernels = prunable_kernels(model)
    if kernels:
        return kernels
    if covered_weights(model):
        raise ValueError(f"model {model.name!r} is not wrapped for pruning; call `model = tfimp.wrap(model)` first")
    raise ValueError(f"model {model.name!r} has nothing to prune: no weight of a kind tfimp prunes "
                     "(see tfimp.coverage)")


def prune(model: keras.Model, sparsity: float, criterion: str = "global", *, allow_revival: bool = False,
          zero_pruned: bool = True, min_kept_per_layer: int | float | None = None,
          structure: str = "unstructured") -> dict[str, float]:
    """Prunes a wrapped Keras 3 model to ``sparsity`` with ``criterion`` (see ``tfimp.prune``: the same rules).

    Besides the masks and the zeros, the slots of a built optimizer
    (momentum, Adam's moments, ...) are zeroed at the pruned positions: the
    forward pass gives pruned weights a zero gradient, so with zero state
    no step moves them again. ``zero_pruned=False`` (DPF, whose pruned
    weights keep learning) leaves both the weights and the slots as they are.
    ``structure``: ``"unstructured"`` (default), ``"N:M"``, ``"block:RxC"`` or
    ``"channels"`` (:mod:`tfimp.core.structures`; see ``tfimp.prune``).
    """
    sparsity = _masking.validate_sparsity(sparsity)
    _criteria.get(criterion)
    channels = isinstance(_structures.get(structure), _structures.Channels)
    kernels = _kernels_or_raise(model)
    _sync_training_state(model)
    weights = [keras.ops.convert_to_numpy(k.weight.value) for k in kernels]
    masks = [keras.ops.convert_to_numpy(k.mask.value) for k in kernels]
    options = {"allow_revival": allow_revival, "min_kept_per_layer": min_kept_per_layer}
    step = (_channel_selection.select_channels(kernels, weights, masks, _channels.nodes(model), sparsity, criterion,
                                               structure, **options) if channels else
            _masking.select_masks([k.name for k in kernels], weights, masks, sparsity, criterion, structure=structure,
                                  **options))
    optimizer = _built_optimizer(model)
    for kernel, weight, keep in zip(kernels, weights, step.keep):
        kernel.mask.assign(keep)
        if zero_pruned:
            kernel.weight.assign(weight * keep)
        if optimizer is not None and zero_pruned:  # DPF (zero_pruned=False): pruned weights keep their momentum
            for slot in _private.slot_variables(optimizer, kernel.weight):
                slot.assign(keras.ops.convert_to_numpy(slot.value) * keep.astype(slot.dtype))
    if zero_pruned and channels:
        _channel_graph.zero_dead_channels(kernels, step.keep, nodes=_channels.nodes(model),
                                          get_layer=model.get_layer, zero=_channels.zero)
        _channels.hold(model, kernels)
    if step.emptied:
        _notices.warn(_masking.collapse_message(model.name, sparsity, criterion, step.emptied))
    return step.layer_sparsities


emptied_layers = _masking.emptied_layers


def _sync_training_state(model: keras.Model) -> None:
    """On JAX, writes a running fit's latest state back to the variables before they are read."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def _built_optimizer(model: keras.Model):
    """The optimizer that steps the weights (inside a LossScaleOptimizer), if the model has a built one."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return optimizer if optimizer is not None and optimizer.built else None


def _zero_counting_arrays(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    check_keras3_model(model)
    kernels = prunable_kernels(model)
    if kernels:
        return [(k.name, keras.ops.convert_to_numpy(k.mask.value)) for k in kernels]
    arrays = [(name, keras.ops.convert_to_numpy(variable.value)) for name, variable in covered_weights(model)]
    if not arrays:
        raise ValueError(f"model {model.name!r} has no weight of a kind tfimp prunes (see tfimp.coverage)")
    return arrays


def layer_sparsity(model: keras.Model, structure: str = "unstructured") -> dict[str, float]:
    """Sparsity of each prunable weight, by layer name (see ``tfimp.layer_sparsity``; ``structure``: counted in
    its unit; ``channels``: the share of each kernel's weights the slimmed model no longer has)."""
    if isinstance(_structures.get(structure), _structures.Channels):
        return {name: removed / size if size else 0.0 for name, (removed, size) in channel_counts(model).items()}
    return _structures.layer_sparsities(_zero_counting_arrays(model), structure)


def channel_counts(model: keras.Model) -> dict[str, tuple[int, int]]:
    """Per prunable kernel, (weights the slimmed model no longer has, weights): ``structure="channels"``'s count."""
    check_keras3_model(model)
    _sync_training_state(model)
    kernels = prunable_kernels(model)
    if kernels:
        entries = [(k.name, keras.ops.convert_to_numpy(k.mask.value), layer, class_name)
                   for k, (layer, class_name, _) in zip(kernels, _channel_weights.kernel_entries(kernels))]
    else:
        entries = [(name, keras.ops.convert_to_numpy(variable.value), layer.name, type(layer).__name__)
                   for name, variable, _, layer in covered_weight_records(model)]
    if not entries:
        raise ValueError(f"model {model.name!r} has no weight of a kind tfimp prunes (see tfimp.coverage)")
    return _channel_weights.count(entries, _channels.nodes(model))


def sparsity(model: keras.Model, over: str = "prunable", structure: str = "unstructured") -> float:
    """Overall sparsity of a Keras 3 ``model`` (see ``tfimp.sparsity``: ``over="prunable"`` or ``"all"``;
    ``structure``: over the prunable weights, counted in that structure's unit; ``channels``: the share of
    them the slimmed model no longer has)."""
    if over not in SPARSITY_SCOPES:
        raise ValueError(f"over must be one of {SPARSITY_SCOPES}, got {over!r}")
    form = _structures.for_sparsity(over, structure)
    if over == "all":
        check_keras3_model(model)
        masks = {id(k.weight): keras.ops.convert_to_numpy(k.mask.value) for k in prunable_kernels(model)}
        zeros, total = _masking.zeros_over_all((keras.ops.convert_to_numpy(v.value), masks.get(id(v)))
                                               for v in model.trainable_weights)
        if not total:
            raise ValueError(f"model {model.name!r} has no trainable parameters")
        return zeros / total
    if isinstance(form, _structures.Channels):
        counts = list(channel_counts(model).values())
        return sum(r for r, _ in counts) / sum(size for _, size in counts)
    arrays = [a for _, a in _zero_counting_arrays(model)]
    if form.structured:
        return _structures.unit_sparsity(form, arrays)
    zeros, total = _masking.count_zeros(arrays)
    return zeros / total


# --------------------------------------------------------------------------
# Stripping and loading
# --------------------------------------------------------------------------


def strip(model: keras.Model) -> keras.Model:
    """Removes every :class:`MaskedLayer`; the result is a plain Keras 3 model holding the zeros.

    Its ``.keras`` file loads on any backend without tfimp. Sequential and
    functional models are rebuilt around the wrapped layers (sharing their
    variables); subclassed models are unwrapped in place.

    Raises:
      ValueError: a wrapper is left where tfimp cannot replace it (naming it).
    """
    check_keras3_model(model)
    _sync_training_state(model)
    for kernel in prunable_kernels(model):
        kernel.weight.assign(keras.ops.convert_to_numpy(kernel.weight.value)
                             * keras.ops.convert_to_numpy(kernel.mask.value))
    _channels.release(model)  # the plain model trains freely, as its kernels do
    if _private.is_functional(model):
        stripped = _strip_graph(model)
    else:
        _strip_in_place(model)
        stripped = model
        _after_structure_change(stripped)
    left = [path for path, _ in wrappers(stripped)]
    if left:
        raise ValueError(f"tfimp.strip could not remove the pruning wrapper of layers {left}: they are held where "
                         "tfimp cannot replace them (tfimp looks in layer attributes, lists, tuples and dicts). Keep "
                         "such layers unwrapped with `tfimp.wrap(model, exclude=[...])`.")
    return stripped


def _strip_graph(model: keras.Model) -> keras.Model:
    """The model without wrappers; one wrapped from a class with its own config comes back as that class.

    That class is rebuilt whole from its config, models inside it included
    (rebuilding those separately would untie a layer the outer graph shares
    with them: Gemma's embedding, reused as the output layer).
    """
    source = getattr(model, _SOURCE_CONFIG, None)
    if source is not None:
        return _rebuild_source(model, source)

    def clone_function(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # an op called on symbolic tensors (``x[0]``, ``ops.multiply``): no weights, kept as is
        if isinstance(layer, keras.Model) and _private.is_functional(layer):
            return _strip_graph(layer)
        if isinstance(layer, MaskedLayer):
            return layer.layer
        if _direct_sublayers(layer):
            _strip_in_place(layer)
        return layer

    return keras.models.clone_model(model, clone_function=clone_function)


def _strip_in_place(container) -> None:
    def replacement(layer):
        if isinstance(layer, MaskedLayer):
            return layer.layer
        if isinstance(layer, keras.Model) and _private.is_functional(layer):
            return _strip_graph(layer)
        _strip_in_place(layer)
        return layer

    _replace_in_place(container, replacement)


def load_model(path: str, *, compile: bool = True, safe_mode: bool = True,
               extra_custom_objects: dict | None = None) -> keras.Model:
    """Loads a wrapped or stripped Keras 3 model saved as ``.keras`` or ``.h5`` (the masks come back with it).

    ``safe_mode`` is Keras': a ``Lambda`` layer's stored code is refused unless it is ``False``.
    """
    # A compiled model's file names tfimp's optimizer and schedules: their classes register on import.
    from tfimp.keras3 import lr, optimizers  # noqa: F401, PLC0415
    model = keras.saving.load_model(path, compile=compile, safe_mode=safe_mode, custom_objects={
        "tfimp>MaskedLayer": MaskedLayer, "tfimp>ReparamMaskedLayer": ReparamMaskedLayer,
        **(extra_custom_objects or {})})
    kernels = prunable_kernels(model) if isinstance(model, keras.Model) else []
    if _channel_graph.pruned_by_channels([keras.ops.convert_to_numpy(k.mask.value) for k in kernels]):
        _channels.hold(model, kernels)  # the biases and BatchNormalization of its pruned channels stay zero
    return model
