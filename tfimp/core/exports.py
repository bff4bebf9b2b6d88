"""What both front ends' exports share: the file record, sizes, tolerances and the size table.

Tolerances (max absolute difference of the outputs against the Keras model
on the checked batch): ``keras`` and ``savedmodel`` 1e-5; ``tflite`` (float,
with TensorFlow Lite's sparsity optimisation) and ``onnx`` 1e-4;
``tflite_dynamic`` (dynamic-range int8 weights) 5% of the output range.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from tfimp.core import results, storage, workdir

#: The tolerance of a quantised format: this fraction of the outputs' range.
QUANTISED_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format of a front end: one entry of its ``export.FORMATS`` registry.

    Attributes:
      write: ``(stripped model, directory, stem, scratch) -> path`` writes the
        model in this format under ``directory`` (``scratch``: a temporary
        directory for intermediate files) and returns the file or directory.
      tolerance: the largest output difference against the Keras model the
        check allows; ``None`` for a quantised format
        (:data:`QUANTISED_FRACTION` of the outputs' range).
      unavailable: ``backend -> reason`` why this process cannot write the
        format (``None`` when it can).
      default: written when no format is named.
    """

    write: Callable[..., str]
    tolerance: Optional[float]
    unavailable: Callable[[str], Optional[str]] = lambda backend: None
    default: bool = False


class ExportMismatchError(AssertionError):
    """An exported model's predictions or sparsity differ from the Keras model's."""


@dataclasses.dataclass
class ExportedFile:
    """One checked export: its file, sizes (raw and gzip) beside the dense reference's, and the check's figures."""

    format: str
    path: str
    bytes: int
    gzip_bytes: int
    dense_bytes: int
    dense_gzip_bytes: int
    max_abs_error: float
    tolerance: float
    sparsity: Optional[float]  # None where the format's weights cannot be read back


def parse_formats(formats, known: Sequence[str], key: str = "formats") -> list[str]:
    """``formats`` (a sequence, or a comma-separated string; "" = none) as a list, every name known.

    Raises:
      ValueError: an unknown format, named with the known ones.
    """
    names = [f for f in formats.split(",") if f] if isinstance(formats, str) else list(formats)
    unknown = [f for f in names if f not in known]
    if unknown:
        raise ValueError(f"{key} has unknown format(s) {unknown}; known: {list(known)} (comma-separated; \"\" for none)")
    return names


def check_exportable(model, formats: Sequence[str], known: Sequence[str], *, wrapped: bool,
                     sparsity: Callable[[], float]) -> float:
    """Fails on what no front end can export; returns the model's sparsity.

    Raises:
      ValueError: no format, an unbuilt, unwrapped or unpruned model (named).
    """
    if not formats:
        raise ValueError(f"no export format given; known: {list(known)}")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on a batch or build it before exporting")
    if not wrapped:
        raise ValueError(f"model {model.name!r} is not a pruned model: wrap it with tfimp.wrap and prune it first")
    measured = sparsity()
    if measured == 0.0:
        raise ValueError(f"model {model.name!r} is not pruned (sparsity 0); call tfimp.prune before exporting")
    return measured


def in_directory(files: Sequence[ExportedFile], local: str, directory: str) -> list[ExportedFile]:
    """``files`` written under the local staging directory ``local``, renamed to where they now are: ``directory``."""
    return [dataclasses.replace(f, path=os.path.join(directory, os.path.relpath(f.path, local))) for f in files]


def file_size(path: str) -> tuple[int, int]:
    """(raw, gzip-compressed) bytes of a file, or of a directory's files together."""
    files = [path] if os.path.isfile(path) else [os.path.join(root, name) for root, _, names in os.walk(path)
                                                 for name in sorted(names)]
    raw = sum(os.path.getsize(f) for f in files)
    compressed = 0
    for name in files:
        with open(name, "rb") as handle:
            compressed += len(gzip.compress(handle.read(), compresslevel=9))
    return raw, compressed


def tolerance(spec: ExportFormat, expected: np.ndarray) -> float:
    """The largest output difference an export in format ``spec`` may show (see the module docstring)."""
    return spec.tolerance if spec.tolerance is not None else QUANTISED_FRACTION * float(np.ptp(expected) or 1.0)


def checked_error(fmt: str, spec: ExportFormat, got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(max |got - expected|, tolerance) for an export in format ``fmt`` (its registry entry ``spec``).

    Raises:
      ExportMismatchError: the predictions differ by more than the tolerance.
    """
    error = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - np.asarray(expected, dtype=np.float64))))
    allowed = tolerance(spec, expected)
    if not error <= allowed:  # NaN fails too
        raise ExportMismatchError(f"{fmt} export's predictions differ by {error:.3g} > tolerance {allowed:.3g}")
    return error, allowed


def size_table(files: Sequence[ExportedFile]) -> str:
    """The exports' sizes, raw and gzip, against the dense reference's."""
    lines = [f"{'format':15s} {'bytes':>12s} {'gzip':>12s} {'dense bytes':>12s} {'dense gzip':>12s} "
             f"{'gzip gain':>9s} {'max |err|':>10s}"]
    for f in files:
        gain = f"{f.dense_gzip_bytes / f.gzip_bytes:.2f}x" if f.dense_gzip_bytes else "-"
        lines.append(f"{f.format:15s} {f.bytes:>12,d} {f.gzip_bytes:>12,d} {f.dense_bytes:>12,d} "
                     f"{f.dense_gzip_bytes:>12,d} {gain:>9s} {f.max_abs_error:>10.2g}")
    return "\n".join(lines)


def write_sizes(directory: str, files: Sequence[ExportedFile]) -> str:
    """Writes the CLI's ``export/sizes.txt`` (the table) and ``sizes.json`` (every field) into a workdir; returns
    the table."""
    table = size_table(files)
    storage.atomic_write_text(workdir.path(directory, workdir.EXPORT_SIZES_TXT), table + "\n")
    storage.atomic_write_text(workdir.path(directory, workdir.EXPORT_SIZES_JSON),
                              results.to_json([dataclasses.asdict(f) for f in files]))
    return table


def refill_pruned(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values`` with its zeros replaced by Gaussian values of the surviving weights' spread (the dense reference)."""
    values = np.array(values, copy=True)
    alive = values[values != 0]
    spread = float(alive.std()) if alive.size > 1 else 0.01
    values[values == 0] = rng.normal(0.0, spread or 0.01, size=int(np.sum(values == 0)))
    return values


def run_tflite(lite, path: str, x: np.ndarray) -> np.ndarray:
    """The outputs of the TFLite file at ``path`` on ``x``, with the interpreter of ``lite`` (``tf.lite``).

    The interpreter is resized to ``x``'s batch. The default XNNPack delegate
    cannot prepare sparse dynamic-range kernels; the built-in ops can.
    """
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: it is the one TF ships
        warnings.simplefilter("ignore")
        interpreter = lite.Interpreter(
            model_path=path,
            experimental_op_resolver_type=lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
