"""tfimp: Iterative Magnitude Pruning for Keras, fast and exact.

Importing tfimp selects the Keras 2 stack (``tf_keras``) that tfmot needs;
build models with ``tfimp.keras``.

    import tfimp
    model = tfimp.wrap(model)                 # tfmot wrappers, masks owned by tfimp
    tfimp.prune(model, 0.9, criterion="global")
    model.fit(...)                            # pruned weights stay exactly zero
    tfimp.sparsity(model)                     # 0.9
    tfimp.strip(model).save("sparse.keras")
"""

from tfimp._backend import keras, tf
from tfimp import (baselines, batchnorm, callbacks, coverage, criteria, data, distribute, export, guards, lr, models,
                   optimizers, plots, pruning, report, results, selection, storage, workdir)
from tfimp.checkpoint import load_cycle
from tfimp.imp import IMP, Dense
from tfimp.baselines import DuringTraining
from tfimp.plan import Plan
from tfimp.pruning import layer_sparsity, prune, sparsity
from tfimp.tfmot_glue import load_model, strip, wrap

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "DuringTraining",
    "IMP",
    "Plan",
    "baselines",
    "batchnorm",
    "callbacks",
    "coverage",
    "criteria",
    "data",
    "distribute",
    "export",
    "guards",
    "keras",
    "layer_sparsity",
    "lr",
    "load_cycle",
    "load_model",
    "models",
    "optimizers",
    "plots",
    "prune",
    "pruning",
    "report",
    "results",
    "selection",
    "sparsity",
    "storage",
    "strip",
    "tf",
    "workdir",
    "wrap",
]
