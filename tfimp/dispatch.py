"""``tfimp.wrap``, ``prune``, ``strip``, ``sparsity``, ``layer_sparsity`` and ``load_model`` for either Keras.

Each looks at what it is given (:mod:`tfimp.front_end`) and calls the same
function of that front end, importing it on first use: a tf_keras model goes
to ``tfimp.wrapping``/``tfimp.pruning``, a Keras 3 model to
``tfimp.keras3.masks``. The arguments, results and errors are the front
ends' own, and the same on both (the tf_keras ``wrap`` also takes
``wrapper=``, which the baselines use).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from tfimp import front_end as _front_end

_FUNCTIONS = {
    _front_end.TF_KERAS: {"wrap": "tfimp.wrapping", "strip": "tfimp.wrapping", "load_model": "tfimp.wrapping",
                          "prune": "tfimp.pruning", "sparsity": "tfimp.pruning", "layer_sparsity": "tfimp.pruning"},
    _front_end.KERAS3: dict.fromkeys(("wrap", "strip", "load_model", "prune", "sparsity", "layer_sparsity"),
                                     "tfimp.keras3.masks"),
}


@functools.lru_cache(maxsize=None)
def _function(name: str, which: str):
    if which == _front_end.TF_KERAS:
        import tfimp

        tfimp._load_tf_keras_front_end()  # registers every tf_keras class before anything is loaded
    return getattr(importlib.import_module(_FUNCTIONS[which][name]), name)


def wrap(model, **kwargs) -> Any:
    """Wraps every prunable weight of ``model`` for tfimp's masks (kinds=, exclude=, verbose=); returns the model."""
    return _function("wrap", _front_end.of_model(model))(model, **kwargs)


def prune(model, sparsity: float, criterion: str = "global", **kwargs) -> dict[str, float]:
    """Prunes a wrapped model exactly to ``sparsity`` by ``criterion``; returns each weight's sparsity."""
    return _function("prune", _front_end.of_model(model))(model, sparsity, criterion, **kwargs)


def strip(model) -> Any:
    """The model without tfimp's wrappers, holding the zeros; a plain model of its Keras."""
    return _function("strip", _front_end.of_model(model))(model)


def sparsity(model, over: str = "prunable") -> float:
    """The fraction of pruned weights (``over="prunable"``) or of zeros over all parameters (``"all"``)."""
    return _function("sparsity", _front_end.of_model(model))(model, over)


def layer_sparsity(model) -> dict[str, float]:
    """Each prunable weight's sparsity, by layer name."""
    return _function("layer_sparsity", _front_end.of_model(model))(model)


def load_model(path: str, **kwargs) -> Any:
    """Loads a wrapped or stripped model tfimp saved; the file tells which Keras wrote it."""
    return _function("load_model", _front_end.of_file(path))(path, **kwargs)
