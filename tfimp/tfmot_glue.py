"""Glue between tfimp's mask policies and tfmot's pruning wrappers.

This is the only tfimp module that touches tfmot internals (the wrapper
class, its ``pruning_vars`` and the prune registry) and the private hooks of
Keras/TensorFlow variables. Everything else sees :class:`PrunableKernel`.

Design:

* Kernels are wrapped in :class:`PolicyPruneLowMagnitude`, a tfmot
  ``PruneLowMagnitude`` whose schedule (:class:`NeverPrune`) never fires, so
  tfmot never overwrites the masks that tfimp's policy sets.
* The wrapper keeps tfmot's "weight *= mask before every forward pass", and
  additionally installs the mask as the kernel variable's *constraint*. Every
  tf_keras optimizer (new and legacy) applies variable constraints right after
  each update, in-graph and per replica, so pruned weights are exactly zero
  whenever a user reads them after a step: no callback is needed.
* tfmot's ``pruning_step`` counter and its ``UpdatePruningStep`` callback only
  drive tfmot's own schedules, which never fire here; the wrapper's ``call``
  skips them, which also removes tfmot's per-step bookkeeping.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Callable, Iterable, Iterator, Sequence, Union

from tfimp._backend import keras, tf

from tensorflow_model_optimization.python.core.sparsity.keras import prune as _tfmot_prune
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as _tfmot_registry
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule as _tfmot_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper as _tfmot_wrapper

_log = logging.getLogger(__name__)

PruneLowMagnitude = _tfmot_wrapper.PruneLowMagnitude

#: Layer types whose kernels tfimp prunes (subclasses included, e.g.
#: Conv2DTranspose), provided tfmot's registry knows a prunable weight for them.
KERNEL_LAYER_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)

Exclude = Union[None, Iterable[str], Callable[[keras.layers.Layer], bool]]


@keras.utils.register_keras_serializable(package="tfimp")
class NeverPrune(_tfmot_schedule.PruningSchedule):
    """A tfmot pruning schedule that never fires.

    tfimp owns the masks; a schedule that fired would overwrite them with
    tfmot's per-layer magnitude masks.
    """

    def __call__(self, step):
        del step
        return tf.constant(False), tf.constant(0.0, dtype=tf.float32)

    def get_config(self) -> dict:
        return {"class_name": self.__class__.__name__, "config": {}}


class _KeepPrunedConstraint:
    """Variable constraint ``w -> constraint(w) * mask`` (run after each update)."""

    def __init__(self, mask: tf.Variable, inner: Callable | None):
        self._mask = mask
        self._inner = inner

    def __call__(self, weight):
        value = self._inner(weight) if self._inner is not None else weight
        return value * tf.cast(self._mask, value.dtype)


def _variable_components(variable) -> Iterator[tf.Variable]:
    """The concrete resource variables behind a (mirrored, autocast) variable."""
    inner = getattr(variable, "_variable", None)  # AutoCastVariable
    if inner is not None:
        yield from _variable_components(inner)
        return
    replicas = getattr(variable, "values", None)  # DistributedVariable
    if replicas is not None and not callable(replicas):
        for replica in replicas:
            yield from _variable_components(replica)
        return
    yield variable


def _install_mask_constraint(weight, mask) -> None:
    # Private TF attribute: the public API cannot attach a constraint to a
    # variable after creation, and the layer's `kernel_constraint` would leak
    # into the config of stripped models. The constraint holds the whole
    # (possibly mirrored) mask, which reads as the local replica's copy when
    # the optimizer applies it in a replica context.
    for component in _variable_components(weight):
        inner = getattr(component, "_constraint", None)
        if isinstance(inner, _KeepPrunedConstraint):
            inner = inner._inner
        component._constraint = _KeepPrunedConstraint(mask, inner)


@keras.utils.register_keras_serializable(package="tfimp")
class PolicyPruneLowMagnitude(PruneLowMagnitude):
    """tfmot's ``PruneLowMagnitude`` with masks owned by a tfimp policy.

    The schedule is :class:`NeverPrune`; masks change only through
    :func:`tfimp.prune`. Pruned weights are kept at exactly zero after every
    optimizer step (see the module docstring).
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        kwargs.pop("pruning_schedule", None)
        super().__init__(layer, pruning_schedule=NeverPrune(), **kwargs)
        self._name = f"prune_low_magnitude_{layer.name}"

    def build(self, input_shape):
        super().build(input_shape)
        for weight, mask, _ in self.pruning_vars:
            _install_mask_constraint(weight, mask)

    def call(self, inputs, training=None, **kwargs):
        # weights *= mask before the forward pass, as tfmot does; no step
        # counter and no schedule check (they would never prune here).
        self.add_update(self.pruning_obj.weight_mask_op())
        if "training" in inspect.getfullargspec(self.layer.call).args:
            return self.layer.call(inputs, training=training, **kwargs)
        return self.layer.call(inputs, **kwargs)

    @classmethod
    def from_config(cls, config: dict) -> "PolicyPruneLowMagnitude":
        config = dict(config)
        config.pop("pruning_schedule", None)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, **config)


