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


def _mask_weights(pruning_vars) -> tf.Operation:
    """``weight = weight * mask`` for every ``(weight, mask, threshold)``, on every replica, without communication.

    tfmot's ``weight_mask_op`` all-reduces (averages) every masked weight
    across the replicas on every training step, because it cannot know the
    weights' aggregation. Here the weights and masks are mirrored and equal on
    every replica, so each replica assigns its own product: the same values,
    no collective per step (tfmot's all-reduce of the whole model's weights
    also broke later runs in a process that had trained under another
    ``MirroredStrategy``: its collectives were issued in different orders).
    """
    products = [(weight, tf.cast(weight * tf.cast(mask, weight.dtype), weight.dtype))
                for weight, mask, _ in pruning_vars]
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return tf.group([weight.assign(product) for weight, product in products])

    def assign_on_each_replica(strategy, products):
        return tf.group([strategy.extended.update(weight, lambda variable, value: variable.assign(value),
                                                  args=(product,), group=True)
                         for weight, product in products])

    return tf.distribute.get_replica_context().merge_call(assign_on_each_replica, args=(products,))


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
        self.add_update(_mask_weights(self.pruning_vars))
        if "training" in inspect.getfullargspec(self.layer.call).args:
            return self.layer.call(inputs, training=training, **kwargs)
        return self.layer.call(inputs, **kwargs)

    @classmethod
    def from_config(cls, config: dict) -> "PolicyPruneLowMagnitude":
        config = dict(config)
        config.pop("pruning_schedule", None)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, **config)


@keras.utils.register_keras_serializable(package="tfimp")
class ReparamPruneLowMagnitude(PolicyPruneLowMagnitude):
    """A wrapper whose forward pass uses a transform of the *dense* kernel.

    Used by the pruning-during-training baselines that keep dense weights:

    * ``dpf`` (Lin et al. 2020, arXiv:2006.07253): the forward pass uses
      ``kernel * mask``; the gradient reaches the dense kernel unchanged
      (straight-through), so pruned weights keep learning and may return
      when the mask is recomputed (error feedback).
    * ``str`` (Kusupati et al. 2020, arXiv:2002.03231): the forward pass uses
      ``sign(w) * relu(|w| - sigmoid(s))`` with one learnable ``s`` per layer,
      initialised to ``str_init``; ``str_weight_decay`` adds L2 on ``s``
      (its authors set both per target sparsity).

    :meth:`finalize` turns the wrapper into a plain policy wrapper with exact
    masks and zeroed weights (``reparam`` becomes ``"none"``).
    """

    REPARAMS = ("dpf", "str", "none")

    def __init__(self, layer: keras.layers.Layer, reparam: str = "dpf", str_init: float = -5.0,
                 str_weight_decay: float = 0.0, **kwargs):
        if reparam not in self.REPARAMS:
            raise ValueError(f"reparam must be one of {self.REPARAMS}, got {reparam!r}")
        super().__init__(layer, **kwargs)
        self.reparam = reparam
        self.str_init = float(str_init)
        self.str_weight_decay = float(str_weight_decay)
        self.str_threshold = None

    def build(self, input_shape):
        if self.reparam == "none":
            super().build(input_shape)
            return
        PruneLowMagnitude.build(self, input_shape)  # masks, but no mask constraint: weights stay dense
        if self.reparam == "str":
            self.str_threshold = self.add_weight(
                "str_threshold", shape=(), initializer=keras.initializers.Constant(self.str_init), trainable=True,
                # Extra coupled L2 on s (gradient str_weight_decay * s), on top of the optimizer's own decay.
                regularizer=keras.regularizers.L2(self.str_weight_decay / 2) if self.str_weight_decay else None)

    @property
    def trainable_weights(self):
        extra = [self.str_threshold] if self.str_threshold is not None and self.trainable else []
        return self.layer.trainable_weights + extra

    @property
    def non_trainable_weights(self):
        own = [w for w in self._non_trainable_weights]
        if self.str_threshold is not None and not self.trainable:
            own.append(self.str_threshold)
        return self.layer.non_trainable_weights + own

    def effective_kernels(self) -> list:
        """The kernels the forward pass uses now."""
        return [self._effective(weight, mask) for weight, mask, _ in self.pruning_vars]

    def _effective(self, weight, mask):
        if self.reparam == "dpf":
            masked = weight * tf.cast(mask, weight.dtype)
            return weight + tf.stop_gradient(masked - weight)  # value: masked; gradient: to all of weight
        if self.reparam == "str":
            threshold = tf.sigmoid(tf.cast(self.str_threshold, weight.dtype))
            return tf.sign(weight) * tf.nn.relu(tf.abs(weight) - threshold)
        return weight * tf.cast(mask, weight.dtype)

    def call(self, inputs, training=None, **kwargs):
        if self.reparam == "none":
            return super().call(inputs, training=training, **kwargs)
        names = _prunable_weight_names(self.layer) or ["kernel"]
        originals = {name: getattr(self.layer, name) for name in names}
        try:
            for (name, _), effective in zip(originals.items(), self.effective_kernels()):
                object.__setattr__(self.layer, name, effective)  # bypass Keras tracking for the swap
            if "training" in inspect.getfullargspec(self.layer.call).args:
                return self.layer.call(inputs, training=training, **kwargs)
            return self.layer.call(inputs, **kwargs)
        finally:
            for name, variable in originals.items():
                object.__setattr__(self.layer, name, variable)

    def finalize(self) -> None:
        """Bakes the transform into the weights and masks; afterwards a plain policy wrapper."""
        if self.reparam == "none":
            return
        for (weight, mask, _), effective in zip(self.pruning_vars, self.effective_kernels()):
            value = tf.convert_to_tensor(effective)
            if self.reparam == "str":
                mask.assign(tf.cast(tf.not_equal(value, 0), mask.dtype))
            weight.assign(value * tf.cast(mask, value.dtype))
            _install_mask_constraint(weight, mask)
        self.reparam = "none"

    def get_config(self) -> dict:
        return {**super().get_config(), "reparam": self.reparam, "str_init": self.str_init,
                "str_weight_decay": self.str_weight_decay}


