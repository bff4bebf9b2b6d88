"""tfimp's tf_keras front end: IMP on Keras 2 (``tf_keras``) models, masks in tfmot's wrappers.

``from tfimp.tf_keras import wrap, prune, IMP, keras`` names this front end
outright; importing it selects the Keras 2 stack for this process
(:mod:`tfimp.tf_keras._backend`), which tfmot needs, and refuses in a
process that already uses Keras 3. Every module is imported here, so that
tfimp's Keras classes are registered before any file is loaded.
"""

from tfimp.tf_keras._backend import keras, tf  # first: selects tf_keras before anything touches tf.keras
from tfimp.tf_keras import (baselines, batchnorm, callbacks, checkpoint, coverage, data,  # noqa: F401
                            distribute, export, guards, imp, lr, models, optimizers, pruning, reparametrisations,
                            report, slimming, tfmot_glue, workdir, wrapping)
from tfimp.core.plan import Plan
from tfimp.tf_keras.baselines import DuringTraining
from tfimp.tf_keras.checkpoint import load_cycle
from tfimp.tf_keras.imp import IMP, Dense
from tfimp.tf_keras.pruning import layer_sparsity, load_model, prune, sparsity
from tfimp.tf_keras.slimming import slim
from tfimp.tf_keras.wrapping import strip, wrap

__all__ = ["Dense", "DuringTraining", "IMP", "Plan", "keras", "layer_sparsity", "load_cycle", "load_model", "prune",
           "slim", "sparsity", "strip", "tf", "wrap"]
