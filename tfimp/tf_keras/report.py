"""Model report: parameters, sparsity and FLOPs per layer, speed-up and compression.

Per prunable weight (every kind in ``tfimp.coverage``: convolutions, dense,
depthwise, embedding, attention and recurrent kernels): kernel shape, parameters, sparsity, and multiply-accumulates (MACs)
per example, dense and sparse. A convolution costs one MAC per kernel weight
per output position, so ``dense MACs = kernel size * output positions`` and
``sparse MACs = non-zero kernel weights * output positions`` (a Dense layer
has one output position per example, or one per step of a sequence).

Totals follow the paper's metrics: theoretical speed-up = dense MACs /
sparse MACs, and compression ratio = all parameters / non-zero parameters
(all trainable parameters; biases and BatchNorm count as dense).
Transposed convolutions are counted like convolutions (by output size),
which overstates their cost.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

import numpy as np

from tfimp.tf_keras import _private, wrapping
from tfimp.core import storage as _storage
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras._backend import keras, tf


@dataclasses.dataclass
class LayerReport:
    name: str
    kernel_shape: tuple
    parameters: int
    nonzero: int
    positions: int  # output positions per example
    dense_macs: int
    sparse_macs: int
    kind: str = "conv"  # see tfimp.coverage.KINDS
    masked: bool = True  # under a mask (wrapped), or a weight of a prunable kind left dense

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.parameters if self.parameters else 0.0


@dataclasses.dataclass
class ModelReport:
    layers: list
    total_parameters: int
    total_nonzero: int

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def sparse_macs(self) -> int:
        return sum(layer.sparse_macs for layer in self.layers)

    @property
    def speedup(self) -> float:
        """Theoretical speed-up: dense MACs / sparse MACs."""
        return self.dense_macs / self.sparse_macs if self.sparse_macs else float("inf")

    @property
    def prunable_parameters(self) -> int:
        """Parameters under masks (the weights tfimp prunes in this model)."""
        return sum(layer.parameters for layer in self.layers if layer.masked)

    @property
    def prunable_share(self) -> float:
        """Parameters under masks / all trainable parameters."""
        return self.prunable_parameters / self.total_parameters if self.total_parameters else 0.0

    @property
    def compression(self) -> float:
        """Compression ratio: all parameters / non-zero parameters."""
        return self.total_parameters / self.total_nonzero if self.total_nonzero else float("inf")

    def to_dict(self) -> dict:
        return {
            "layers": [{**dataclasses.asdict(layer), "sparsity": layer.sparsity} for layer in self.layers],
            "total_parameters": self.total_parameters, "total_nonzero": self.total_nonzero,
            "dense_macs": self.dense_macs, "sparse_macs": self.sparse_macs,
            "speedup": self.speedup, "compression": self.compression,
            "prunable_parameters": self.prunable_parameters, "prunable_share": self.prunable_share,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=list)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelReport":
        """The report :meth:`to_dict` wrote (derived fields are recomputed)."""
        fields = {f.name for f in dataclasses.fields(LayerReport)}
        layers = [LayerReport(**{k: (tuple(v) if k == "kernel_shape" else v) for k, v in layer.items() if k in fields})
                  for layer in values["layers"]]
        return cls(layers, values["total_parameters"], values["total_nonzero"])

    def table(self) -> str:
        """A fixed-width text table, one line per layer and a total line."""
        header = f"{'layer':28s} {'kernel':>18s} {'params':>10s} {'sparsity':>9s} {'dense MACs':>13s} {'sparse MACs':>13s}"
        lines = [header]
        for layer in self.layers:
            lines.append(f"{layer.name[:28]:28s} {'x'.join(map(str, layer.kernel_shape)):>18s} {layer.parameters:>10d} "
                         f"{layer.sparsity:>9.2%} {layer.dense_macs:>13,d} {layer.sparse_macs:>13,d}")
        lines.append(f"{'total (all parameters)':28s} {'':>18s} {self.total_parameters:>10d} "
                     f"{1 - self.total_nonzero / self.total_parameters:>9.2%} {self.dense_macs:>13,d} "
                     f"{self.sparse_macs:>13,d}")
        lines.append(f"theoretical speed-up {self.speedup:.2f}x, compression ratio {self.compression:.2f}x, "
                     f"prunable share {self.prunable_share:.1%} of the parameters")
        return "\n".join(lines)


def _output_positions(layer: keras.layers.Layer, traced: Optional[dict] = None) -> int:
    try:
        shape = layer.output_shape
    except AttributeError:  # called eagerly inside a subclassed model: no graph node records it
        shape = (traced or {}).get(id(layer))
        if shape is None:
            raise ValueError(f"layer {layer.name!r} has an unknown output size; call the model on a batch first")
    if isinstance(shape, list):
        shape = shape[0]
    inner = [int(d) for d in shape[1:-1] if d is not None]
    if len(inner) != len(shape) - 2:
        raise ValueError(f"layer {layer.name!r} has an unknown output size {shape}; build the model with a "
                         "fixed input shape to count FLOPs")
    return int(np.prod(inner)) if inner else 1


#: Kinds whose weights cost no multiply-accumulates (a table lookup).
_LOOKUP_KINDS = ("embedding",)
#: Kinds whose MACs are counted per known output position, 1 when the sequence length is unknown.
_SEQUENCE_KINDS = ("attention", "rnn")


def model_report(model: keras.Model) -> ModelReport:
    """Counts parameters, sparsity and MACs of every prunable weight of ``model`` (wrapped or not).

    Rows are the weights of the kinds tfimp prunes (``tfimp.coverage``),
    wrapped or not. Embedding tables cost no MACs; attention and recurrent
    kernels are counted once per output position (an RNN that returns only
    its last state counts one step: a lower bound).

    Raises:
      ValueError: the model is not built, or a convolution's output size is unknown.
    """
    wrapping.check_tf_keras_model(model)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on a batch or build it first")
    layers = []
    found = wrapping.covered_weights(model)
    outers = [weight.outer for weight in found if weight.kind not in _LOOKUP_KINDS]
    traced = None if all(_has_output_shape(outer) for outer in outers) else _trace_output_shapes(model, outers)
    for weight in found:
        if weight.kind in _LOOKUP_KINDS:
            positions = 0
        elif weight.kind in _SEQUENCE_KINDS:
            try:
                positions = _output_positions(weight.outer, traced)
            except ValueError:
                positions = 1
        else:
            positions = _output_positions(weight.outer, traced)
        values = weight.variable.numpy()
        nonzero = int(np.count_nonzero(values if weight.mask is None else values * (weight.mask.numpy() != 0)))
        layers.append(LayerReport(weight.name, tuple(int(d) for d in values.shape), int(values.size), nonzero,
                                  positions, int(values.size) * positions, nonzero * positions, weight.kind,
                                  weight.mask is not None))
    total = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    pruned = sum(layer.parameters - layer.nonzero for layer in layers)
    return ModelReport(layers, total, total - pruned)


def _has_output_shape(layer: keras.layers.Layer) -> bool:
    try:
        layer.output_shape
    except AttributeError:
        return False
    return True


def _trace_output_shapes(model: keras.Model, outer_layers: list) -> dict:
    """Output shapes of the kernel layers of a subclassed model, from one forward pass on zeros.

    The input shape is the one the model was first called with (Keras keeps
    it as the model's save spec); the batch is one example.
    """
    spec = _private.save_spec(model)
    if spec is None:
        raise ValueError(f"model {model.name!r} has not been called; call it on a batch first")
    spec = spec[0][0] if isinstance(spec, tuple) else spec
    if isinstance(spec, (list, tuple)):
        spec = spec[0]
    shapes: dict = {}
    outers = {id(outer): outer for outer in outer_layers}
    originals = {}
    for key, outer in outers.items():
        original = outer.call

        def recording(*args, _original=original, _key=key, **kwargs):
            output = _original(*args, **kwargs)
            shapes[_key] = tuple(output.shape)
            return output

        originals[key] = original
        object.__setattr__(outer, "call", recording)
    try:
        model(np.zeros((1, *spec.shape[1:]), dtype=spec.dtype.as_numpy_dtype), training=False)
    finally:
        for key, outer in outers.items():
            object.__delattr__(outer, "call")  # back to the class's method
    return shapes


def print_report(model: keras.Model, path: Optional[str] = None) -> ModelReport:
    """Prints :func:`model_report`'s table and, with ``path``, writes its JSON there."""
    report = model_report(model)
    print(report.table(), flush=True)
    if path:
        _storage.atomic_write_text(path, report.to_json())
    return report


class CycleReporter:
    """A ``cycle_end_hooks`` entry: after each cycle, the model report and TensorBoard scalars.

    Prints the report table (with ``verbose``) and logs per-cycle scalars
    (sparsity, learning rate, test or validation accuracy, theoretical
    speed-up) and each layer's sparsity to ``tensorboard/cycles`` in
    ``workdir``, step = cycle. (The runners write the report itself into
    ``cycle_N/report.json``.)
    """

    def __init__(self, workdir: str, verbose: int = 1):
        self.workdir = workdir
        self.verbose = verbose
        self._writer = None  # made at the first cycle, after the run has claimed the workdir

    def __call__(self, model: keras.Model, row: dict) -> None:
        cycle = int(row["cycle"])
        out = _workdir.write_dir(self.workdir, model.distribute_strategy)  # multi-worker: the chief's is the workdir
        report = self._saved_report(out, cycle) or model_report(model)
        if self.verbose:
            print(f"\n[tfimp] model after cycle {cycle}:\n{report.table()}", flush=True)  # below the progress bar
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(_workdir.path(out, _workdir.TENSORBOARD_CYCLES))
        accuracy = row.get("test_accuracy") if row.get("test_accuracy") is not None else row.get("val_accuracy")
        # Inside fit, Keras' TensorBoard callback makes summaries conditional on its own step counter;
        # these are per cycle and must always be written.
        with self._writer.as_default(step=cycle), tf.summary.record_if(True):
            tf.summary.scalar("cycle/sparsity", row["sparsity"])
            if row.get("initial_lr") is not None:
                tf.summary.scalar("cycle/learning_rate", row["initial_lr"])
            if accuracy is not None:
                tf.summary.scalar("cycle/accuracy", accuracy)
            tf.summary.scalar("cycle/theoretical_speedup", report.speedup)
            for layer in report.layers:
                tf.summary.scalar(f"layer_sparsity/{layer.name}", layer.sparsity)
        self._writer.flush()

    @staticmethod
    def _saved_report(directory: str, cycle: int) -> Optional[ModelReport]:
        """The report the runner has just written into ``cycle_N/`` (computing it twice costs a trace)."""
        saved = _storage.read_json(_workdir.path(_workdir.cycle_dir(directory, cycle), _workdir.CYCLE_REPORT))
        return None if saved is None else ModelReport.from_dict(saved)
