"""What both front ends' exports share: the file record, sizes, tolerances, accuracies and the size table.

Tolerances (max absolute difference of the outputs against the Keras model
on the checked batch): ``keras`` and ``savedmodel`` 1e-5; ``tflite`` (float,
with TensorFlow Lite's sparsity optimisation) and ``onnx`` 1e-4;
``tflite_dynamic`` (dynamic-range int8 weights) 5% of the output range;
``tflite_int8`` (full-integer: int8 weights and activations) 25% of it, a
check that catches a broken file, not an accuracy drop: its test accuracy
beside the float model's says what the quantisation costs.

``tflite_int8`` also has its zeros read back: every weight the model holds
at zero must be an int8 zero of the file (:func:`check_zeros_kept`).

Given test data, every export also records its own test accuracy, run
through its own runtime, beside the float Keras model's on the same
examples (:func:`accuracy`).
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import math
import os
import warnings
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from tfimp.core import results, storage, workdir
from tfimp.core.registry import Registry

#: The tolerance of a quantised format: this fraction of the outputs' range.
QUANTISED_FRACTION = 0.05
#: The tolerance of a full-integer format, whose every activation is rounded to int8 too: 8% of the output
#: range was measured on the CLI's default job (Fashion-MNIST, 90% sparse), 11% on a model trained for two
#: epochs on 256 examples.
FULL_INTEGER_FRACTION = 0.25
#: Examples that calibrate a full-integer format's activation ranges (TFLite's representative dataset, one
#: example a batch), as TensorFlow's integer-quantisation guide draws them.
REPRESENTATIVE_EXAMPLES = 100
#: The most input bytes the CLI evaluates each export on: the whole test set of MNIST, Fashion-MNIST and
#: CIFAR (10,000 examples, 31 MB to 123 MB of float32); ImageNet's first ~445 224x224 images.
EVALUATION_BYTES = 256 * 2**20
#: Examples per call when an export runs on a test set.
EVALUATION_BATCH = 500


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format of a front end: one entry of its ``export.FORMATS`` registry.

    Attributes:
      write: ``(stripped model, directory, stem, scratch) -> path`` writes the
        model in this format under ``directory`` (``scratch``: a temporary
        directory for intermediate files) and returns the file or directory.
      tolerance: the largest output difference against the Keras model the
        check allows; ``None`` for a quantised format (``range_fraction`` of
        the outputs' range).
      unavailable: ``backend -> reason`` why this process cannot write the
        format (``None`` when it can).
      default: written when no format is named.
      representative: the writer calibrates on model inputs from the
        training data: it is called with ``representative_data=`` too
        (:func:`write`), and an export without them is refused.
      range_fraction: a quantised format's tolerance as a fraction of the
        outputs' range (:data:`QUANTISED_FRACTION`, or
        :data:`FULL_INTEGER_FRACTION` for int8 activations).
    """

    write: Callable[..., str]
    tolerance: Optional[float]
    unavailable: Callable[[str], Optional[str]] = lambda backend: None
    default: bool = False
    representative: bool = False
    range_fraction: float = QUANTISED_FRACTION


class ExportMismatchError(AssertionError):
    """An exported model's predictions or sparsity differ from the Keras model's."""


@dataclasses.dataclass
class ExportedFile:
    """One checked export: its file, sizes (raw and gzip) beside the dense reference's, and the check's figures.

    ``test_accuracy`` is the file's own, run through its runtime on
    ``test_examples`` test examples; ``float_accuracy`` the float Keras
    model's on the same examples (both None without test data).
    """

    format: str
    path: str
    bytes: int
    gzip_bytes: int
    dense_bytes: int
    dense_gzip_bytes: int
    max_abs_error: float
    tolerance: float
    sparsity: Optional[float]  # None where the format's weights cannot be read back
    test_accuracy: Optional[float] = None
    float_accuracy: Optional[float] = None
    test_examples: int = 0
    parameters: Optional[int] = None  # the slimmed model's (:data:`SLIM_FORMAT`), and the model's before it
    dense_parameters: Optional[int] = None


