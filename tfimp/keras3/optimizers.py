"""The authors' optimizer on Keras 3: :class:`TorchSGD`, ``torch.optim.SGD`` step for step, in ``keras.ops``.

The same update as the tf_keras ``tfimp.optimizers.TorchSGD`` (coupled L2
through a gradient momentum buffer, PyTorch's Nesterov form); see that
module for why Keras' own SGD differs. Per step, with gradient ``g``::

    d = g + wd * w
    b = mu * b + d
    w = w - lr * (d + mu * b)      # nesterov; else w - lr * b

``tfimp.optimizers`` is this module in a Keras 3 process, with the same
registry names (``make("torch_sgd", ...)``, ``"keras_sgd_decoupled"``).
"""

from __future__ import annotations

import keras
from keras import ops

from tfimp.core import optimizers as _core_optimizers


@keras.saving.register_keras_serializable(package="tfimp")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD that matches ``torch.optim.SGD`` step for step (dampening 0), on every Keras 3 backend.

    Args:
      learning_rate: a float or a Keras ``LearningRateSchedule``.
      momentum: mu in [0, 1); 0 is plain SGD (no buffer).
      nesterov: PyTorch's Nesterov form; needs momentum > 0.
      weight_decay: coupled L2 added to the gradient of every trained variable.
      **kwargs: passed to ``keras.optimizers.Optimizer`` (its own decoupled decay is not used).
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, name: str = "TorchSGD", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        _core_optimizers.check_torch_sgd_arguments(momentum, nesterov, weight_decay)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.coupled_weight_decay = float(weight_decay)
        #: a :class:`tfimp.core.gradient_rules.GradientRule` applied to the gradients every step (LC, GSM), or None
        self.gradient_rule = None

    def apply(self, grads, trainable_variables=None):
        if self.gradient_rule is not None:
            variables = self._trainable_variables if trainable_variables is None else list(trainable_variables)
            grads = [None if g is None else ops.convert_to_tensor(g) for g in grads]  # numpy ones too (torch)
            grads = self.gradient_rule.apply(grads, variables, [v.value for v in variables], ops)
        return super().apply(grads, trainable_variables)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(variable, "momentum_buffer")
                          for variable in variables] if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        direction = gradient
        if self.coupled_weight_decay:
            direction = ops.add(direction, ops.multiply(ops.cast(self.coupled_weight_decay, variable.dtype), variable))
        if self.momentum:
            buffer = self.momentums[self._get_variable_index(variable)]
            mu = ops.cast(self.momentum, variable.dtype)
            self.assign(buffer, ops.add(ops.multiply(mu, buffer), direction))
            direction = ops.add(direction, ops.multiply(mu, buffer)) if self.nesterov else buffer
        self.assign_sub(variable, ops.multiply(lr, direction))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov,
                       "weight_decay": self.coupled_weight_decay})
        return config


_OPTIMIZERS = _core_optimizers.OptimizerRegistry(TorchSGD, keras.optimizers.SGD)
register = _OPTIMIZERS.register
get = _OPTIMIZERS.get
known = _OPTIMIZERS.known
make = _OPTIMIZERS.make


def unwrapped(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that steps the weights: the inner one of a ``LossScaleOptimizer``."""
    return getattr(optimizer, "inner_optimizer", optimizer)
