"""The CLI's slimmed export of a ``structure="channels"`` run: ``export/model_slim.keras``, its row in sizes.json."""

from __future__ import annotations

from typing import Sequence

import numpy as np

import tfimp
from tfimp.core import exports as _exports
from tfimp.core import storage as _storage
from tfimp.core import structures as _structures
from tfimp.core import workdir as _workdir


def wanted(config) -> bool:
    """Whether the run prunes whole channels (``config.structure`` is ``channels`` or ``channels:l1``)."""
    return isinstance(_structures.get(config.get("structure", _structures.UNSTRUCTURED)), _structures.Channels)


def write(model, directory: str, check_inputs: np.ndarray,
          files: Sequence[_exports.ExportedFile]) -> _exports.ExportedFile:
    """Slims the pruned (wrapped) ``model`` with ``tfimp.slim``, saves it into ``directory``'s ``export/`` and
    returns its row, checked on ``check_inputs`` against the pruned model."""
    slimmed = tfimp.slim(model)  # first: it refuses a model it cannot rebuild before anything is stripped
    stripped = tfimp.strip(model)
    path = _workdir.path(directory, _workdir.EXPORT_SLIM_MODEL)
    with _storage.local_file(path) as local:
        slimmed.save(local)
        return _exports.slim_row(path, local, int(slimmed.count_params()), int(stripped.count_params()),
                                 stripped.predict_on_batch(check_inputs), slimmed.predict_on_batch(check_inputs),
                                 files)
