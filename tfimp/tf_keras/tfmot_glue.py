"""Glue between tfimp's mask policies and tfmot's pruning wrappers: the wrapper classes and the mask constraint.

This is the only tfimp module that touches tfmot internals (the wrapper
class, its ``pruning_vars`` and the prune registry) and the private hooks of
Keras/TensorFlow variables. Walking, wrapping, stripping and loading models
is :mod:`tfimp.wrapping`'s; what DPF's and STR's forward passes compute is
:mod:`tfimp.tf_keras.reparametrisations`'. Everything else sees :class:`PrunableKernel`.

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

import inspect
import logging
from typing import Callable, Iterable, Iterator, Sequence, Union

from tfimp.tf_keras import _private
from tfimp.tf_keras import layer_specs as coverage
from tfimp.tf_keras import reparametrisations as _reparametrisations
from tfimp.core import during_training as _during
from tfimp.core import masking as _masking
from tfimp.tf_keras._backend import keras, tf

from tensorflow_model_optimization.python.core.sparsity.keras import prune as _tfmot_prune  # noqa: F401
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry as _tfmot_registry
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule as _tfmot_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper as _tfmot_wrapper

_log = logging.getLogger(__name__)

PruneLowMagnitude = _tfmot_wrapper.PruneLowMagnitude

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


class KeepPrunedConstraint:
    """Variable constraint ``w -> constraint(w) * mask`` (run after each update)."""

    def __init__(self, mask: tf.Variable, inner: Callable | None):
        self._mask = mask
        self._inner = inner

    def __call__(self, weight):
        value = self._inner(weight) if self._inner is not None else weight
        return value * tf.cast(self._mask, value.dtype)


class HoldChannelsConstraint:
    """Variable constraint ``v -> constraint(v) * (not dead())`` on a bias or a BatchNormalization's gamma or beta
    (``structure="channels"``; see :mod:`tfimp.tf_keras.channels`)."""

    def __init__(self, dead: Callable, inner: Callable | None):
        self._dead = dead
        self._inner = inner

    def __call__(self, value):
        value = self._inner(value) if self._inner is not None else value
        return value * tf.cast(tf.logical_not(self._dead()), value.dtype)


def hold_channels(variable, dead: Callable) -> bool:
    """Installs :class:`HoldChannelsConstraint` on ``variable`` (replacing an earlier one); True if it had none."""
    new = False
    for component in variable_components(variable):
        inner = component.constraint
        if isinstance(inner, HoldChannelsConstraint):
            inner = inner._inner
        else:
            new = True
        set_constraint(component, HoldChannelsConstraint(dead, inner))
    return new


def release_channels(variables) -> None:
    """Removes :class:`HoldChannelsConstraint` from ``variables`` (their own constraints, if any, come back)."""
    for variable in variables:
        for component in variable_components(variable):
            if isinstance(component.constraint, HoldChannelsConstraint):
                set_constraint(component, component.constraint._inner)


def variable_components(variable) -> Iterator[tf.Variable]:
    """The concrete resource variables behind a (mirrored, autocast) variable."""
    if _private.is_autocast_variable(variable):
        yield from variable_components(_private.autocast_inner(variable))
        return
    replicas = getattr(variable, "values", None)  # DistributedVariable
    if replicas is not None and not callable(replicas):
        for replica in replicas:
            yield from variable_components(replica)
        return
    yield variable


def install_mask_constraint(weight, mask) -> None:
    # Private TF attribute: the public API cannot attach a constraint to a
    # variable after creation, and the layer's `kernel_constraint` would leak
    # into the config of stripped models. The constraint holds the whole
    # (possibly mirrored) mask, which reads as the local replica's copy when
    # the optimizer applies it in a replica context.
    for component in variable_components(weight):
        inner = component.constraint
        if isinstance(inner, KeepPrunedConstraint):
            inner = inner._inner
        set_constraint(component, KeepPrunedConstraint(mask, inner))


def set_constraint(variable, constraint) -> None:
    """Sets a variable's constraint after creation, and checks that the optimizers' public view sees it."""
    _private.set_attribute(variable, "_constraint", constraint, what="the constraint optimizers apply to a variable")
    if variable.constraint is not constraint:
        raise _private.UpstreamChanged(
            f"setting the constraint of {variable.name} did not reach variable.constraint ({_private.versions()}): "
            "pruned weights would not be kept at zero after optimizer steps; please report this")


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


def _owner_and_attribute(layer: keras.layers.Layer, path: str):
    """The object holding the weight at ``path`` below ``layer``, and its attribute name."""
    head, _, name = path.rpartition(".")
    return (coverage.resolve(layer, head) if head else layer), name


def _accepts_training(layer: keras.layers.Layer) -> bool:
    return "training" in inspect.getfullargspec(layer.call).args


def _call_inner(layer: keras.layers.Layer, args, kwargs, training):
    """``layer.call(*args, **kwargs)``, passing ``training`` only to layers whose ``call`` takes it."""
    if _accepts_training(layer):
        return layer.call(*args, training=training, **kwargs)
    return layer.call(*args, **kwargs)


@keras.utils.register_keras_serializable(package="tfimp")
class PolicyPruneLowMagnitude(PruneLowMagnitude):
    """tfmot's ``PruneLowMagnitude`` with masks owned by a tfimp policy.

    The schedule is :class:`NeverPrune`; masks change only through
    :func:`tfimp.prune`. Pruned weights are kept at exactly zero after every
    optimizer step (see the module docstring).

    Which weights of the layer are masked is given by ``weight_paths`` (see
    :mod:`tfimp.coverage`; default: every prunable weight of the layer's
    type). They reach tfmot through its documented protocol for custom
    layers, a ``get_prunable_weights`` method on the wrapped layer, which
    :func:`strip` removes again. Layers called with several inputs
    (``MultiHeadAttention(query, value)``) are wrapped too: every argument
    is passed through. A layer whose weights only exist after its first call
    (a ``MultiHeadAttention`` rebuilt from its config) gets its masks at that
    first call.
    """

    def __init__(self, layer: keras.layers.Layer, weight_paths: Sequence[str] | None = None, **kwargs):
        kwargs.pop("pruning_schedule", None)
        if weight_paths is None:
            weight_paths = [path for path, _ in coverage.specs(layer)]
        if not weight_paths:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no weight tfimp can prune; "
                             "see tfimp.coverage for the layer types it knows, or register yours")
        self.weight_paths = list(weight_paths)
        paths = self.weight_paths
        # tfmot's documented protocol for custom layers; set on the instance, as tfmot's registry does.
        layer.get_prunable_weights = lambda: [coverage.resolve(layer, path) for path in paths]
        super().__init__(layer, pruning_schedule=NeverPrune(), **kwargs)
        self._name = f"prune_low_magnitude_{layer.name}"
        self._masks_pending = False

    def build(self, input_shape):
        if not self._weights_exist() and not self.layer.built:
            self.layer.build(input_shape)
        if not self._weights_exist():
            self._masks_pending = True  # the layer makes these weights in its first call
            keras.layers.Layer.build(self, input_shape)
            return
        self._build_masks(input_shape)

    def _weights_exist(self) -> bool:
        try:
            for path in self.weight_paths:
                coverage.resolve(self.layer, path)
        except (AttributeError, TypeError, IndexError):
            return False
        return True

    def _build_masks(self, input_shape):
        super().build(input_shape)
        self._masks_pending = False
        for weight, mask, _ in _private.pruning_triples(self):
            install_mask_constraint(weight, mask)

    def call(self, *args, training=None, **kwargs):
        if self._masks_pending:
            outputs = _call_inner(self.layer, args, kwargs, training)  # creates the layer's weights
            with tf.init_scope():
                self._build_masks(None)
            return outputs
        # weights *= mask before the forward pass, as tfmot does; no step
        # counter and no schedule check (they would never prune here).
        self.add_update(_mask_weights(_private.pruning_triples(self)))
        return _call_inner(self.layer, args, kwargs, training)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight_paths": list(self.weight_paths)}

    @classmethod
    def from_config(cls, config: dict) -> "PolicyPruneLowMagnitude":
        config = dict(config)
        config.pop("pruning_schedule", None)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, **config)


@keras.utils.register_keras_serializable(package="tfimp")
class ReparamPruneLowMagnitude(PolicyPruneLowMagnitude):
    """A wrapper whose forward pass uses a transform of the *dense* kernel.

    Used by the pruning-during-training baselines that keep dense weights
    (definitions in :mod:`tfimp.core.reparametrisations`):

    * ``dpf`` (Lin et al. 2020, arXiv:2006.07253): the forward pass uses
      ``kernel * mask``; the gradient reaches the dense kernel unchanged
      (straight-through), so pruned weights keep learning and may return
      when the mask is recomputed (error feedback).
    * ``str`` (Kusupati et al. 2020, arXiv:2002.03231): the forward pass uses
      ``sign(w) * relu(|w| - sigmoid(s))`` with one learnable ``s`` per layer,
      initialised to ``str_init``; ``str_weight_decay`` adds L2 on ``s``
      (its authors set both per target sparsity).
    * ``cs`` (Savarese et al. 2020): ``w * sigmoid(beta * s) / sigmoid(cs_init)``,
      one learnable score per weight, ``beta`` rising from 1 to
      ``cs_beta_final`` over ``total_steps`` training steps (counted by the
      wrapper), ``cs_lambda * sum(sigmoid(beta * s))`` added to the loss.
    * ``dst`` (Liu et al. 2020): ``w * step(|w| - t)``, one learnable threshold
      per output unit, a surrogate gradient through the step,
      ``dst_alpha * sum(exp(-t))`` added to the loss.

    :meth:`finalize` turns the wrapper into a plain policy wrapper with exact
    masks and zeroed weights (``reparam`` becomes ``"none"``); its learnable
    parameters stay (``former`` names whose), so its saved weights load back.
    """

    #: ``reparam`` values: :data:`tfimp.tf_keras.reparametrisations.REPARAMETRISATIONS` and ``"none"``.
    REPARAMS = _reparametrisations.known()

    def __init__(self, layer: keras.layers.Layer, reparam: str = "dpf", str_init: float = -5.0,
                 str_weight_decay: float = 0.0, keeps_threshold: bool = False, hyperparameters: dict | None = None,
                 total_steps: int = 1, former: str = "", **kwargs):
        if reparam not in _reparametrisations.known():
            raise ValueError(f"reparam must be one of {_reparametrisations.known()}, got {reparam!r}")
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        super().__init__(layer, **kwargs)
        self.reparam = reparam
        self.former = former or reparam
        self.str_init = float(str_init)
        self.str_weight_decay = float(str_weight_decay)
        #: A finalized STR wrapper still holds its threshold variable (its saved weights include it).
        self.keeps_threshold = bool(keeps_threshold)
        self.hyperparameters = (_during.method_hyperparameters(self.former, hyperparameters)
                                if self.former in _during.HYPERPARAMETERS else {})
        self.total_steps = int(total_steps)
        self.str_threshold = None
        self.parameters: list = []  # CS's scores or DST's thresholds, one per pruned weight
        self.steps_seen = self.temperature_used = None

    def build(self, input_shape):
        if self.reparam == "none":
            super().build(input_shape)
            if self.keeps_threshold:
                self._add_threshold()
            self._add_parameters()
            return
        PruneLowMagnitude.build(self, input_shape)  # masks, but no mask constraint: weights stay dense
        if self.reparam in _reparametrisations.WITH_THRESHOLD:
            self._add_threshold()
        self._add_parameters()

    def _add_threshold(self) -> None:
        self.str_threshold = self.add_weight(
            "str_threshold", shape=(), initializer=keras.initializers.Constant(self.str_init), trainable=True,
            # Extra coupled L2 on s (gradient str_weight_decay * s), on top of the optimizer's own decay.
            regularizer=keras.regularizers.L2(self.str_weight_decay / 2) if self.str_weight_decay else None)

    def _add_parameters(self) -> None:
        learned = _reparametrisations.PARAMETERS.get(self.former)
        if learned is None or self.parameters:
            return
        initial = learned.initial if not isinstance(learned.initial, str) else self.hyperparameters[learned.initial]
        if self.former == "cs":
            self.steps_seen = self.add_weight("cs_steps_seen", shape=(), initializer="zeros", trainable=False,
                                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # The temperature the last forward pass used: tf_keras evaluates the regularizer after the pass, when
            # the step counter has already moved on.
            self.temperature_used = self.add_weight("cs_temperature_used", shape=(), initializer="ones",
                                                    trainable=False,
                                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        weight_of_penalty = self.hyperparameters[learned.penalty_weight]

        def penalty(parameter):  # a regularizer: tf_keras evaluates it with the loss at every step
            if self.reparam == "none":  # finalized: the parameter no longer acts
                return tf.constant(0.0)
            extra = {"temperature": tf.identity(self.temperature_used)} if self.former == "cs" else {}
            return weight_of_penalty * learned.penalty(parameter, _reparametrisations.TF_OPS, **extra)

        self.parameters = [self.add_weight(f"{learned.name}_{index}", shape=learned.shape(tuple(weight.shape)),
                                           initializer=keras.initializers.Constant(float(initial)), trainable=True,
                                           regularizer=penalty if weight_of_penalty else None)
                           for index, (weight, _, _) in enumerate(_private.pruning_triples(self))]

    def _extra(self) -> list:
        return ([self.str_threshold] if self.str_threshold is not None else []) + list(self.parameters)

    @property
    def trainable_weights(self):
        extra = self._extra() if self.trainable else []
        return self.layer.trainable_weights + extra

    @property
    def non_trainable_weights(self):
        own = [w for w in self._non_trainable_weights]
        if not self.trainable:
            own.extend(self._extra())
        return self.layer.non_trainable_weights + own

    def _state(self) -> dict:
        if self.reparam != "cs":
            return {}
        return {"temperature": _reparametrisations.temperature(self.steps_seen, self.total_steps,
                                                               self.hyperparameters["cs_beta_final"]),
                "initial": self.hyperparameters["cs_init"]}

    def _parameter(self, index: int):
        if self.str_threshold is not None:
            return self.str_threshold
        return self.parameters[index] if self.parameters else None

    def effective_kernels(self, state: dict | None = None) -> list:
        """The kernels the forward pass uses now."""
        state = self._state() if state is None else state
        return [_reparametrisations.effective(self.reparam, weight, mask, self._parameter(index), **state)
                for index, (weight, mask, _) in enumerate(_private.pruning_triples(self))]

    def kept_masks(self) -> list:
        """Where each pruned weight is non-zero in the forward pass now (STR, CS, DST: their own rule)."""
        state = self._state()
        return [_reparametrisations.kept(self.reparam, weight, mask, self._parameter(index), **state)
                for index, (weight, mask, _) in enumerate(_private.pruning_triples(self))]

    def call(self, *args, training=None, **kwargs):
        if self.reparam == "none":
            return super().call(*args, training=training, **kwargs)
        state = self._state()
        owners = [_owner_and_attribute(self.layer, path) for path in self.weight_paths]
        originals = [getattr(owner, name) for owner, name in owners]
        try:
            for (owner, name), effective in zip(owners, self.effective_kernels(state)):
                object.__setattr__(owner, name, effective)  # bypass Keras tracking for the swap
            outputs = _call_inner(self.layer, args, kwargs, training)
        finally:
            for (owner, name), variable in zip(owners, originals):
                object.__setattr__(owner, name, variable)
        if self.steps_seen is not None:
            self.temperature_used.assign(state["temperature"])
            if training is True:
                self.steps_seen.assign_add(1.0)
        return outputs

    def finalize(self) -> None:
        """Bakes the transform into the weights and masks; afterwards a plain policy wrapper."""
        if self.reparam == "none":
            return
        kept = self.kept_masks()
        for (weight, mask, _), effective, keep in zip(_private.pruning_triples(self), self.effective_kernels(), kept):
            value = tf.convert_to_tensor(effective)
            if self.reparam in _reparametrisations.MASK_FROM_EFFECTIVE:
                mask.assign(tf.cast(keep, mask.dtype))
            weight.assign(value * tf.cast(mask, value.dtype))
            install_mask_constraint(weight, mask)
        self.reparam = "none"

    def get_config(self) -> dict:
        return {**super().get_config(), "reparam": self.reparam, "str_init": self.str_init,
                "str_weight_decay": self.str_weight_decay, "keeps_threshold": self.str_threshold is not None,
                "hyperparameters": dict(self.hyperparameters), "total_steps": self.total_steps,
                "former": self.former}


def tfmot_polynomial_wrapper(target_sparsity: float, begin_step: int, end_step: int, frequency: int):
    """A factory of plain tfmot wrappers with tfmot's per-layer ``PolynomialDecay`` (cubic).

    ``end_step`` is moved up to the next multiple of ``frequency`` after
    ``begin_step``: tfmot's schedule stops short of its target otherwise.
    """
    if frequency < 1 or end_step < begin_step:
        raise ValueError(f"need frequency >= 1 and end_step >= begin_step, got {frequency}, {begin_step}, {end_step}")
    end_step = _during.tfmot_end_step(begin_step, end_step, frequency)
    schedule = _tfmot_schedule.PolynomialDecay(0.0, float(target_sparsity), int(begin_step), int(end_step),
                                               power=3, frequency=int(frequency))

    def make(layer, paths):
        del paths  # tfmot's registry decides which weights its own wrapper prunes
        if not _tfmot_registry.PruneRegistry.supports(layer) or not _tfmot_weight_names(layer):
            return None  # plain tfmot cannot wrap it; it stays dense in this baseline
        return PruneLowMagnitude(layer, pruning_schedule=schedule)

    return make


def _tfmot_weight_names(layer: keras.layers.Layer) -> list:
    registry = _tfmot_registry.PruneRegistry
    if registry._is_rnn_layer(layer) or registry._is_mha_layer(layer):  # pylint: disable=protected-access
        return ["kernel"]
    return list(_private.attribute(registry, "_weight_names", what="which weights tfmot's registry prunes")(layer))


def tfmot_step_callback() -> keras.callbacks.Callback:
    """tfmot's ``UpdatePruningStep``, which its own schedules need."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

    return pruning_callbacks.UpdatePruningStep()


def masked_values(wrapper: PruneLowMagnitude) -> list:
    """``weight * mask`` for each weight a wrapper prunes (what the next forward pass uses)."""
    return [weight * tf.cast(mask, weight.dtype) for weight, mask, _ in _private.pruning_triples(wrapper)]


PrunableKernel = _masking.PrunableKernel
