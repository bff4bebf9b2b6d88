"""Wrapping tf_keras models: walking their layers, ``wrap``, ``strip`` and ``load_model``.

The wrapper classes and the mask constraint they install are
:mod:`tfimp.tf_keras.tfmot_glue`'s (the one module touching tfmot internals); this
module finds the layers to wrap (Sequential and functional models are
cloned, subclassed ones changed in place, wrappers found in attributes,
lists, tuples and dicts), lists the wrapped kernels, and takes the wrappers
out again.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Callable, Iterable, Iterator, Sequence

from tfimp.tf_keras import _private
from tfimp.tf_keras import layer_specs as coverage
from tfimp.core import coverage as _core_coverage
from tfimp.core import front_end as _front_end
from tfimp.core import masking as _masking
from tfimp.tf_keras._backend import keras, tf
from tfimp.tf_keras.tfmot_glue import (Exclude, KeepPrunedConstraint, NeverPrune, PolicyPruneLowMagnitude, PrunableKernel,
                              PruneLowMagnitude, ReparamPruneLowMagnitude, install_mask_constraint, release_channels,
                              set_constraint, variable_components)

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Model checks and traversal
# --------------------------------------------------------------------------


def check_tf_keras_model(model, what: str = "model") -> None:
    """Raises TypeError unless ``model`` is a tf_keras (Keras 2) model."""
    if isinstance(model, keras.Model):
        return
    module = type(model).__module__ or ""
    if module.startswith("keras"):
        raise TypeError(
            f"tfimp needs a tf_keras (Keras 2) {what}, got a Keras 3 "
            f"{type(model).__name__} from module {module!r}. Build the model with "
            "`tfimp.keras` (which is `tf_keras`) instead of `keras`."
        )
    raise TypeError(f"expected a tf_keras Model as {what}, got {type(model).__name__}: {model!r}")


def is_graph_model(model: keras.Model) -> bool:
    """Sequential or functional (Keras can rebuild it from its config), not subclassed."""
    return _is_graph_model(model)


def _is_graph_model(model: keras.Model) -> bool:
    """Sequential or functional: models that `clone_model` can rebuild."""
    return isinstance(model, keras.Sequential) or (isinstance(model, keras.Model) and _private.is_graph_network(model))


def _direct_sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    return _private.flatten_layers(layer, recursive=False)


def _walk(layer: keras.layers.Layer, prefix: str, seen: set[int]) -> Iterator[tuple[str, keras.layers.Layer]]:
    """(path name, layer) for every layer below ``layer``, in model order (see ``tfimp.core.coverage.walk``)."""
    return _core_coverage.walk(layer, _direct_sublayers, PruneLowMagnitude, prefix, seen)


def leaf_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """(path name, layer) for every layer of ``model``, children before their parents; wrappers are leaves."""
    return _core_coverage.children_first(list(_walk(model, "", set())))


def wrap(model: keras.Model, *, kinds: Iterable[str] | str | None = None, exclude: Exclude = None,
         wrapper: Callable[..., PruneLowMagnitude | None] | None = None, verbose: int = 0) -> keras.Model:
    """Wraps every prunable weight of ``model`` for policy-owned masks.

    Prunable weights are those :mod:`tfimp.coverage` knows, by kind: ``conv``,
    ``dense``, ``depthwise``, ``embedding``, ``attention`` (MultiHeadAttention)
    and ``rnn`` (SimpleRNN/GRU/LSTM cells, also inside ``Bidirectional`` and
    ``TimeDistributed``); by default all of them. Layers inside custom layers
    and nested models are found too; layers that were never called (built
    containers holding unused layers) are left out and listed.

    Sequential and functional models (also nested ones) are copied first,
    weights included, so the model you pass in is left exactly as it was:
    pruning and training the wrapped model never touch it. Subclassed models
    cannot be copied generally; they are wrapped in place (their layer
    attributes and the layers in their list, tuple and dict attributes are
    replaced) and returned, and :func:`strip` turns them back into plain
    models.

    Example:
      >>> model = tfimp.wrap(model, kinds=["conv", "dense"])   # embeddings, attention, RNNs stay dense
      >>> tfimp.coverage.describe(model).prunable_share
      0.97

    Args:
      model: a tf_keras model.
      kinds: which kinds of weights to prune (names from
        ``tfimp.coverage.KINDS``); ``None`` = all.
      exclude: layer names, or a predicate ``layer -> bool``; excluded layers
        stay dense and unwrapped.
      wrapper: makes the wrapper of one layer, ``fn(layer, weight_paths)``
        returning a wrapper or ``None`` to leave it (default
        :class:`PolicyPruneLowMagnitude`); baselines use other tfmot wrappers.
      verbose: 1 prints what was wrapped and what stayed dense.

    Returns:
      The wrapped model. When more than a tenth of its parameters sit in
      weight matrices or tables left dense (rank >= 2, outside the masks),
      a warning names the layer types holding them.

    Raises:
      TypeError: ``model`` is not a tf_keras model.
      ValueError: an unknown kind; ``exclude`` names a layer that is not in
        the model; the model has no prunable weight (outside ``exclude``).
    """
    check_tf_keras_model(model)
    if wrappers(model):
        return _masking.already_wrapped(model, kinds, exclude, wrapper)
    _masking.check_finite(((w.name.split(":")[0], w.numpy()) for w in model.trainable_weights),
                          f"wrap model {model.name!r}")
    chosen = coverage.normalize_kinds(kinds)
    excluded = _core_coverage.exclusion(exclude, (layer.name for _, layer in _walk(model, "", set())))
    make = _two_argument_factory(wrapper)
    left_out: dict[str, str] = {}

    def wrapper_for(layer, parent_built: bool):
        if isinstance(layer, PruneLowMagnitude) or excluded(layer):
            return None
        paths = [path for path, _ in coverage.specs(layer, chosen)]
        if not paths:
            return None
        if parent_built and not layer.built:
            left_out[layer.name] = "never called: no weights"
            return None
        return make(layer, paths)

    source = _independent_copy(model) if _is_graph_model(model) else model
    wrapped = _wrap_layer_tree(source, wrapper_for)
    if not wrappers(wrapped):
        raise _core_coverage.nothing_to_prune(model.name, chosen, exclude, left_out)
    _core_coverage.say_what_was_wrapped(describe(wrapped, left_out), model.name, chosen, left_out, verbose)
    return wrapped


def _two_argument_factory(wrapper) -> Callable:
    """``wrapper`` as ``fn(layer, weight_paths)``; a one-argument factory gets the layer only (all its kinds)."""
    if wrapper is None:
        return lambda layer, paths: PolicyPruneLowMagnitude(layer, weight_paths=paths)
    try:
        positional = [p for p in inspect.signature(wrapper).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        positional = []
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional):
        return wrapper
    return lambda layer, paths: wrapper(layer)


def _independent_copy(model: keras.Model) -> keras.Model:
    """A copy of a functional/Sequential ``model`` with its own variables and the same values.

    Wrapping the copy leaves the caller's model exactly as it was: pruning
    zeroes and masks the copy's kernels only. A model Keras cannot clone
    (a custom layer without ``get_config``) is wrapped sharing its layers,
    as tfmot does, and that is logged.
    """
    try:
        with keras.utils.custom_object_scope(custom_objects()):
            copy = keras.models.clone_model(model)
    except (NotImplementedError, TypeError, ValueError) as error:
        _log.warning("tfimp.wrap: %s cannot be cloned (%s); the wrapped model shares its layers with it",
                     model.name, error)
        return model
    copy.set_weights(model.get_weights())
    return copy


def _wrap_layer_tree(model: keras.Model, wrapper_for: Callable) -> keras.Model:
    """Wraps the layers for which ``wrapper_for(layer, parent_built)`` returns a wrapper (else ``None``)."""
    if _is_graph_model(model):

        def clone_function(layer):
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                return _wrap_layer_tree(layer, wrapper_for)
            wrapper = wrapper_for(layer, False)
            if wrapper is not None:
                return wrapper
            if _direct_sublayers(layer) and not isinstance(layer, PruneLowMagnitude):
                _wrap_in_place(layer, wrapper_for)
            return layer

        return keras.models.clone_model(model, input_tensors=None, clone_function=clone_function)
    _wrap_in_place(model, wrapper_for)
    return model


def _wrap_in_place(container: keras.layers.Layer, wrapper_for: Callable) -> None:
    """Replaces wrapped-to-be layers held as attributes or in lists."""

    def replacement(layer):
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return _wrap_layer_tree(layer, wrapper_for)
        wrapper = wrapper_for(layer, container.built)
        if wrapper is not None:
            if layer.built:
                wrapper.build(None)  # the inner layer is built: no shape needed
            return wrapper
        if not isinstance(layer, PruneLowMagnitude):
            _wrap_in_place(layer, wrapper_for)
        return layer

    _replace_sublayers(container, replacement)


def _replace_sublayers(container: keras.layers.Layer, replacement: Callable) -> None:
    """Replaces each layer held as a public attribute or inside a list, tuple or dict attribute.

    TensorFlow tracks list and dict attributes as append-only structures: a
    replaced item makes the container unsaveable. So a container with a
    replaced layer is rebuilt as a new list/tuple/dict and assigned anew
    (after deleting the attribute, which also drops the old layers from
    Keras' tracking); the user's code sees a list where it put a list.
    Keras orders a layer's weights by the order its sublayers were tracked,
    and weight files (h5) are read in that order, so once one attribute is
    replaced, every later layer-holding attribute is assigned anew too, in
    its original order: the stripped layer lists its weights as the original did.
    """
    reassign = False
    for attribute, value in list(vars(container).items()):
        if attribute.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            new = replacement(value)
            if new is not value or reassign:
                delattr(container, attribute)
                setattr(container, attribute, new)
                reassign = True
            continue
        items = _container_items(value)
        if items is None or not any(isinstance(item, keras.layers.Layer) for _, item in items):
            continue
        replaced = {key: (replacement(item) if isinstance(item, keras.layers.Layer) else item) for key, item in items}
        if all(replaced[key] is item for key, item in items) and not reassign:
            continue
        if isinstance(value, dict) or hasattr(value, "keys"):
            rebuilt = {key: replaced[key] for key, _ in items}
        else:
            rebuilt = [replaced[key] for key, _ in items]
            if isinstance(value, tuple) or type(value).__name__ == "_TupleWrapper":
                rebuilt = tuple(rebuilt)
        delattr(container, attribute)
        setattr(container, attribute, rebuilt)
        reassign = True


def _container_items(value) -> list | None:
    """(key, item) pairs of a list, tuple or dict attribute (or of TensorFlow's tracking wrappers of them)."""
    if isinstance(value, (str, bytes)) or isinstance(value, keras.layers.Layer):
        return None
    if isinstance(value, dict) or (hasattr(value, "keys") and hasattr(value, "__getitem__")):
        try:
            return [(key, value[key]) for key in list(value.keys())]
        except TypeError:
            return None
    if isinstance(value, (list, tuple)) or type(value).__name__ in ("ListWrapper", "_TupleWrapper"):
        return list(enumerate(value))
    return None


def wrappers(model: keras.Model) -> list[tuple[str, PruneLowMagnitude]]:
    """(path name, wrapper) for every pruning wrapper in ``model``, in model order."""
    return [(path, layer) for path, layer in _walk(model, "", set()) if isinstance(layer, PruneLowMagnitude)]


def _weight_label(path: str) -> str:
    """A readable name for a weight path below a layer: ``forward_layer.cell.kernel`` -> ``forward_layer/kernel``."""
    return "/".join(step.lstrip("_") for step in path.split(".") if step != "cell")


def _wrapper_paths(wrapper: PruneLowMagnitude) -> list[str]:
    paths = getattr(wrapper, "weight_paths", None)
    if paths is not None:
        return list(paths)
    return [weight.name.split("/")[-1].split(":")[0] for weight, _, _ in _private.pruning_triples(wrapper)]  # plain tfmot wrapper


def prunable_kernels(model: keras.Model) -> list[PrunableKernel]:
    """Every wrapped kernel of ``model``, in model order (a wrapper whose layer was never called has none)."""
    return [kernel for path, wrapper in wrappers(model) for kernel in _kernels_of(path, wrapper)]


def _kernels_of(path: str, wrapper: PruneLowMagnitude) -> list[PrunableKernel]:
    variables = _private.pruning_triples(wrapper)
    labels = _wrapper_paths(wrapper)
    kernels = []
    for (weight, mask, _), label in zip(variables, labels):
        name = path if len(variables) == 1 else f"{path}/{_weight_label(label)}"
        kernels.append(PrunableKernel(name, weight, mask, wrapper))
    return kernels


def unbuilt_wrappers(model: keras.Model) -> list[str]:
    """Path names of the wrappers that have no masks yet (their layer was never called)."""
    return [path for path, wrapper in wrappers(model) if not _private.pruning_triples(wrapper)]


@dataclasses.dataclass(frozen=True)
class CoveredWeight:
    """One weight tfimp can prune, wrapped or not: name, kind, variable, mask (None if unwrapped) and layers."""

    name: str
    kind: str
    variable: tf.Variable
    mask: tf.Variable | None
    layer: keras.layers.Layer  # the layer whose spec names the weight (a wrapper's inner layer)
    outer: keras.layers.Layer  # the layer in the model graph: the wrapper when there is one


def covered_weights(model: keras.Model) -> list[CoveredWeight]:
    """Every weight of a kind tfimp prunes, in model order: wrapped ones with their masks, unwrapped built ones without.

    A layer of a covered type stands for everything below it (MultiHeadAttention
    for its EinsumDense projections, an RNN for its cells).
    """
    found = []
    inside_covered: set[int] = set()
    for path, layer in _walk(model, "", set()):
        if id(layer) in inside_covered:
            inside_covered.update(id(sub) for sub in _direct_sublayers(layer))
            continue
        if isinstance(layer, PruneLowMagnitude):
            kinds = dict(coverage.specs(layer.layer))
            for kernel, label in zip(_kernels_of(path, layer), _wrapper_paths(layer)):
                found.append(CoveredWeight(kernel.name, kinds.get(label, "custom"), kernel.weight, kernel.mask,
                                           layer.layer, layer))
            continue
        layer_specs = coverage.specs(layer)
        if not layer_specs:
            continue
        inside_covered.update(id(sub) for sub in _direct_sublayers(layer))
        if not layer.built:
            continue
        for spec_path, kind in layer_specs:
            try:
                variable = coverage.resolve(layer, spec_path)
            except (AttributeError, TypeError, IndexError):
                continue  # not created (never called)
            name = path if len(layer_specs) == 1 else f"{path}/{_weight_label(spec_path)}"
            found.append(CoveredWeight(name, kind, variable, None, layer, layer))
    return found


# --------------------------------------------------------------------------
# Stripping and loading
# --------------------------------------------------------------------------


def apply_masks(kernels: Sequence[PrunableKernel]) -> None:
    """weight *= mask for each kernel, now."""
    for kernel in kernels:
        kernel.weight.assign(kernel.weight * tf.cast(kernel.mask, kernel.weight.dtype))


def strip(model: keras.Model) -> keras.Model:
    """Removes every pruning wrapper; the returned model keeps the zeros and nothing else of tfimp.

    Wrappers are removed wherever they are: in the model's graph, inside
    custom layers (attributes, lists, tuples, dicts) and nested models. The
    kernels lose tfimp's mask constraint, so further training of the
    stripped model may move the zeros (it is a plain Keras model).
    Sequential/functional models are cloned (sharing the layer objects and
    variables with ``model``, which stays wrapped but without the
    constraint); subclassed models are unwrapped in place.

    Raises:
      ValueError: a tfimp or tfmot object is left in the result (naming the
        layer); a model that saves but cannot load is never returned.
    """
    check_tf_keras_model(model)
    kernels = prunable_kernels(model)
    apply_masks(kernels)
    for kernel in kernels:
        _remove_mask_constraint(kernel.weight)
    release_channels(model.weights)  # the bias and BatchNormalization holds of structure='channels'
    if _is_graph_model(model):
        stripped = _strip_graph(model)
    else:
        _strip_in_place(model)
        stripped = model
    _check_stripped(stripped)
    return stripped


def _unwrap(wrapper: PruneLowMagnitude) -> keras.layers.Layer:
    """The wrapped layer, without the ``get_prunable_weights`` hook the wrapper gave it."""
    layer = wrapper.layer
    if "get_prunable_weights" in vars(layer) and not hasattr(type(layer), "get_prunable_weights"):
        object.__delattr__(layer, "get_prunable_weights")
    # The first layer of a Sequential model keeps the input shape the wrapper carried (as tfmot's strip does).
    if not hasattr(layer, "_batch_input_shape") and hasattr(wrapper, "_batch_input_shape"):
        layer._batch_input_shape = wrapper._batch_input_shape
    return layer


def _strip_graph(model: keras.Model) -> keras.Model:
    def clone_function(layer):
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return _strip_graph(layer)
        if isinstance(layer, PruneLowMagnitude):
            return _unwrap(layer)
        if _direct_sublayers(layer):
            _strip_in_place(layer)
        return layer

    return keras.models.clone_model(model, input_tensors=None, clone_function=clone_function)


def _remove_mask_constraint(weight) -> None:
    """Undoes :func:`install_mask_constraint` (the variable's own constraint, if any, comes back)."""
    for component in variable_components(weight):
        current = component.constraint
        if isinstance(current, KeepPrunedConstraint):
            set_constraint(component, current._inner)


def _strip_in_place(container: keras.layers.Layer) -> None:
    def replacement(layer):
        if isinstance(layer, PruneLowMagnitude):
            return _unwrap(layer)
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return _strip_graph(layer)
        _strip_in_place(layer)
        return layer

    _replace_sublayers(container, replacement)


def _check_stripped(model: keras.Model) -> None:
    """Raises ValueError naming any tfimp/tfmot object left in ``model``."""
    layers = list(_walk(model, "", set()))
    for path, layer in layers:
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"tfimp.strip could not remove the pruning wrapper of layer {path!r}: it is held where tfimp "
                "cannot replace it (a private attribute of a custom layer). Keep such layers unwrapped with "
                "`tfimp.wrap(model, exclude=[...])`, or hold them in a public attribute.")
    for path, layer in layers:
        for variable in layer.weights:
            if any(isinstance(c.constraint, KeepPrunedConstraint)
                   for c in variable_components(variable)):
                raise ValueError(f"tfimp.strip left its mask constraint on {variable.name} in layer {path!r}")


def custom_objects() -> dict:
    """The custom objects needed to load a model wrapped by tfimp or tfmot."""
    return {
        "PruneLowMagnitude": PruneLowMagnitude,
        "PolicyPruneLowMagnitude": PolicyPruneLowMagnitude,
        "tfimp>PolicyPruneLowMagnitude": PolicyPruneLowMagnitude,
        "NeverPrune": NeverPrune,
        "ReparamPruneLowMagnitude": ReparamPruneLowMagnitude,
        "tfimp>ReparamPruneLowMagnitude": ReparamPruneLowMagnitude,
        "tfimp>NeverPrune": NeverPrune,
    }


def load_model(path: str, *, compile: bool = True, safe_mode: bool = True,
               extra_custom_objects: dict | None = None) -> keras.Model:
    """Loads a (wrapped or stripped) model saved as ``.keras``, ``.h5`` or SavedModel.

    ``safe_mode`` (default, as Keras): a file whose ``Lambda`` layers would
    run their stored Python code while loading is refused; pass
    ``safe_mode=False`` for a file you trust. tf_keras checks ``.keras``
    files itself; tfimp checks HDF5 files and SavedModels before loading.

    Raises:
      ValueError: ``safe_mode`` and the file holds a ``Lambda`` layer.
    """
    stored_code = _front_end.lambda_layers(path) if safe_mode else []
    if stored_code:
        raise ValueError(f"{path} holds Lambda layers ({', '.join(stored_code)}) whose stored Python code would run "
                         "while loading; load it with safe_mode=False only if you trust the file")
    objects = {**custom_objects(), **(extra_custom_objects or {})}
    with keras.utils.custom_object_scope(objects):
        model = (keras.models.load_model(path, compile=compile, safe_mode=safe_mode) if str(path).endswith(".keras")
                 else keras.models.load_model(path, compile=compile))
    # Wrappers rebuilt from a SavedModel may bypass `build`; make sure every
    # kernel carries its mask constraint.
    for kernel in prunable_kernels(model):
        install_mask_constraint(kernel.weight, kernel.mask)
    return model


def describe(model: keras.Model, left_out: dict[str, str] | None = None) -> _core_coverage.Coverage:
    """The coverage of ``model`` (wrapped or not: an unwrapped model has nothing under masks)."""
    masked = {id(kernel.weight) for kernel in prunable_kernels(model)}
    layers = [(type(layer.layer if isinstance(layer, PruneLowMagnitude) else layer).__name__,
               layer.trainable_weights) for _, layer in leaf_layers(model)]
    return _core_coverage.tally(layers, masked, _core_coverage.count_parameters(model.trainable_weights), left_out)
