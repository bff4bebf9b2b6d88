"""tfimp: Iterative Magnitude Pruning for Keras, fast and exact.

    import tfimp
    model = tfimp.wrap(model)                 # masks owned by tfimp
    tfimp.prune(model, 0.9, criterion="global")
    model.fit(...)                            # pruned weights stay exactly zero
    tfimp.sparsity(model)                     # 0.9
    tfimp.strip(model).save("sparse.keras")

The package is a framework-free core (:mod:`tfimp.core`), two sibling front
ends (:mod:`tfimp.tf_keras`: tfmot's wrappers on Keras 2; :mod:`tfimp.keras3`:
tfimp's own wrapper on TensorFlow, JAX and PyTorch), the TensorFlow input
pipelines both may use (:mod:`tfimp.tfdata.pipelines`) and the command line
(:mod:`tfimp.cli`, ``python -m tfimp``). This module only routes names:

- ``import tfimp`` imports no framework and chooses no Keras.
- The core's names (``tfimp.Plan``, ``selection``, ``criteria``,
  ``results``, ``plots``, ...) load no framework.
- The model functions (``wrap``, ``prune``, ``strip``, ``sparsity``,
  ``layer_sparsity``, ``load_model``) serve the front end of the model (or
  file) they get.
- The other names (``callbacks``, ``IMP``, ``lr``, ...) are those of the
  Keras this process chose: Keras 3 once ``keras`` 3 is imported, tf_keras
  otherwise. :func:`use_keras` makes the choice explicit; ``from
  tfimp.tf_keras import ...`` and ``from tfimp.keras3 import ...`` name a
  front end outright.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from tfimp.core import front_end

__version__ = "0.1.0"

#: Framework-free names: public module name -> module.
_CORE_MODULES = {"selection": "tfimp.core.selection", "criteria": "tfimp.core.criteria",
                 "registry": "tfimp.core.registry", "plan": "tfimp.core.plan", "core": "tfimp.core",
                 "front_end": "tfimp.core.front_end", "results": "tfimp.core.results", "plots": "tfimp.core.plots",
                 "architectures": "tfimp.core.architectures", "storage": "tfimp.core.storage",
                 "structures": "tfimp.core.structures"}
_CORE_NAMES = {"Plan": "tfimp.core.plan"}
#: The front ends' packages.
_FRONT_END_PACKAGES = {front_end.TF_KERAS: "tfimp.tf_keras", front_end.KERAS3: "tfimp.keras3"}
_FRONT_END_SUBPACKAGES = {"tf_keras": "tfimp.tf_keras", "keras3": "tfimp.keras3", "tfdata": "tfimp.tfdata",
                          "cli": "tfimp.cli", "methods": "tfimp.cli.methods"}
#: Modules each front end offers under ``tfimp.<name>`` in a process of its Keras.
_FRONT_END_MODULES = {
    front_end.TF_KERAS: ("baselines", "batchnorm", "callbacks", "coverage", "data", "distribute", "export", "guards",
                         "lr", "models", "optimizers", "pruning", "report", "workdir", "wrapping"),
    front_end.KERAS3: ("baselines", "batchnorm", "callbacks", "coverage", "data", "export", "lr", "models",
                       "optimizers", "report"),
}
#: Names each front end's package defines (``tfimp.tf_keras.IMP``, ``tfimp.keras3.IMP``, ...).
_FRONT_END_NAMES = {front_end.TF_KERAS: ("IMP", "Dense", "DuringTraining", "load_cycle", "keras", "tf"),
                    front_end.KERAS3: ("IMP", "Dense", "DuringTraining", "load_cycle")}
#: Model functions: they serve either Keras, by the model (or file) they are given.
_MODEL_FUNCTIONS = ("layer_sparsity", "load_model", "prune", "sparsity", "strip", "wrap")

__all__ = sorted({*_CORE_MODULES, *_CORE_NAMES, *_FRONT_END_MODULES[front_end.TF_KERAS],
                  *_FRONT_END_NAMES[front_end.TF_KERAS], *_MODEL_FUNCTIONS, "use_keras", "keras_of_process"}
                 - {"registry", "core"})


def _front_end_package(which: str):
    return importlib.import_module(_FRONT_END_PACKAGES[which])


def use_keras(version: int):
    """Commits this process to a Keras before any tfimp name follows it; returns that Keras module.

    ``use_keras(3)`` imports Keras 3 (``import keras``), ``use_keras(2)``
    selects tf_keras (``tfimp.tf_keras.keras``): a script's ``--keras``
    flag. Afterwards the process-wide names resolve to that front end.

    Raises:
      ValueError: ``version`` is not 2 or 3, or the process already uses the other Keras.
    """
    if version not in (2, 3):
        raise ValueError(f"Keras version must be 2 (tf_keras) or 3, got {version!r}")
    wanted = front_end.KERAS3 if version == 3 else front_end.TF_KERAS
    committed = "keras" in sys.modules or "tfimp.tf_keras._backend" in sys.modules
    if committed and front_end.of_process() != wanted:
        raise ValueError(f"this process already uses {front_end.of_process()}, not {wanted}: choose the Keras "
                         "before importing either (for Keras 3, without TF_USE_LEGACY_KERAS)")
    if version == 3:
        if os.environ.get("TF_USE_LEGACY_KERAS") in front_end.LEGACY_KERAS_VALUES:
            raise ValueError("Keras 3 needs a process without TF_USE_LEGACY_KERAS (it makes tf.keras Keras 2)")
        import keras  # noqa: PLC0415

        return keras
    return _front_end_package(front_end.TF_KERAS).keras


def keras_of_process():
    """The Keras module this process uses (:func:`tfimp.core.front_end.of_process`): Keras 3, or tf_keras."""
    return use_keras(3 if front_end.of_process() == front_end.KERAS3 else 2)


def _model_function(name: str, which: str):
    return getattr(_front_end_package(which), name)


def wrap(model, **kwargs) -> Any:
    """Wraps every prunable weight of ``model`` for tfimp's masks (kinds=, exclude=, verbose=); returns the model."""
    return _model_function("wrap", front_end.of_model(model))(model, **kwargs)


