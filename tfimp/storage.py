"""Files on any file system TensorFlow has: local disks, ``gs://``, ``hdfs://``, ``ram://``.

Every file tfimp writes or reads (the workdir, exports, plots) goes through
these functions, built on ``tf.io.gfile``. What each guarantees:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` write ``name.tmp``
  and rename it: atomic on local disks; on object stores a rename is a copy
  and a delete, and readers see the old or the new object, never a part.
* Directories are never renamed (object stores cannot do that atomically);
  a unit of several files is made whole by writing a marker file last
  (see :mod:`tfimp.checkpoint`).
* :func:`local_file` and :func:`local_dir` stand in a local path for
  writers that only know local files (h5py, zip, the TFLite converter's
  bytes are fine already) and copy the result over.
* Directories are created explicitly (:func:`makedirs`): some file systems
  (``ram://``) list only directories that were made.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Iterator, Optional

from tfimp._backend import tf

_gfile = tf.io.gfile


def is_local(target: str) -> bool:
    """Whether ``target`` is on the local file system (no ``scheme://``)."""
    return "://" not in target or target.startswith("file://")


def exists(target: str) -> bool:
    return _gfile.exists(target)


def makedirs(directory: str) -> None:
    """Creates ``directory`` and its parents (explicitly: some file systems list only explicit directories)."""
    _gfile.makedirs(directory)


def listdir(directory: str) -> list[str]:
    """The entry names in ``directory`` (sorted; none when it does not exist)."""
    if not _gfile.isdir(directory):
        return []
    return sorted(name.rstrip("/") for name in _gfile.listdir(directory))


def remove(target: str) -> None:
    """Removes the file or directory tree ``target`` if it is there."""
    if _gfile.isdir(target):
        _gfile.rmtree(target)
    elif _gfile.exists(target):
        _gfile.remove(target)


def atomic_write_bytes(target: str, data: bytes) -> None:
    """Writes ``data`` to ``target`` via ``target.tmp`` and a rename (see the module's note on object stores)."""
    makedirs(os.path.dirname(target) or ".")
    tmp = f"{target}.tmp"
    with _gfile.GFile(tmp, "wb") as handle:
        handle.write(data)
    _gfile.rename(tmp, target, overwrite=True)


def atomic_write_text(target: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``target`` via a temporary file and a rename."""
    atomic_write_bytes(target, text.encode("utf-8"))


def read_text(target: str) -> Optional[str]:
    """The text in ``target``, or ``None`` when there is no such file."""
    if not _gfile.exists(target):
        return None
    with _gfile.GFile(target, "rb") as handle:
        return handle.read().decode("utf-8")


def read_json(target: str) -> Optional[Any]:
    """The JSON in ``target``, or ``None`` when there is no such file."""
    text = read_text(target)
    return None if text is None else json.loads(text)


@contextlib.contextmanager
def local_file(target: str, mode: str = "w") -> Iterator[str]:
    """A local path standing in for ``target``, for writers and readers that know only local files (h5py, zip).

    ``mode="w"``: yields a path to write; afterwards it is copied to
    ``target`` (atomically, as :func:`atomic_write_bytes`). ``mode="r"``:
    yields a local copy of ``target``. A local ``target`` is used as it is.
    """
    if mode not in ("r", "w"):
        raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
    if is_local(target):
        if mode == "w":
            makedirs(os.path.dirname(target) or ".")
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="tfimp-") as scratch:
        local = os.path.join(scratch, os.path.basename(target.rstrip("/")))
        if mode == "r":
            _gfile.copy(target, local, overwrite=True)
            yield local
            return
        yield local
        with open(local, "rb") as handle:
            atomic_write_bytes(target, handle.read())


def write_figure(figure, target: str) -> None:
    """Saves a matplotlib figure as PNG to ``target`` on any file system."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(target, buffer.getvalue())


def copy_tree(source: str, target: str) -> None:
    """Copies the directory tree ``source`` into ``target`` (files overwritten)."""
    makedirs(target)
    for name in listdir(source):
        here, there = os.path.join(source, name), os.path.join(target, name)
        if _gfile.isdir(here):
            copy_tree(here, there)
        else:
            _gfile.copy(here, there, overwrite=True)


@contextlib.contextmanager
def local_dir(target: str) -> Iterator[str]:
    """A local directory standing in for ``target``; its contents are copied there afterwards (if remote)."""
    if is_local(target):
        makedirs(target)
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="tfimp-") as scratch:
        yield scratch
        copy_tree(scratch, target)
