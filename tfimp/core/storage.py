"""Files on local disks and on any file system TensorFlow has (``gs://``, ``hdfs://``, ``ram://``).

Every file tfimp writes or reads (the workdir, exports, plots) goes through
these functions. Local paths use Python's own file functions, so the Keras 3
front end needs no TensorFlow; a ``scheme://`` path goes through
``tf.io.gfile``, imported only then. What each guarantees:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` write ``name.tmp``
  and rename it: atomic on local disks; on object stores a rename is a copy
  and a delete, and readers see the old or the new object, never a part.
* Directories are never renamed (object stores cannot do that atomically);
  a unit of several files is made whole by writing a marker file last
  (see :mod:`tfimp.tf_keras.checkpoint`).
* :func:`local_file` and :func:`local_dir` stand in a local path for
  writers that only know local files (h5py, zip, the TFLite converter's
  bytes are fine already) and copy the result over.
* Directories are created explicitly (:func:`makedirs`): some file systems
  (``ram://``) list only directories that were made.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator, Optional, Sequence


def is_local(target: str) -> bool:
    """Whether ``target`` is on the local file system (no ``scheme://``)."""
    return "://" not in target or target.startswith("file://")


class _LocalFiles:
    """The part of ``tf.io.gfile``'s interface tfimp uses, for local paths, with Python's own functions."""

    @staticmethod
    def _plain(target: str) -> str:
        return target[len("file://"):] if target.startswith("file://") else target

    def exists(self, target: str) -> bool:
        return os.path.exists(self._plain(target))

    def isdir(self, target: str) -> bool:
        return os.path.isdir(self._plain(target))

    def makedirs(self, directory: str) -> None:
        os.makedirs(self._plain(directory), exist_ok=True)

    def listdir(self, directory: str) -> list[str]:
        return os.listdir(self._plain(directory))

    def rmtree(self, target: str) -> None:
        shutil.rmtree(self._plain(target))

    def remove(self, target: str) -> None:
        os.remove(self._plain(target))

    def GFile(self, target: str, mode: str):  # noqa: N802  (gfile's name)
        return open(self._plain(target), mode)

    def rename(self, source: str, target: str, overwrite: bool = False) -> None:
        if not overwrite and self.exists(target):
            raise FileExistsError(target)
        os.replace(self._plain(source), self._plain(target))

    def copy(self, source: str, target: str, overwrite: bool = False) -> None:
        if not overwrite and self.exists(target):
            raise FileExistsError(target)
        shutil.copyfile(self._plain(source), self._plain(target))


_LOCAL = _LocalFiles()


def _files(*targets: str):
    """Python's file functions when every one of ``targets`` is local, else ``tf.io.gfile``."""
    if all(is_local(target) for target in targets):
        return _LOCAL
    try:
        import tensorflow as tf
    except ImportError:
        raise OSError(f"{targets!r} is on a file system that needs TensorFlow's tf.io.gfile, and TensorFlow is not "
                      "installed; use a local path, or install tensorflow") from None
    return tf.io.gfile


def read_errors() -> tuple[type, ...]:
    """What reading a broken or half-written file may raise: OSError, ValueError and, with TensorFlow, its OpError."""
    tf = sys.modules.get("tensorflow")
    return (OSError, ValueError) + ((tf.errors.OpError,) if tf is not None and hasattr(tf, "errors") else ())


def exists(target: str) -> bool:
    return _files(target).exists(target)


def makedirs(directory: str) -> None:
    """Creates ``directory`` and its parents (explicitly: some file systems list only explicit directories)."""
    _files(directory).makedirs(directory)


def listdir(directory: str) -> list[str]:
    """The entry names in ``directory`` (sorted; none when it does not exist)."""
    files = _files(directory)
    if not files.isdir(directory):
        return []
    return sorted(name.rstrip("/") for name in files.listdir(directory))


def remove(target: str) -> None:
    """Removes the file or directory tree ``target`` if it is there."""
    files = _files(target)
    if files.isdir(target):
        files.rmtree(target)
    elif files.exists(target):
        files.remove(target)


def atomic_write_bytes(target: str, data: bytes) -> None:
    """Writes ``data`` to ``target`` via ``target.tmp`` and a rename (see the module's note on object stores)."""
    makedirs(os.path.dirname(target) or ".")
    tmp = f"{target}.tmp"
    files = _files(target)
    with files.GFile(tmp, "wb") as handle:
        handle.write(data)
    files.rename(tmp, target, overwrite=True)


def atomic_write_text(target: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``target`` via a temporary file and a rename."""
    atomic_write_bytes(target, text.encode("utf-8"))


class DamagedFile(ValueError):
    """A file a run reads back is damaged (cut short, changed, not what tfimp wrote); the message names it."""


def damaged(target: str, why: str) -> DamagedFile:
    """The error for a damaged ``target``, saying what to do about it."""
    return DamagedFile(f"{target} is damaged ({why}); tfimp writes every file whole, so something else changed or "
                       "cut it: restore it, or start the run again with overwrite=True (CLI: --overwrite)")


def read_bytes(target: str) -> Optional[bytes]:
    """The bytes in ``target``, or ``None`` when there is no such file."""
    files = _files(target)
    if not files.exists(target):
        return None
    with files.GFile(target, "rb") as handle:
        return handle.read()


def read_text(target: str) -> Optional[str]:
    """The text in ``target``, or ``None`` when there is no such file.

    Raises:
      DamagedFile: the file is not UTF-8 text.
    """
    data = read_bytes(target)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise damaged(target, f"not UTF-8 text: {error}") from None


def read_json(target: str) -> Optional[Any]:
    """The JSON in ``target``, or ``None`` when there is no such file.

    Raises:
      DamagedFile: the file holds no valid JSON (a truncated or changed file); the message names it.
    """
    text = read_text(target)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise damaged(target, f"not valid JSON: {error}") from None


def file_digests(directory: str, skip: Sequence[str] = ()) -> dict[str, str]:
    """``relative path -> sha256`` of every file below ``directory`` (but the names in ``skip``), sorted."""
    digests: dict[str, str] = {}
    for name in listdir(directory):
        here = os.path.join(directory, name)
        if name in skip:
            continue
        if _files(here).isdir(here):
            digests.update({f"{name}/{inner}": digest for inner, digest in file_digests(here).items()})
        else:
            digests[name] = hashlib.sha256(read_bytes(here) or b"").hexdigest()
    return dict(sorted(digests.items()))


def check_digests(directory: str, recorded: dict[str, str]) -> Optional[str]:
    """Why ``directory`` no longer holds the files ``recorded`` (:func:`file_digests`), or ``None`` when it does."""
    for name, digest in recorded.items():
        data = read_bytes(os.path.join(directory, name))
        if data is None:
            return f"{name} is missing"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"{name} is not the file that was written ({len(data)} bytes, other contents)"
    return None


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
            _files(target, local).copy(target, local, overwrite=True)
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
        if _files(here).isdir(here):
            copy_tree(here, there)
        else:
            _files(here, there).copy(here, there, overwrite=True)


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
