"""Optional dependencies: imported when a feature needs them, with the pip extra to install named.

The core API (``wrap``, ``prune``, the IMP callback and runners, export)
needs only TensorFlow, tf-keras and tfmot. The command line needs the
``[cli]`` extra (ml-collections, tensorflow-datasets, matplotlib,
TensorBoard, which TensorFlow 2.21 no longer installs); the
``kcv_*`` models need ``[keras-cv]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: module -> (extra that installs it, pip name)
EXTRAS = {
    "ml_collections": ("cli", "ml-collections"),
    "tensorflow_datasets": ("cli", "tensorflow-datasets"),
    "matplotlib": ("cli", "matplotlib"),
    "tensorboard": ("cli", "tensorboard"),
    "keras_cv": ("keras-cv", "keras-cv"),
}


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or an ImportError that says which extra brings it and what needed it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra, package = EXTRAS[module.split(".")[0]]
        raise ImportError(f"{purpose} needs {package}: pip install 'tfimp[{extra}]' (or pip install {package})") \
            from error
