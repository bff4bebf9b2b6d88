"""Gradient rules: methods that train dense but change which weights their gradient or decay reaches, by name.

Two of the paper's comparison set prune at the end of training only and
shape the weights before that through the update, every step, over all
prunable weights together (n weights, k = n - floor(S n + 0.5) kept, the
count one pruning step to S keeps):

* ``lc`` — Learning-Compression in the authors' simplified form
  (Carreira-Perpinan & Idelbayev 2018): weight decay acts only on the
  n - k weights of smallest magnitude; on the global top-k of |w| the
  decay term is cancelled by adding ``-wd * w`` to their gradient;
* ``gsm`` — Global Sparse Momentum (Ding et al. 2019): only the k weights
  with the largest ``|w * grad|`` keep their gradient; the others get a zero
  gradient, so only the (coupled) weight decay moves them towards zero.

Each rule is a function ``rule(weights, grads, kept, weight_decay, ops)``
of the prunable kernels' values and gradients, written once against a few
array operations (``abs``, ``concatenate``, ``reshape``, ``top_k``,
``scatter``, ``ones``, ``expand_dims``): ``keras.ops`` on Keras 3,
TensorFlow's on tf_keras. It runs inside the training step (the top-k of
the step's own gradients cannot be taken outside it), as part of the
optimizer's update (``tfimp.optimizers.TorchSGD``, whose decay is the
coupled L2 these rules are defined with). The selection is an exact
top-k (``top_k``, a partial selection, not a sort), with exactly k kept.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

from tfimp.core.registry import Registry

#: name -> ``rule(weights, grads, kept, weight_decay, ops) -> new grads`` (for the prunable kernels).
GRADIENT_RULES: Registry[Callable] = Registry("gradient rule")


def kept_count(total: int, sparsity: float) -> int:
    """How many of ``total`` weights a pruning step to ``sparsity`` keeps (the count ``tfimp.prune`` keeps)."""
    return total - math.floor(sparsity * total + 0.5)


def keep_top_k(scores: Sequence, kept: int, ops) -> list:
    """0/1 masks, shaped as ``scores``, with exactly ``kept`` ones at the largest scores over all of them."""
    shapes = [tuple(score.shape) for score in scores]
    sizes = [math.prod(shape) for shape in shapes]
    flat = ops.concatenate([ops.reshape(score, (-1,)) for score in scores], axis=0)
    _, indices = ops.top_k(flat, kept)
    keep = ops.scatter(ops.expand_dims(indices, -1), ops.ones((kept,), dtype=flat.dtype), (sum(sizes),))
    masks, start = [], 0
    for shape, size in zip(shapes, sizes):
        masks.append(ops.reshape(keep[start:start + size], shape))
        start += size
    return masks


@GRADIENT_RULES.register("lc")
def learning_compression(weights, grads, kept, weight_decay, ops):
    """LC: ``grad - wd * w`` on the global top-k of ``|w|`` (their coupled decay cancelled), ``grad`` elsewhere."""
    keep = keep_top_k([ops.abs(w) for w in weights], kept, ops)
    return [g - weight_decay * w * m for g, w, m in zip(grads, weights, keep)]


@GRADIENT_RULES.register("gsm")
def global_sparse_momentum(weights, grads, kept, weight_decay, ops):
    """GSM: the gradient of the global top-k of ``|w * grad|``, zero elsewhere."""
    del weight_decay  # the optimizer's coupled decay reaches every weight
    keep = keep_top_k([ops.abs(w * g) for w, g in zip(weights, grads)], kept, ops)
    return [g * m for g, m in zip(grads, keep)]


@dataclasses.dataclass(frozen=True)
class GradientRule:
    """A gradient rule bound to a model's prunable kernels, for an optimizer to apply every step.

    Attributes:
      name: the rule (:data:`GRADIENT_RULES`).
      targets: ``id`` of each prunable kernel variable.
      kept: k, the weights the rule favours.
      weight_decay: the optimizer's coupled decay (LC cancels it on the top-k).
    """

    name: str
    targets: frozenset
    kept: int
    weight_decay: float

    def __post_init__(self):
        GRADIENT_RULES.get(self.name)

    def apply(self, grads: Sequence, variables: Sequence, values: Sequence, ops) -> list:
        """``grads`` (one per variable) with the rule applied to the targets' (``values``: the variables' values)."""
        chosen = [i for i, variable in enumerate(variables) if id(variable) in self.targets]
        if len(chosen) != len(self.targets):
            raise ValueError(f"gradient rule {self.name!r}: {len(self.targets)} prunable kernels, but the optimizer "
                             f"updates {len(chosen)} of them; every prunable kernel must be trained")
        changed = GRADIENT_RULES.get(self.name)([values[i] for i in chosen], [grads[i] for i in chosen], self.kept,
                                                self.weight_decay, ops)
        grads = list(grads)
        for i, grad in zip(chosen, changed):
            grads[i] = grad
        return grads


def install(optimizer, name: str, kernels: Sequence, target_sparsity: float) -> GradientRule:
    """Binds rule ``name`` to ``kernels`` (the prunable kernel variables) and sets it on ``optimizer``.

    Raises:
      ValueError: ``optimizer`` is not a ``TorchSGD`` (the rules are defined with its coupled decay).
    """
    if not hasattr(optimizer, "gradient_rule") or not hasattr(optimizer, "coupled_weight_decay"):
        raise ValueError(f"{name} changes the update of tfimp's TorchSGD (coupled weight decay, as in the authors' "
                         f"runs); the model is compiled with {type(optimizer).__name__}: use optimizer='torch_sgd'")
    total = sum(math.prod(tuple(kernel.shape)) for kernel in kernels)
    optimizer.gradient_rule = GradientRule(name, frozenset(id(kernel) for kernel in kernels),
                                           kept_count(total, target_sparsity), optimizer.coupled_weight_decay)
    return optimizer.gradient_rule
