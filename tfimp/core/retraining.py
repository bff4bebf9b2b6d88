"""Retraining learning-rate schedules as tables: one rate per step of a cycle, framework-free.

A retraining schedule is a function of the original (dense) schedule,
tabulated over its M steps (:class:`Original`), and of the cycle's length N;
it returns N rates (numpy). The front ends turn the table into their Keras'
schedule object; the tables themselves are the same everywhere. Definitions
in docs/algorithms.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from tfimp.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class Original:
    """The original (dense) schedule, tabulated over its ``M`` steps."""

    values: np.ndarray
    warmup_steps: int = 0

    @property
    def steps(self) -> int:
        return int(self.values.size)

    @property
    def eta_max(self) -> float:
        return float(self.values.max())

    @property
    def eta_min(self) -> float:
        tail = self.values[min(self.warmup_steps, self.steps - 1):]
        return float(tail.min())


RetrainFn = Callable[..., np.ndarray]
_RETRAIN: Registry[RetrainFn] = Registry("retraining schedule")

#: ``@register("name")``: adds a retraining schedule
#: ``fn(original: Original, steps: int, **options) -> values`` (one rate per step).
register = _RETRAIN.register
#: Names of the registered retraining schedules, sorted.
known = _RETRAIN.known


def check_name(name: str) -> str:
    """Returns ``name`` if it is a registered retraining schedule (else ValueError listing them)."""
    _RETRAIN.get(name)
    return name


def retrain_values(name: str, original: Original, retrain_steps: int, **options) -> np.ndarray:
    """The ``retrain_steps`` learning rates of schedule ``name`` for a tabulated original."""
    fn = _RETRAIN.get(name)
    if retrain_steps < 1:
        raise ValueError(f"retrain_steps must be >= 1, got {retrain_steps}")
    values = np.asarray(fn(original, int(retrain_steps), **options), dtype=np.float64)
    if values.shape != (retrain_steps,):
        raise ValueError(f"retraining schedule {name!r} returned {values.shape} values for {retrain_steps} steps")
    return values


def _warmup_then(eta0: float, steps: int, after: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Half-cosine warm-up from 0 to ``eta0`` over W = floor(0.1 N), then ``after(j, N - W)``."""
    warmup = int(math.floor(0.1 * steps))
    t = np.arange(warmup, dtype=np.float64)
    ramp = eta0 * (1.0 - np.cos(np.pi * t / warmup)) / 2.0 if warmup else np.zeros(0)
    span = steps - warmup
    return np.concatenate([ramp, after(np.arange(span, dtype=np.float64), span)])


@register("ft")
def fine_tuning(original: Original, steps: int) -> np.ndarray:
    """FT (Han et al. 2015): the original schedule's last (smallest) rate, constant."""
    return np.full(steps, original.eta_min)


@register("lrw")
def lr_rewinding(original: Original, steps: int) -> np.ndarray:
    """LRW (Renda et al. 2020, arXiv:2003.02389): the last N steps of the original schedule."""
    index = np.clip(original.steps - steps + np.arange(steps), 0, original.steps - 1)
    return original.values[index]


@register("slr")
def scaled_lr_restarting(original: Original, steps: int) -> np.ndarray:
    """SLR (Le & Hua 2021, arXiv:2105.03193): the original schedule compressed into N - W steps.

    The original's warm-up part is replaced by ``eta_max``, so a step schedule
    keeps its relative milestones.
    """
    flattened = original.values.copy()
    flattened[: original.warmup_steps] = original.eta_max

    def compressed(j, span):
        index = np.floor(j * original.steps / span).astype(np.int64)
        return flattened[np.clip(index, 0, original.steps - 1)]

    return _warmup_then(original.eta_max, steps, compressed)


@register("clr")
def cyclic_lr_restarting(original: Original, steps: int) -> np.ndarray:
    """CLR (Le & Hua 2021): one cosine cycle from ``eta_max`` to ``eta_min`` after the warm-up."""
    eta_max, eta_min = original.eta_max, original.eta_min
    return _warmup_then(eta_max, steps, lambda j, span: eta_min + (eta_max - eta_min) * (1 + np.cos(np.pi * j / span)) / 2)


@register("llr")
def linear_lr_restarting(original: Original, steps: int) -> np.ndarray:
    """LLR (Zimmer et al.): linear from ``eta_max`` to 0 after the warm-up."""
    eta_max = original.eta_max
    return _warmup_then(eta_max, steps, lambda j, span: eta_max * (1 - j / span))


@register("allr")
def adaptive_linear_lr_restarting(original: Original, steps: int, initial_lr: float | None = None) -> np.ndarray:
    """ALLR (Zimmer et al., ICLR 2023): linear from ``initial_lr`` to 0 after the warm-up.

    ``initial_lr`` is chosen per cycle with :func:`allr_initial_lr`; without it
    ALLR starts at ``eta_max`` (and equals LLR).
    """
    eta0 = original.eta_max if initial_lr is None else float(initial_lr)
    return _warmup_then(eta0, steps, lambda j, span: eta0 * (1 - j / span))


def allr_initial_lr(eta_max: float, norm_drop: float, pruned_fraction: float, retrain_epochs: float,
                    train_epochs: float) -> float:
    """ALLR's initial learning rate for one cycle.

    ``clip(eta_max * d / sqrt(s), min(T_rt / T, 1) * eta_max, eta_max)`` with
    ``d`` the relative L2 norm removed by this cycle's pruning and ``s`` the
    fraction of the still-alive weights it pruned.

    Raises:
      ValueError: a fraction outside (0, 1], negative norm drop, or epochs < 1.
    """
    if not 0.0 < pruned_fraction <= 1.0:
        raise ValueError(f"pruned_fraction must be in (0, 1], got {pruned_fraction}")
    if norm_drop < 0:
        raise ValueError(f"norm_drop must be >= 0, got {norm_drop}")
    if train_epochs <= 0 or retrain_epochs <= 0:
        raise ValueError(f"epochs must be positive, got retrain {retrain_epochs}, train {train_epochs}")
    lower = min(retrain_epochs / train_epochs, 1.0) * eta_max
    return float(np.clip(eta_max * norm_drop / math.sqrt(pruned_fraction), lower, eta_max))
