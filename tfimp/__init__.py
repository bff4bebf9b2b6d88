"""tfimp: Iterative Magnitude Pruning for Keras, fast and exact.

    import tfimp
    model = tfimp.wrap(model)                 # tfmot wrappers, masks owned by tfimp
    tfimp.prune(model, 0.9, criterion="global")
    model.fit(...)                            # pruned weights stay exactly zero
    tfimp.sparsity(model)                     # 0.9
    tfimp.strip(model).save("sparse.keras")

``import tfimp`` alone imports no framework and changes nothing about which
Keras the process uses. The model functions (``wrap``, ``prune``, ``strip``,
``sparsity``, ``layer_sparsity``, ``load_model``) serve a tf_keras model
through tfmot and a Keras 3 model (TensorFlow, JAX or PyTorch backend)
through ``tfimp.keras3``. ``tfimp.callbacks``, ``tfimp.optimizers``,
``tfimp.lr`` and ``tfimp.coverage`` follow the Keras the process chose
(``tfimp.front_end``). The first use of a tf_keras-only name (``tfimp.keras``,
``tfimp.IMP``, ...) selects the Keras 2 stack (``tf_keras``) that tfmot
needs, as ``tfimp._backend`` describes; build those models with
``tfimp.keras``. The core (``tfimp.core``: ``tfimp.selection``,
``tfimp.criteria``, ``tfimp.Plan``) needs only numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Framework-free modules, public under these names (``tfimp.criteria`` is ``tfimp.core.criteria``).
_CORE_MODULES = {"selection": "tfimp.core.selection", "criteria": "tfimp.core.criteria",
                 "registry": "tfimp.core.registry", "plan": "tfimp.core.plan", "core": "tfimp.core",
                 "front_end": "tfimp.front_end", "keras3": "tfimp.keras3", "methods": "tfimp.methods",
                 "architectures": "tfimp.architectures"}
_CORE_NAMES = {"Plan": "tfimp.core.plan"}
#: The tf_keras front end: its modules and the names it defines.
_TF_KERAS_MODULES = ("baselines", "batchnorm", "callbacks", "coverage", "data", "distribute", "export", "guards",
                     "lr", "models", "optimizers", "plots", "pruning", "report", "results", "storage", "workdir",
                     "wrapping")
#: Modules of the tf_keras front end that are not public names but load with it.
_TF_KERAS_INTERNAL = ("checkpoint", "imp", "tfmot_glue", "reparametrisations")
_loading_tf_keras = False
_TF_KERAS_NAMES = {"keras": "tfimp._backend", "tf": "tfimp._backend", "load_cycle": "tfimp.checkpoint",
                   "IMP": "tfimp.imp", "Dense": "tfimp.imp", "DuringTraining": "tfimp.baselines"}
#: Model functions: they serve either Keras, by the model (or file) they are given.
_MODEL_FUNCTIONS = ("layer_sparsity", "load_model", "prune", "sparsity", "strip", "wrap")
#: Modules whose Keras 3 twin serves a Keras 3 process (see tfimp.front_end).
_KERAS3_MODULES = {"baselines": "tfimp.keras3.baselines", "batchnorm": "tfimp.keras3.batchnorm", "callbacks": "tfimp.keras3.callbacks",
                   "models": "tfimp.keras3.models",
                   "coverage": "tfimp.keras3.coverage", "export": "tfimp.keras3.export",
                   "data": "tfimp.keras3.data", "lr": "tfimp.keras3.lr", "optimizers": "tfimp.keras3.optimizers",
                   # framework-free, so one module serves both: the table of rows, the accuracy plot
                   "results": "tfimp.core.results", "plots": "tfimp.plots"}
_KERAS3_NAMES = {"IMP": "tfimp.keras3.imp", "Dense": "tfimp.keras3.imp", "load_cycle": "tfimp.keras3.checkpoint",
                 "DuringTraining": "tfimp.keras3.baselines"}

__all__ = sorted(set(_CORE_MODULES) - {"registry", "core", "keras3"} | set(_CORE_NAMES) | set(_TF_KERAS_MODULES)
                 | set(_TF_KERAS_NAMES) | set(_MODEL_FUNCTIONS))


def _load_tf_keras_front_end() -> None:
    """Imports every module of the tf_keras front end, so its Keras classes are registered for loading files."""
    global _loading_tf_keras
    if _loading_tf_keras:  # a module of the front end importing another (``from tfimp import wrapping``)
        return
    _loading_tf_keras = True
    try:
        for name in _TF_KERAS_MODULES + _TF_KERAS_INTERNAL:
            importlib.import_module(f"tfimp.{name}")
    finally:
        _loading_tf_keras = False


def _front_end_of_process() -> str:
    from tfimp import front_end

    return front_end.of_process()


def __getattr__(name: str) -> Any:
    """Imports what ``name`` needs on first use (PEP 562), so ``import tfimp`` selects no framework."""
    if name in _CORE_MODULES:
        value = importlib.import_module(_CORE_MODULES[name])
    elif name in _CORE_NAMES:
        value = getattr(importlib.import_module(_CORE_NAMES[name]), name)
    elif name in _MODEL_FUNCTIONS:
        value = getattr(importlib.import_module("tfimp.dispatch"), name)
    elif name in _KERAS3_MODULES and _front_end_of_process() == "keras3":
        value = importlib.import_module(_KERAS3_MODULES[name])
    elif name in _KERAS3_NAMES and _front_end_of_process() == "keras3":
        value = getattr(importlib.import_module(_KERAS3_NAMES[name]), name)
    elif name in _TF_KERAS_MODULES or name in _TF_KERAS_NAMES:
        if name not in ("keras", "tf") and _front_end_of_process() == "keras3":
            raise AttributeError(
                f"tfimp.{name} belongs to the tf_keras front end, and this process uses Keras 3 (it imported "
                f"keras {__import__('keras').__version__}); on Keras 3 tfimp offers {sorted(_MODEL_FUNCTIONS)}, "
                f"Plan, the core, {sorted(_KERAS3_NAMES)} and {sorted(_KERAS3_MODULES)}. For tf_keras, use tfimp.keras before importing keras.")
        _load_tf_keras_front_end()
        value = (importlib.import_module(f"tfimp.{name}") if name in _TF_KERAS_MODULES
                 else getattr(importlib.import_module(_TF_KERAS_NAMES[name]), name))
    else:
        raise AttributeError(f"module 'tfimp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
