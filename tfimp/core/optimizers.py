"""The optimizer registry both front ends share: names, the authors' defaults, and how a name becomes an optimizer.

Each front end fills one :class:`OptimizerRegistry` with its Keras'
classes: ``torch_sgd`` (the authors' ``torch.optim.SGD`` semantics,
coupled L2 through a gradient momentum buffer) and ``keras_sgd_decoupled``
(Keras' own SGD, decay outside its buffer). A new optimizer is one
``register`` call.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from tfimp.core.registry import Registry


class OptimizerRegistry:
    """Optimizer names -> ``factory(learning_rate, *, momentum, nesterov, weight_decay)``."""

    def __init__(self, torch_sgd_class: type, keras_sgd_class: type):
        self._registry: Registry[Callable[..., Any]] = Registry("optimizer")
        self.register = self._registry.register
        self.get = self._registry.get
        self.known = self._registry.known

        @self.register("torch_sgd")
        def torch_sgd(learning_rate, *, momentum: float, nesterov: bool, weight_decay: float):
            """The authors' optimizer: coupled L2 through a gradient momentum buffer (TorchSGD)."""
            return torch_sgd_class(learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

        @self.register("keras_sgd_decoupled")
        def keras_sgd_decoupled(learning_rate, *, momentum: float, nesterov: bool, weight_decay: float):
            """Keras' ``SGD``: decay ``w -= lr * wd * w`` outside its (lr-scaled) momentum buffer."""
            return keras_sgd_class(learning_rate, momentum=momentum, nesterov=nesterov,
                                   weight_decay=weight_decay or None)

    def make(self, name: str, learning_rate, *, momentum: float = 0.9, nesterov: Optional[bool] = None,
             weight_decay: float = 5e-4):
        """The optimizer ``name`` (``known()``); Nesterov defaults to on when there is weight decay and momentum.

        The paper's code uses Nesterov exactly when weight decay is used.

        Raises:
          ValueError: unknown name (the message lists the known ones).
        """
        factory = self.get(name)
        nesterov = bool(weight_decay > 0 and momentum > 0) if nesterov is None else bool(nesterov)
        return factory(learning_rate, momentum=float(momentum), nesterov=nesterov, weight_decay=float(weight_decay))


def check_torch_sgd_arguments(momentum: float, nesterov: bool, weight_decay: float) -> None:
    """``torch.optim.SGD``'s own checks, with its messages' content."""
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if nesterov and float(momentum) == 0.0:
        raise ValueError("nesterov=True needs momentum > 0 (as in torch.optim.SGD)")
    if float(weight_decay) < 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
