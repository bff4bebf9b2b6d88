"""The workdir (layout, identity, lock) of :mod:`tfimp.core.workdir`, with tf_keras' several workers.

Under ``MultiWorkerMirroredStrategy`` only the chief writes the workdir; the
other workers write into ``workertemp_<task id>/`` (:func:`write_dir`, Keras'
convention). This module tells the core who the chief is and adds the two
functions that need the strategy.
"""

from __future__ import annotations

from tfimp.core import workdir as _core
from tfimp.core.workdir import *  # noqa: F401,F403  (the layout's names and the identity and lock functions)
from tfimp.core.workdir import WORKER_TEMP, path
from tfimp.core.storage import remove
from tfimp.tf_keras.distribute import is_chief, task


def write_dir(workdir: str, strategy=None) -> str:
    """Where this process writes: ``workdir`` itself on the chief, ``workdir/workertemp_<id>`` on other workers."""
    if is_chief(strategy):
        return workdir
    return path(workdir, f"{WORKER_TEMP}{task(strategy)[1]}")


def remove_worker_scratch(workdir: str, strategy=None) -> None:
    """Removes this worker's ``workertemp_<id>`` (nothing on the chief)."""
    if not is_chief(strategy):
        remove(write_dir(workdir, strategy))


_core.set_workers(is_chief=lambda: is_chief(), scratch_of=lambda workdir: write_dir(workdir))
