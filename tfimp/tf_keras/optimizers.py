"""Optimizers with the training semantics of the paper's runs.

The authors trained with ``torch.optim.SGD(lr, momentum=mu, nesterov=True,
weight_decay=wd)`` on every parameter. Per step, with gradient ``g`` of the
loss and learning rate ``lr_t``::

    d = g + wd * w                 # coupled L2: the decay goes through momentum
    b = mu * b + d                 # the buffer holds gradients, not lr * gradients
    w = w - lr_t * (d + mu * b)    # Nesterov as PyTorch defines it (else w - lr_t * b)

tf_keras' ``SGD(weight_decay=wd)`` is a different optimizer: it shrinks
``w`` by ``lr_t * wd * w`` outside the momentum buffer (about 10x weaker at
mu = 0.9 once the buffer is in steady state) and keeps ``lr_t * g`` in its
buffer, so a learning-rate change (warm-up, a step drop, a retraining
schedule's restart) acts on the buffer differently. :class:`TorchSGD`
reproduces PyTorch's update step for step; it is the runners' default
(``optimizer="torch_sgd"``). ``optimizer="keras_sgd_decoupled"`` selects
tf_keras' own SGD with its decoupled decay.

Pruned weights: the mask constraint installed by :func:`tfimp.wrap` runs
after every update (tf_keras applies variable constraints right after
``update_step``), so pruned weights stay exactly zero with this optimizer
too; their buffer entries never reach the masked model.
"""

from __future__ import annotations

import types

from tfimp.tf_keras import _private
from tfimp.tf_keras._backend import keras, tf
from tfimp.core import optimizers as _core_optimizers


#: The array operations of :mod:`tfimp.core.gradient_rules`, in TensorFlow.
_TF_OPS = types.SimpleNamespace(abs=tf.abs, concatenate=lambda values, axis: tf.concat(values, axis),
                                reshape=tf.reshape, top_k=lambda x, k: tf.math.top_k(x, k), scatter=tf.scatter_nd,
                                ones=lambda shape, dtype: tf.ones(shape, dtype), expand_dims=tf.expand_dims)


@keras.utils.register_keras_serializable(package="tfimp")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD that matches ``torch.optim.SGD`` step for step (dampening 0).

    Example:
      >>> opt = tfimp.optimizers.TorchSGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
      >>> model.compile(opt, loss, metrics=["accuracy"])

    Args:
      learning_rate: a float or a Keras ``LearningRateSchedule``.
      momentum: mu in [0, 1); 0 is plain SGD (no buffer).
      nesterov: PyTorch's Nesterov form ``w -= lr * (d + mu * b)``; needs momentum > 0.
      weight_decay: coupled L2 coefficient added to the gradient of every
        variable the optimizer updates (biases and BatchNorm included, as in
        the authors' runs).
      **kwargs: passed to ``keras.optimizers.Optimizer`` (``clipnorm``,
        ``jit_compile``, ...). Its own decoupled ``weight_decay`` is not used.

    Resetting the optimizer state (zeroing the ``momentums``) is PyTorch's
    "fresh optimizer": the next step starts the buffer at ``d``.
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, name: str = "TorchSGD", **kwargs):
        super().__init__(name=name, weight_decay=None, **kwargs)
        _core_optimizers.check_torch_sgd_arguments(momentum, nesterov, weight_decay)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.coupled_weight_decay = float(weight_decay)
        #: a :class:`tfimp.core.gradient_rules.GradientRule` applied to the gradients every step (LC, GSM), or None
        self.gradient_rule = None

    def apply_gradients(self, grads_and_vars, name=None, skip_gradients_aggregation=False, **kwargs):
        if self.gradient_rule is None:
            return super().apply_gradients(grads_and_vars, name=name,
                                           skip_gradients_aggregation=skip_gradients_aggregation, **kwargs)
        pairs = list(grads_and_vars)
        if not skip_gradients_aggregation and kwargs.pop("experimental_aggregate_gradients", True):
            pairs = self.aggregate_gradients(pairs)  # the rule's top-k is over the whole batch's gradient
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g, _ in pairs]
        variables = [v for _, v in pairs]
        grads = self.gradient_rule.apply(grads, variables, [tf.convert_to_tensor(v) for v in variables], _TF_OPS)
        return super().apply_gradients(zip(grads, variables), name=name, skip_gradients_aggregation=True)

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self.momentums = [self.add_variable_from_reference(model_variable=var, variable_name="momentum_buffer")
                          for var in var_list] if self.momentum else []
        self._built = True

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):  # PyTorch's dense SGD sees a dense gradient too
            gradient = tf.convert_to_tensor(gradient)
        lr = tf.cast(self.learning_rate, variable.dtype)
        direction = gradient
        if self.coupled_weight_decay:
            direction = direction + tf.cast(self.coupled_weight_decay, variable.dtype) * variable
        if self.momentum:
            mu = tf.cast(self.momentum, variable.dtype)
            buffer = self.momentums[_private.slot_index(self, variable)]
            buffer.assign(mu * buffer + direction)
            direction = direction + mu * buffer if self.nesterov else tf.convert_to_tensor(buffer)
        variable.assign_sub(lr * direction)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "learning_rate": self._serialize_hyperparameter(self._learning_rate),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.coupled_weight_decay,
        })
        return config


_OPTIMIZERS = _core_optimizers.OptimizerRegistry(TorchSGD, keras.optimizers.SGD)
register = _OPTIMIZERS.register
get = _OPTIMIZERS.get
known = _OPTIMIZERS.known
make = _OPTIMIZERS.make


def unwrapped(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that steps the weights: the inner one of a mixed-precision ``LossScaleOptimizer``.

    Its learning rate and slots (momentum) are the inner optimizer's; the
    wrapper adds only the loss scale, which tfimp never touches.
    """
    return getattr(optimizer, "inner_optimizer", optimizer)


def _check_drivable(optimizer) -> None:
    if not hasattr(optimizer, "_build_learning_rate"):
        raise TypeError(f"tfimp drives the learning rate of tf_keras optimizers (keras.optimizers.*); got "
                        f"{type(optimizer).__name__}, a legacy optimizer: compile with tfimp.keras.optimizers.SGD "
                        "or tfimp.optimizers.TorchSGD")


def current_schedule(optimizer: keras.optimizers.Optimizer):
    """The learning rate ``optimizer`` was compiled with: its ``LearningRateSchedule``, or the number."""
    optimizer = unwrapped(optimizer)
    _check_drivable(optimizer)
    rate = _private.optimizer_learning_rate(optimizer)  # Keras keeps the schedule object here; no public getter
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return rate
    return float(keras.backend.get_value(rate))


def install_schedule(optimizer: keras.optimizers.Optimizer,
                     schedule: keras.optimizers.schedules.LearningRateSchedule) -> None:
    """Makes ``schedule`` the learning rate of a built or unbuilt ``optimizer``, once.

    Keras' public setter accepts a schedule only for an optimizer created
    with one; for one created with a number, Keras' own builder makes the
    variable that holds the current rate (``optimizer.learning_rate`` then
    reads it), as the constructor would have. The one place in tfimp that
    reaches into the optimizer. A mixed-precision ``LossScaleOptimizer``'s
    inner optimizer gets it.
    """
    optimizer = unwrapped(optimizer)
    _check_drivable(optimizer)
    if isinstance(_private.optimizer_learning_rate(optimizer), keras.optimizers.schedules.LearningRateSchedule):
        optimizer.learning_rate = schedule  # public: the current-rate variable exists already
    else:
        _private.set_optimizer_schedule(optimizer, schedule)