@dataclasses.dataclass(frozen=True)
class PrunableKernel:
    """One wrapped kernel: its readable name, weight and mask variables."""

    name: str
    weight: tf.Variable
    mask: tf.Variable
    wrapper: PruneLowMagnitude

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.weight.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


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


def _is_graph_model(model: keras.Model) -> bool:
    """Sequential or functional: models that `clone_model` can rebuild."""
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def _direct_sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _walk(layer: keras.layers.Layer, prefix: str, seen: set[int]) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yields (path name, layer) for every layer below ``layer``, in model order."""
    for sub in _direct_sublayers(layer):
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        path = f"{prefix}{sub.name}"
        yield path, sub
        if not isinstance(sub, PruneLowMagnitude):
            yield from _walk(sub, f"{path}/", seen)


def _prunable_weight_names(layer: keras.layers.Layer) -> list[str]:
    if not _tfmot_registry.PruneRegistry.supports(layer):
        return []
    return list(_tfmot_registry.PruneRegistry._weight_names(layer))  # pylint: disable=protected-access


def _is_kernel_layer(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, KERNEL_LAYER_TYPES)


def _exclusion_predicate(exclude: Exclude) -> Callable[[keras.layers.Layer], bool]:
    if exclude is None:
        return lambda layer: False
    if callable(exclude):
        return exclude
    if isinstance(exclude, str):
        exclude = [exclude]
    names = set(exclude)
    return lambda layer: layer.name in names


def wrap(model: keras.Model, *, exclude: Exclude = None) -> keras.Model:
    """Wraps every Conv/Dense kernel of ``model`` for policy-owned masks.

    Sequential and functional models (also nested ones) are cloned with the
    same layer objects, so weights are kept and shared with the input model.
    Subclassed models are wrapped in place (their layer attributes and layer
    lists are replaced) and returned.

    Args:
      model: a tf_keras model.
      exclude: layer names, or a predicate ``layer -> bool``; excluded layers
        stay dense and unwrapped.

    Returns:
      The wrapped model.

    Raises:
      TypeError: ``model`` is not a tf_keras model.
      ValueError: ``model`` has no Conv or Dense kernel to prune, or every
        one of them is excluded.
    """
    check_tf_keras_model(model)
    excluded = _exclusion_predicate(exclude)
    if isinstance(exclude, (list, tuple, set, frozenset, str)):
        names = {exclude} if isinstance(exclude, str) else set(exclude)
        known = {layer.name for _, layer in _walk(model, "", set())}
        unknown = sorted(names - known)
        if unknown:
            raise ValueError(f"exclude names layers that are not in the model: {unknown}")
    skipped: list[str] = []

    def should_wrap(layer) -> bool:
        if isinstance(layer, PruneLowMagnitude) or not _is_kernel_layer(layer) or excluded(layer):
            return False
        if not _prunable_weight_names(layer):
            skipped.append(f"{layer.name} ({type(layer).__name__})")
            return False
        return True

    wrapped = _wrap_layer_tree(model, should_wrap)
    if skipped:
        _log.info("tfimp.wrap: tfmot has no prunable weight for %s; left dense", ", ".join(skipped))
    if not wrappers(wrapped):
        raise ValueError(
            f"model {model.name!r} has nothing to prune: no Conv or Dense kernel "
            "that tfmot can wrap" + (" outside `exclude`" if exclude is not None else "") + "."
        )
    return wrapped


def _wrap_layer_tree(model: keras.Model, should_wrap: Callable) -> keras.Model:
    if _is_graph_model(model):

        def clone_function(layer):
            if isinstance(layer, keras.Model):
                return _wrap_layer_tree(layer, should_wrap)
            if should_wrap(layer):
                return PolicyPruneLowMagnitude(layer)
            if _direct_sublayers(layer) and not isinstance(layer, PruneLowMagnitude):
                _wrap_in_place(layer, should_wrap)
            return layer

        return keras.models.clone_model(model, input_tensors=None, clone_function=clone_function)
    _wrap_in_place(model, should_wrap)
    return model


def _wrap_in_place(container: keras.layers.Layer, should_wrap: Callable) -> None:
    """Replaces wrapped-to-be layers held as attributes or in lists."""

    def replacement(layer):
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return _wrap_layer_tree(layer, should_wrap)
        if should_wrap(layer):
            wrapper = PolicyPruneLowMagnitude(layer)
            if layer.built:
                wrapper.build(None)  # the inner layer is built: no shape needed
            return wrapper
        if not isinstance(layer, PruneLowMagnitude):
            _wrap_in_place(layer, should_wrap)
        return layer

    _replace_sublayers(container, replacement)


def _replace_sublayers(container: keras.layers.Layer, replacement: Callable) -> None:
    """Replaces each layer held as a public attribute or in a list attribute.

    Keras tracks layers assigned to attributes and list items; deleting the
    attribute first also drops the old layer from the container's tracking.
    """
    for attribute, value in list(vars(container).items()):
        if attribute.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            new = replacement(value)
            if new is not value:
                delattr(container, attribute)
                setattr(container, attribute, new)
        elif isinstance(value, list):
            for index, item in enumerate(list(value)):
                if isinstance(item, keras.layers.Layer):
                    new = replacement(item)
                    if new is not item:
                        value[index] = new


def wrappers(model: keras.Model) -> list[tuple[str, PruneLowMagnitude]]:
    """(path name, wrapper) for every pruning wrapper in ``model``, in model order."""
    return [(path, layer) for path, layer in _walk(model, "", set()) if isinstance(layer, PruneLowMagnitude)]


def _readable_name(path: str, wrapper: PruneLowMagnitude) -> str:
    """The path with the wrapper's name replaced by the wrapped layer's name."""
    head, _, _ = path.rpartition("/")
    return f"{head}/{wrapper.layer.name}" if head else wrapper.layer.name


def prunable_kernels(model: keras.Model) -> list[PrunableKernel]:
    """Every wrapped kernel of ``model`` (built wrappers only), in model order."""
    return [kernel for path, wrapper in wrappers(model) for kernel in _kernels_of(path, wrapper)]


def _kernels_of(path: str, wrapper: PruneLowMagnitude) -> list[PrunableKernel]:
    name = _readable_name(path, wrapper)
    variables = wrapper.pruning_vars
    kernels = []
    for weight, mask, _ in variables:
        suffix = "" if len(variables) == 1 else "/" + weight.name.split("/")[-1].split(":")[0]
        kernels.append(PrunableKernel(name + suffix, weight, mask, wrapper))
    return kernels


def unbuilt_wrappers(model: keras.Model) -> list[str]:
    return [path for path, wrapper in wrappers(model) if not wrapper.built]


def kernel_variables(model: keras.Model) -> list[tuple[str, tf.Variable]]:
    """(name, kernel) of every Conv/Dense kernel tfmot could prune, wrapped or not."""
    found = []
    for path, layer in _walk(model, "", set()):
        if isinstance(layer, PruneLowMagnitude):
            found.extend((k.name, k.weight) for k in _kernels_of(path, layer))
        elif _is_kernel_layer(layer) and layer.built:
            for weight_name in _prunable_weight_names(layer):
                found.append((path, getattr(layer, weight_name)))
    return found


# --------------------------------------------------------------------------
# Stripping and loading
# --------------------------------------------------------------------------


def apply_masks(kernels: Sequence[PrunableKernel]) -> None:
    """weight *= mask for each kernel, now."""
    for kernel in kernels:
        kernel.weight.assign(kernel.weight * tf.cast(kernel.mask, kernel.weight.dtype))


def strip(model: keras.Model) -> keras.Model:
    """Removes the pruning wrappers; the returned model keeps the zeros.

    Sequential/functional models are cloned by tfmot's ``strip_pruning``;
    subclassed models are unwrapped in place.
    """
    check_tf_keras_model(model)
    apply_masks(prunable_kernels(model))
    if _is_graph_model(model):
        return _tfmot_prune.strip_pruning(model)
    _strip_in_place(model)
    return model


def _strip_in_place(container: keras.layers.Layer) -> None:
    def replacement(layer):
        if isinstance(layer, PruneLowMagnitude):
            return layer.layer
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return _tfmot_prune.strip_pruning(layer)
        _strip_in_place(layer)
        return layer

    _replace_sublayers(container, replacement)


def custom_objects() -> dict:
    """The custom objects needed to load a model wrapped by tfimp or tfmot."""
    return {
        "PruneLowMagnitude": PruneLowMagnitude,
        "PolicyPruneLowMagnitude": PolicyPruneLowMagnitude,
        "tfimp>PolicyPruneLowMagnitude": PolicyPruneLowMagnitude,
        "NeverPrune": NeverPrune,
        "tfimp>NeverPrune": NeverPrune,
    }


def load_model(path: str, *, compile: bool = True, extra_custom_objects: dict | None = None) -> keras.Model:
    """Loads a (wrapped or stripped) model saved as ``.keras``, ``.h5`` or SavedModel."""
    objects = {**custom_objects(), **(extra_custom_objects or {})}
    with keras.utils.custom_object_scope(objects):
        model = keras.models.load_model(path, compile=compile)
    # Wrappers rebuilt from a SavedModel may bypass `build`; make sure every
    # kernel carries its mask constraint.
    for kernel in prunable_kernels(model):
        _install_mask_constraint(kernel.weight, kernel.mask)
    return model