def tfmot_polynomial_wrapper(target_sparsity: float, begin_step: int, end_step: int, frequency: int):
    """A factory of plain tfmot wrappers with tfmot's per-layer ``PolynomialDecay`` (cubic).

    ``end_step`` is moved up to the next multiple of ``frequency`` after
    ``begin_step``: tfmot's schedule stops short of its target otherwise.
    """
    if frequency < 1 or end_step < begin_step:
        raise ValueError(f"need frequency >= 1 and end_step >= begin_step, got {frequency}, {begin_step}, {end_step}")
    end_step = begin_step + -(-(end_step - begin_step) // frequency) * frequency
    schedule = _tfmot_schedule.PolynomialDecay(0.0, float(target_sparsity), int(begin_step), int(end_step),
                                               power=3, frequency=int(frequency))
    return lambda layer: PruneLowMagnitude(layer, pruning_schedule=schedule)


def tfmot_step_callback() -> keras.callbacks.Callback:
    """tfmot's ``UpdatePruningStep``, which its own schedules need."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

    return pruning_callbacks.UpdatePruningStep()


def finalize_reparams(model: keras.Model) -> None:
    """Finalizes every :class:`ReparamPruneLowMagnitude` of ``model``.

    The forward pass changes (STR's soft threshold is baked into the weights),
    so evaluation and prediction functions Keras traced before are dropped:
    reused, they would apply the threshold a second time.
    """
    changed = False
    for _, wrapper in wrappers(model):
        if isinstance(wrapper, ReparamPruneLowMagnitude) and wrapper.reparam != "none":
            wrapper.finalize()
            changed = True
    if changed:
        model.make_test_function(force=True)
        model.make_predict_function(force=True)


def str_thresholds(model: keras.Model) -> list:
    """The learnable STR threshold variables of ``model``."""
    return [w.str_threshold for _, w in wrappers(model)
            if isinstance(w, ReparamPruneLowMagnitude) and w.str_threshold is not None]


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


def is_graph_model(model: keras.Model) -> bool:
    """Sequential or functional (Keras can rebuild it from its config), not subclassed."""
    return _is_graph_model(model)


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


def wrap(model: keras.Model, *, exclude: Exclude = None,
         wrapper: Callable[[keras.layers.Layer], PruneLowMagnitude] | None = None) -> keras.Model:
    """Wraps every Conv/Dense kernel of ``model`` for policy-owned masks.

    Sequential and functional models (also nested ones) are copied first,
    weights included, so the model you pass in is left exactly as it was:
    pruning and training the wrapped model never touch it. Subclassed models
    cannot be copied generally; they are wrapped in place (their layer
    attributes and the layers in their list, tuple and dict attributes are
    replaced) and returned, and :func:`strip` turns them back into plain
    models.

    Args:
      model: a tf_keras model.
      exclude: layer names, or a predicate ``layer -> bool``; excluded layers
        stay dense and unwrapped.
      wrapper: makes the wrapper of one layer (default
        :class:`PolicyPruneLowMagnitude`); baselines use other tfmot wrappers.

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

    make = wrapper or PolicyPruneLowMagnitude
    source = _independent_copy(model) if _is_graph_model(model) else model
    wrapped = _wrap_layer_tree(source, lambda layer: make(layer) if should_wrap(layer) else None)
    if skipped:
        _log.info("tfimp.wrap: tfmot has no prunable weight for %s; left dense", ", ".join(skipped))
    if not wrappers(wrapped):
        raise ValueError(
            f"model {model.name!r} has nothing to prune: no Conv or Dense kernel "
            "that tfmot can wrap" + (" outside `exclude`" if exclude is not None else "") + "."
        )
    return wrapped


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
        _log.info("tfimp.wrap: %s cannot be cloned (%s); the wrapped model shares its layers", model.name, error)
        return model
    copy.set_weights(model.get_weights())
    return copy


def _wrap_layer_tree(model: keras.Model, wrapper_for: Callable) -> keras.Model:
    """Wraps the layers for which ``wrapper_for(layer)`` returns a wrapper (else ``None``)."""
    if _is_graph_model(model):

        def clone_function(layer):
            if isinstance(layer, keras.Model):
                return _wrap_layer_tree(layer, wrapper_for)
            wrapper = wrapper_for(layer)
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
        wrapper = wrapper_for(layer)
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
    """
    for attribute, value in list(vars(container).items()):
        if attribute.startswith("_"):
            continue
        if isinstance(value, keras.layers.Layer):
            new = replacement(value)
            if new is not value:
                delattr(container, attribute)
                setattr(container, attribute, new)
            continue
        items = _container_items(value)
        if items is None:
            continue
        replaced = {key: (replacement(item) if isinstance(item, keras.layers.Layer) else item) for key, item in items}
        if all(replaced[key] is item for key, item in items):
            continue
        if isinstance(value, dict) or hasattr(value, "keys"):
            rebuilt = {key: replaced[key] for key, _ in items}
        else:
            rebuilt = [replaced[key] for key, _ in items]
            if isinstance(value, tuple):
                rebuilt = tuple(rebuilt)
        delattr(container, attribute)
        setattr(container, attribute, rebuilt)


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


def kernel_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer, keras.layers.Layer]]:
    """(name, kernel layer, outermost layer) for every built Conv/Dense layer, wrapped or not.

    The outermost layer is the wrapper when there is one; it has the layer's output shape.
    """
    found = []
    for path, layer in _walk(model, "", set()):
        if isinstance(layer, PruneLowMagnitude) and _is_kernel_layer(layer.layer):
            found.append((_readable_name(path, layer), layer.layer, layer))
        elif _is_kernel_layer(layer) and layer.built:
            found.append((path, layer, layer))
    return found


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
    """Removes the pruning wrappers; the returned model keeps the zeros and nothing else of tfimp.

    The kernels lose tfimp's mask constraint, so further training of the
    stripped model may move the zeros (it is a plain Keras model).
    Sequential/functional models are cloned by tfmot's ``strip_pruning``
    (sharing the layer objects and variables with ``model``, which stays
    wrapped but without the constraint); subclassed models are unwrapped in
    place.
    """
    check_tf_keras_model(model)
    kernels = prunable_kernels(model)
    apply_masks(kernels)
    for kernel in kernels:
        _remove_mask_constraint(kernel.weight)
    if _is_graph_model(model):
        return _tfmot_prune.strip_pruning(model)
    _strip_in_place(model)
    return model


def _remove_mask_constraint(weight) -> None:
    """Undoes :func:`_install_mask_constraint` (the variable's own constraint, if any, comes back)."""
    for component in _variable_components(weight):
        current = getattr(component, "_constraint", None)
        if isinstance(current, _KeepPrunedConstraint):
            component._constraint = current._inner


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
        "ReparamPruneLowMagnitude": ReparamPruneLowMagnitude,
        "tfimp>ReparamPruneLowMagnitude": ReparamPruneLowMagnitude,
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