def prune(model, sparsity: float, criterion: str = "global", **kwargs) -> dict[str, float]:
    """Prunes a wrapped model exactly to ``sparsity`` by ``criterion``; returns each weight's sparsity."""
    return _model_function("prune", front_end.of_model(model))(model, sparsity, criterion, **kwargs)


def strip(model) -> Any:
    """The model without tfimp's wrappers, holding the zeros; a plain model of its Keras."""
    return _model_function("strip", front_end.of_model(model))(model)


def sparsity(model, over: str = "prunable", structure: str = "unstructured") -> float:
    """The fraction of pruned weights (``over="prunable"``) or of zeros over all parameters (``"all"``);
    ``structure`` counts the prunable weights in a structure's unit (``tfimp.structures``)."""
    return _model_function("sparsity", front_end.of_model(model))(model, over, structure)


def layer_sparsity(model, structure: str = "unstructured") -> dict[str, float]:
    """Each prunable weight's sparsity, by layer name (``structure``: counted in its unit)."""
    return _model_function("layer_sparsity", front_end.of_model(model))(model, structure)


def load_model(path: str, **kwargs) -> Any:
    """Loads a wrapped or stripped model tfimp saved; the file says which Keras wrote it."""
    return _model_function("load_model", front_end.of_file(path))(path, **kwargs)


def _keras3_process_error(name: str) -> AttributeError:
    import keras  # noqa: PLC0415  (already imported: that is what makes this a Keras 3 process)

    return AttributeError(
        f"tfimp.{name} belongs to the tf_keras front end, and this process uses Keras 3 (it imported keras "
        f"{keras.__version__}); tfimp does not switch a Keras 3 process to Keras 2. Here tfimp offers the model "
        f"functions, the core, {sorted(_FRONT_END_NAMES[front_end.KERAS3])} and "
        f"{sorted(_FRONT_END_MODULES[front_end.KERAS3])}. For tf_keras, call tfimp.use_keras(2) (or set "
        "TF_USE_LEGACY_KERAS=1) in a new process before importing keras.")


def __getattr__(name: str) -> Any:
    """Imports what ``name`` needs on first use (PEP 562), so ``import tfimp`` selects no framework."""
    if name in _CORE_MODULES:
        value = importlib.import_module(_CORE_MODULES[name])
    elif name in _CORE_NAMES:
        value = getattr(importlib.import_module(_CORE_NAMES[name]), name)
    elif name in _FRONT_END_SUBPACKAGES:
        value = importlib.import_module(_FRONT_END_SUBPACKAGES[name])
    elif name in ("keras", "tf"):  # tf_keras by name: its import refuses in a process that chose Keras 3
        value = getattr(_front_end_package(front_end.TF_KERAS), name)
    elif any(name in names for names in (*_FRONT_END_MODULES.values(), *_FRONT_END_NAMES.values())):
        which = front_end.of_process()
        if name not in _FRONT_END_MODULES[which] and name not in _FRONT_END_NAMES[which]:
            raise _keras3_process_error(name)
        package = _front_end_package(which)
        value = (importlib.import_module(f"{package.__name__}.{name}") if name in _FRONT_END_MODULES[which]
                 else getattr(package, name))
    else:
        raise AttributeError(f"module 'tfimp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