#: The format of the slimmed model's row (``export/model_slim.keras``, a ``structure="channels"`` run's).
SLIM_FORMAT = "keras_slim"
#: Its tolerance: the largest output difference ``tfimp.slim`` accepts, relative to the outputs' largest magnitude.
SLIM_TOLERANCE = 1e-4


def slim_row(path: str, local: str, parameters: int, dense_parameters: int, expected: np.ndarray,
             got: np.ndarray, files: Sequence[ExportedFile]) -> ExportedFile:
    """The slimmed model's row of ``export/sizes.json``: its file ``path`` (written at ``local``), parameters and
    size beside the model's before slimming (the ``keras`` export's size, where there is one).

    Raises:
      ExportMismatchError: its outputs on the check batch (``got``) differ from the pruned model's (``expected``)
        by more than :data:`SLIM_TOLERANCE` of their largest magnitude.
    """
    expected, got = np.asarray(expected, dtype=np.float64), np.asarray(got, dtype=np.float64)
    error = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    allowed = SLIM_TOLERANCE * max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    if error > allowed:
        raise ExportMismatchError(f"the slimmed model {path} differs from the pruned model by {error:.3g} "
                                  f"(> {allowed:.3g}) on the check batch")
    raw, compressed = file_size(local)
    keras_file = next((f for f in files if f.format == "keras"), None)
    return ExportedFile(SLIM_FORMAT, path, raw, compressed, keras_file.bytes if keras_file else 0,
                        keras_file.gzip_bytes if keras_file else 0, error, allowed, None,
                        parameters=parameters, dense_parameters=dense_parameters)


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


def check_exportable(model, formats: Sequence[str], known: Registry[ExportFormat], *, wrapped: bool,
                     sparsity: Callable[[], float], representative_data: Optional[np.ndarray] = None) -> float:
    """Fails on what no front end can export; returns the model's sparsity.

    Args:
      known: the front end's ``FORMATS`` registry.

    Raises:
      ValueError: no format; a format that calibrates (``tflite_int8``) without
        ``representative_data``; an unbuilt, unwrapped or unpruned model (named).
    """
    if not formats:
        raise ValueError(f"no export format given; known: {list(known)}")
    calibrated = [fmt for fmt in formats if known.get(fmt).representative]
    if calibrated and (representative_data is None or len(representative_data) == 0):
        raise ValueError(f"format(s) {calibrated} calibrate on training inputs: pass representative_data= (an array "
                         f"of about {REPRESENTATIVE_EXAMPLES} inputs from the training data) to export")
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


def write(spec: ExportFormat, model, directory: str, stem: str, scratch: str,
          representative_data: Optional[np.ndarray] = None) -> str:
    """Writes ``model`` in the format of ``spec`` (see :class:`ExportFormat`); returns the file or directory."""
    if spec.representative:
        return spec.write(model, directory, stem, scratch, representative_data=representative_data)
    return spec.write(model, directory, stem, scratch)


def representative_dataset(inputs, count: int = REPRESENTATIVE_EXAMPLES) -> Callable:
    """TFLite's ``representative_dataset``: yields the first ``count`` of ``inputs``, each a float32 batch of one."""
    chosen = np.asarray(inputs, dtype="float32")[:count]
    return lambda: ([chosen[i:i + 1]] for i in range(len(chosen)))


