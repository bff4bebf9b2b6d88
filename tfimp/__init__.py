"""tfimp: Iterative Magnitude Pruning for Keras, fast and exact.

    import tfimp
    model = tfimp.wrap(model)                 # tfmot wrappers, masks owned by tfimp
    tfimp.prune(model, 0.9, criterion="global")
    model.fit(...)                            # pruned weights stay exactly zero
    tfimp.sparsity(model)                     # 0.9
    tfimp.strip(model).save("sparse.keras")

``import tfimp`` alone imports no framework and changes nothing about which
Keras the process uses. The first use of the tf_keras front end (any name
below but the framework-free core: ``tfimp.wrap``, ``tfimp.keras``,
``tfimp.IMP``, ...) selects the Keras 2 stack (``tf_keras``) that tfmot needs,
as ``tfimp._backend`` describes; build those models with ``tfimp.keras``.
The core (``tfimp.core``: ``tfimp.selection``, ``tfimp.criteria``,
``tfimp.Plan``) needs only numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Framework-free modules, public under these names (``tfimp.criteria`` is ``tfimp.core.criteria``).
_CORE_MODULES = {"selection": "tfimp.core.selection", "criteria": "tfimp.core.criteria",
                 "registry": "tfimp.core.registry", "plan": "tfimp.core.plan", "core": "tfimp.core"}
_CORE_NAMES = {"Plan": "tfimp.core.plan"}
#: The tf_keras front end: its modules and the names it defines.
_TF_KERAS_MODULES = ("baselines", "batchnorm", "callbacks", "coverage", "data", "distribute", "export", "guards",
                     "lr", "models", "optimizers", "plots", "pruning", "report", "results", "storage", "workdir")
_TF_KERAS_NAMES = {"keras": "tfimp._backend", "tf": "tfimp._backend", "load_cycle": "tfimp.checkpoint",
                   "IMP": "tfimp.imp", "Dense": "tfimp.imp", "DuringTraining": "tfimp.baselines",
                   "layer_sparsity": "tfimp.pruning", "prune": "tfimp.pruning", "sparsity": "tfimp.pruning",
                   "load_model": "tfimp.tfmot_glue", "strip": "tfimp.tfmot_glue", "wrap": "tfimp.tfmot_glue"}

__all__ = sorted(set(_CORE_MODULES) - {"registry", "core"} | set(_CORE_NAMES) | set(_TF_KERAS_MODULES)
                 | set(_TF_KERAS_NAMES))


def _load_tf_keras_front_end() -> None:
    """Imports every module of the tf_keras front end, so its Keras classes are registered for loading files."""
    for name in _TF_KERAS_MODULES + ("checkpoint", "imp", "tfmot_glue"):
        importlib.import_module(f"tfimp.{name}")


def __getattr__(name: str) -> Any:
    """Imports what ``name`` needs on first use (PEP 562), so ``import tfimp`` selects no framework."""
    if name in _CORE_MODULES:
        value = importlib.import_module(_CORE_MODULES[name])
    elif name in _CORE_NAMES:
        value = getattr(importlib.import_module(_CORE_NAMES[name]), name)
    elif name in _TF_KERAS_MODULES or name in _TF_KERAS_NAMES:
        _load_tf_keras_front_end()
        value = (importlib.import_module(f"tfimp.{name}") if name in _TF_KERAS_MODULES
                 else getattr(importlib.import_module(_TF_KERAS_NAMES[name]), name))
    else:
        raise AttributeError(f"module 'tfimp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