def full_integer(lite, converter, representative_data: np.ndarray) -> bytes:
    """A TFLite ``converter``'s model (``lite``: ``tf.lite``) with full-integer quantisation.

    Weights (per channel, symmetric: a zero stays 0) and activations become
    int8, the activation ranges calibrated on :data:`REPRESENTATIVE_EXAMPLES`
    of ``representative_data``; only int8 builtin ops are allowed (conversion
    fails rather than leave a float op). Inputs and outputs stay float32 (a
    quantize and a dequantize op at the ends): the file takes what the float
    ``.tflite`` takes. Weights are stored dense, without TFLite's sparse
    encoding, whose Densify op int8 runtimes may lack (TFLite Micro's op
    resolver has none): the zeros cost a byte each and compress (the gzip
    column).
    """
    converter.optimizations = [lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(representative_data)
    converter.target_spec.supported_ops = [lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():  # about statistics for int8 inputs: these inputs stay float32
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def tolerance(spec: ExportFormat, expected: np.ndarray) -> float:
    """The largest output difference an export in format ``spec`` may show (see the module docstring)."""
    return spec.tolerance if spec.tolerance is not None else spec.range_fraction * float(np.ptp(expected) or 1.0)


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
    """The exports' sizes, raw and gzip, against the dense reference's; each file's test accuracy and the float
    model's, where measured."""
    lines = [f"{'format':15s} {'bytes':>12s} {'gzip':>12s} {'dense bytes':>12s} {'dense gzip':>12s} "
             f"{'gzip gain':>9s} {'max |err|':>10s} {'test acc':>9s} {'float acc':>9s}"]
    for f in files:
        gain = f"{f.dense_gzip_bytes / f.gzip_bytes:.2f}x" if f.dense_gzip_bytes else "-"
        accuracies = [f"{a:.4f}" if a is not None else "-" for a in (f.test_accuracy, f.float_accuracy)]
        lines.append(f"{f.format:15s} {f.bytes:>12,d} {f.gzip_bytes:>12,d} {f.dense_bytes:>12,d} "
                     f"{f.dense_gzip_bytes:>12,d} {gain:>9s} {f.max_abs_error:>10.2g} {accuracies[0]:>9s} "
                     f"{accuracies[1]:>9s}")
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


def _interpreter(lite, path: str):
    # The default XNNPack delegate cannot prepare sparse dynamic-range kernels; the built-in ops can.
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: it is the one TF ships
        warnings.simplefilter("ignore")
        return lite.Interpreter(
            model_path=path,
            experimental_op_resolver_type=lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def tflite_runner(lite, path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> outputs`` of the TFLite file at ``path``, in one interpreter of ``lite`` (``tf.lite``) resized
    whenever the batch's shape changes (one interpreter for a whole test set, batch by batch)."""
    interpreter = _interpreter(lite, path)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]["index"]
    allocated = []

    def run(x: np.ndarray) -> np.ndarray:
        if allocated != [x.shape]:
            interpreter.resize_tensor_input(source["index"], x.shape)
            interpreter.allocate_tensors()
            allocated[:] = [x.shape]
        interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
        interpreter.invoke()
        return np.array(interpreter.get_tensor(target))

    return run


def run_tflite(lite, path: str, x: np.ndarray) -> np.ndarray:
    """The outputs of the TFLite file at ``path`` on ``x``, with the interpreter of ``lite`` (``tf.lite``), resized
    to ``x``'s batch."""
    return tflite_runner(lite, path)(x)


def tflite_weight_zeros(lite, path: str) -> list[tuple[str, np.ndarray]]:
    """Where each int8 weight tensor of the TFLite file at ``path`` is zero: ``(name, boolean array)`` in file order.

    Read with the interpreter of ``lite`` (``tf.lite``): a weight is an int8
    tensor whose shape does not follow the input's batch (activations' does:
    the file's shapes are compared with those after a run at another batch
    size); an element is zero where its stored integer is its channel's zero
    point (it dequantises to exactly 0.0).
    """
    interpreter = _interpreter(lite, path)
    interpreter.allocate_tensors()
    first = {d["index"]: tuple(d["shape"]) for d in interpreter.get_tensor_details()}
    source = interpreter.get_input_details()[0]
    batch = (int(source["shape"][0]) + 1, *source["shape"][1:])
    interpreter.resize_tensor_input(source["index"], batch)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], np.zeros(batch, source["dtype"]))
    interpreter.invoke()  # shapes computed at run time (a Keras 3 Flatten's) follow the batch only now
    found = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.int8 or tuple(detail["shape"]) != first.get(detail["index"]) or not len(detail["shape"]):
            continue  # not int8, an activation, a scalar, or a scratch tensor the run added
        values = interpreter.get_tensor(detail["index"])
        points = np.asarray(detail["quantization_parameters"]["zero_points"])
        if points.size > 1:  # one zero point per channel along the quantised dimension
            shape = [1] * values.ndim
            shape[int(detail["quantization_parameters"]["quantized_dimension"])] = points.size
            points = points.reshape(shape)
        found.append((detail["name"], values == (points if points.size else 0)))
    return found


def _layouts(zeros: np.ndarray, shape: Sequence[int]):
    """``zeros`` (a Keras kernel's) in each layout TFLite may store the kernel in as an array of ``shape``.

    Unit axes dropped, then the axes permuted (Dense's (in, out) is stored
    (out, in), Conv2D's (h, w, in, out) as (out, h, w, in)) or the whole
    reshaped (a depthwise kernel's (h, w, in, multiplier) as (1, h, w, in * multiplier)).
    """
    target = tuple(n for n in shape if n != 1)
    squeezed = zeros.reshape([n for n in zeros.shape if n != 1])
    for order in itertools.permutations(range(squeezed.ndim)):
        if tuple(squeezed.shape[axis] for axis in order) == target:
            yield squeezed.transpose(order)
    if squeezed.size == math.prod(target):
        yield squeezed.reshape(target)


def check_zeros_kept(fmt: str, kernels: Sequence[tuple[str, np.ndarray]],
                     stored: Sequence[tuple[str, np.ndarray]]) -> tuple[int, int]:
    """Checks that every zero of each Keras kernel is a zero of the quantised file; returns (the file's zeros in
    those kernels, their size).

    Args:
      fmt: the format, for the error.
      kernels: ``(name, values)`` of the float model's pruned kernels.
      stored: ``(name, zero mask)`` of the file's weight tensors (:func:`tflite_weight_zeros`).

    Each kernel, those with the most zeros first, is matched to a stored
    tensor not matched before, in one of the layouts TFLite stores it in, that
    is zero wherever the kernel is. A surviving weight under half its
    channel's quantisation step also rounds to zero: the file may hold more
    zeros than the model, never fewer.

    Raises:
      ExportMismatchError: a kernel whose zeros no stored tensor keeps (named).
    """
    free = list(range(len(stored)))
    file_zeros = total = 0
    for name, zeros in sorted(((name, np.asarray(values) == 0) for name, values in kernels),
                              key=lambda kernel: -int(kernel[1].sum())):  # a kernel without zeros fits any tensor
        match = next(((index, mask) for index in free for mask in [stored[index][1]] if mask.size == zeros.size
                      for layout in _layouts(zeros, mask.shape)
                      if not np.any(layout & ~mask.reshape(layout.shape))), None)
        if match is None:
            raise ExportMismatchError(f"{fmt} export lost pruned weights: no int8 weight tensor of the file is zero "
                                      f"wherever kernel {name!r} {tuple(zeros.shape)} is ({int(zeros.sum())} zeros)")
        free.remove(match[0])
        file_zeros += int(match[1].sum())
        total += zeros.size
    return file_zeros, total


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of examples whose largest output is their label (class indices, or one-hot rows).

    Raises:
      ValueError: outputs that are not one score per class (shape named).
    """
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise ValueError(f"accuracy needs one output per class, shape (examples, classes >= 2); got {outputs.shape}")
    if labels.ndim == 2 and labels.shape[1] == outputs.shape[1]:
        labels = labels.argmax(axis=1)
    return float(np.mean(outputs.argmax(axis=1) == labels.reshape(len(outputs))))


def in_batches(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
               batch_size: int = EVALUATION_BATCH) -> np.ndarray:
    """``predict`` run on ``x`` ``batch_size`` examples at a time, the outputs concatenated (numpy)."""
    return np.concatenate([np.asarray(predict(x[start:start + batch_size]))
                           for start in range(0, len(x), batch_size)])


def take_examples(batches: Iterable, limit: Optional[int] = None,
                  max_bytes: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """The first examples of ``(x, y)`` batches as two numpy arrays: at most ``limit`` examples and ``max_bytes``
    of inputs (at least one example)."""
    xs, ys, count, size = [], [], 0, 0
    for x, y in batches:
        x, y = np.asarray(x), np.asarray(y)
        room = len(x) if limit is None else min(len(x), limit - count)
        if max_bytes is not None and x.size:
            room = min(room, max(0 if count else 1, (max_bytes - size) // (x.nbytes // len(x))))
        xs.append(x[:room])
        ys.append(y[:room])
        count, size = count + room, size + x[:room].nbytes
        if room < len(x) or (limit is not None and count >= limit):
            break
    if not xs:
        raise ValueError("no examples: the batches were empty")
    return np.concatenate(xs), np.concatenate(ys)
