"""The model report: parameters, sparsity and FLOPs per prunable weight, speed-up and compression; framework-free.

Per prunable weight (every kind tfimp prunes: convolutions, dense,
depthwise, embedding, attention and recurrent kernels): kernel shape,
parameters, sparsity, and multiply-accumulates (MACs) per example, dense and
sparse. A convolution costs one MAC per kernel weight per output position,
so ``dense MACs = kernel size * output positions`` and ``sparse MACs =
non-zero kernel weights * output positions`` (a Dense layer has one output
position per example, or one per step of a sequence).

Totals follow the paper's metrics: theoretical speed-up = dense MACs /
sparse MACs, and compression ratio = all parameters / non-zero parameters
(all trainable parameters; biases and BatchNorm count as dense). Transposed
convolutions are counted like convolutions (by output size), which
overstates their cost.

Each front end counts its model (``tfimp.report.model_report``: the output
positions need the framework) into :func:`build`; :class:`CycleReporter`
prints the report after each cycle and logs TensorBoard scalars.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Iterable, Mapping, Optional

import numpy as np

from tfimp.core import storage as _storage
from tfimp.core import structures as _structures
from tfimp.core import workdir as _workdir


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
    units: Optional[int] = None  # with a structure: the kernel's units (blocks; weights for N:M)
    pruned_units: Optional[int] = None  # ... and how many of them are pruned, counted as the structure counts

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.parameters if self.parameters else 0.0

    @property
    def unit_sparsity(self) -> Optional[float]:
        """The sparsity in the report's structure's unit (``None`` without a structure)."""
        if self.units is None:
            return None
        return self.pruned_units / self.units if self.units else 0.0


@dataclasses.dataclass
class ModelReport:
    layers: list
    total_parameters: int
    total_nonzero: int
    structure: str = "unstructured"  # the structure the layers' units are counted in (tfimp.core.structures)

    @property
    def unit_sparsity(self) -> Optional[float]:
        """Over the masked layers, the sparsity in the structure's unit (``None`` for ``unstructured``)."""
        counted = [layer for layer in self.layers if layer.masked and layer.units is not None]
        if not counted:
            return None
        units = sum(layer.units for layer in counted)
        return sum(layer.pruned_units for layer in counted) / units if units else 0.0

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
        values = {
            "layers": [_layer_dict(layer) for layer in self.layers],
            "total_parameters": self.total_parameters, "total_nonzero": self.total_nonzero,
            "dense_macs": self.dense_macs, "sparse_macs": self.sparse_macs,
            "speedup": self.speedup, "compression": self.compression,
            "prunable_parameters": self.prunable_parameters, "prunable_share": self.prunable_share,
        }
        if self.structure != "unstructured":  # an unstructured report keeps the keys it always had
            values.update(structure=self.structure, unit_sparsity=self.unit_sparsity)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=list)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelReport":
        """The report :meth:`to_dict` wrote (derived fields are recomputed)."""
        fields = {f.name for f in dataclasses.fields(LayerReport)}
        layers = [LayerReport(**{k: (tuple(v) if k == "kernel_shape" else v) for k, v in layer.items() if k in fields})
                  for layer in values["layers"]]
        return cls(layers, values["total_parameters"], values["total_nonzero"],
                   values.get("structure", "unstructured"))

    def table(self) -> str:
        """A fixed-width text table, one line per layer and a total line (with a structure: a column in its unit)."""
        structured = self.structure != "unstructured"
        in_unit = f" {self.structure[:12]:>12s}" if structured else ""
        header = (f"{'layer':28s} {'kernel':>18s} {'params':>10s} {'sparsity':>9s}{in_unit} {'dense MACs':>13s} "
                  f"{'sparse MACs':>13s}")
        lines = [header]
        for layer in self.layers:
            unit = layer.unit_sparsity
            cell = (f" {'-':>12s}" if unit is None else f" {unit:>12.2%}") if structured else ""
            lines.append(f"{layer.name[:28]:28s} {'x'.join(map(str, layer.kernel_shape)):>18s} {layer.parameters:>10d} "
                         f"{layer.sparsity:>9.2%}{cell} {layer.dense_macs:>13,d} {layer.sparse_macs:>13,d}")
        total_unit = f" {self.unit_sparsity or 0.0:>12.2%}" if structured else ""
        lines.append(f"{'total (all parameters)':28s} {'':>18s} {self.total_parameters:>10d} "
                     f"{1 - self.total_nonzero / self.total_parameters:>9.2%}{total_unit} {self.dense_macs:>13,d} "
                     f"{self.sparse_macs:>13,d}")
        lines.append(f"theoretical speed-up {self.speedup:.2f}x, compression ratio {self.compression:.2f}x, "
                     f"prunable share {self.prunable_share:.1%} of the parameters")
        if structured:
            lines.append(f"the {self.structure} column counts sparsity in that structure's unit, over the masked "
                         "kernels (tfimp.structures)")
        return "\n".join(lines)


#: Kinds whose weights cost no multiply-accumulates (a table lookup).
LOOKUP_KINDS = ("embedding",)
#: Kinds whose MACs are counted per known output position, 1 when the sequence length is unknown.
SEQUENCE_KINDS = ("attention", "rnn")


@dataclasses.dataclass
class CountedWeight:
    """What the report needs of one prunable weight: the front end reads it from its model."""

    name: str
    kind: str
    values: np.ndarray
    mask: Optional[np.ndarray]  # None for a weight of a prunable kind left unwrapped
    output_positions: Callable[[], int]  # raises ValueError when the layer's output size is unknown


def _layer_dict(layer: LayerReport) -> dict:
    values = {**dataclasses.asdict(layer), "sparsity": layer.sparsity}
    if layer.units is None:  # no structure: the keys an unstructured report always had
        del values["units"], values["pruned_units"]
    else:
        values["unit_sparsity"] = layer.unit_sparsity
    return values


def build(weights: Iterable[CountedWeight], total_parameters: int, structure: str = "unstructured",
          channel_counts: Optional[Mapping[str, tuple[int, int]]] = None) -> ModelReport:
    """The report of a model whose prunable weights are ``weights`` (in model order).

    Embedding tables cost no MACs; attention and recurrent kernels are
    counted once per output position (an RNN that returns only its last
    state counts one step: a lower bound). With a ``structure``
    (:mod:`tfimp.core.structures`), each layer also counts its units and
    how many of them are pruned. Under ``channels`` a layer's units are its
    weights and its pruned units those the slimmed model no longer has:
    ``channel_counts`` (name -> (removed, weights), from the model's graph)
    where given, else the weights of its pruned filters (``Channels.count``).

    Raises:
      ValueError: a convolution's output size is unknown.
    """
    form = _structures.get(structure)
    layers = []
    for weight in weights:
        if weight.kind in LOOKUP_KINDS:
            positions = 0
        elif weight.kind in SEQUENCE_KINDS:
            try:
                positions = weight.output_positions()
            except ValueError:
                positions = 1
        else:
            positions = weight.output_positions()
        values = weight.values
        alive = values if weight.mask is None else values * (weight.mask != 0)
        nonzero = int(np.count_nonzero(alive))
        if channel_counts is not None and weight.name in channel_counts:
            pruned_units, units = channel_counts[weight.name]
        else:
            pruned_units, units = form.count(alive) if form.structured else (None, None)
        layers.append(LayerReport(weight.name, tuple(int(d) for d in values.shape), int(values.size), nonzero,
                                  positions, int(values.size) * positions, nonzero * positions, weight.kind,
                                  weight.mask is not None, units, pruned_units))
    pruned = sum(layer.parameters - layer.nonzero for layer in layers)
    return ModelReport(layers, int(total_parameters), int(total_parameters) - pruned, form.name)


def positions_of(shape, layer_name: str) -> int:
    """Output positions per example of an output ``shape`` (batch first, channels last)."""
    if isinstance(shape, list):
        shape = shape[0]
    inner = [int(d) for d in shape[1:-1] if d is not None]
    if len(inner) != len(shape) - 2:
        raise ValueError(f"layer {layer_name!r} has an unknown output size {tuple(shape)}; build the model with a "
                         "fixed input shape to count FLOPs")
    return int(np.prod(inner)) if inner else 1


def cycle_scalars(row: dict, report: ModelReport) -> dict[str, float]:
    """The TensorBoard scalars of one finished cycle (step = cycle)."""
    accuracy = row.get("test_accuracy") if row.get("test_accuracy") is not None else row.get("val_accuracy")
    scalars = {"cycle/sparsity": row["sparsity"]}
    if row.get("initial_lr") is not None:
        scalars["cycle/learning_rate"] = row["initial_lr"]
    if accuracy is not None:
        scalars["cycle/accuracy"] = accuracy
    scalars["cycle/theoretical_speedup"] = report.speedup
    if report.unit_sparsity is not None:
        scalars["cycle/unit_sparsity"] = report.unit_sparsity
    scalars.update({f"layer_sparsity/{layer.name}": layer.sparsity for layer in report.layers})
    return scalars


class CycleReporter:
    """A ``cycle_end_hooks`` entry: after each cycle, the model report and TensorBoard scalars.

    Prints the report table (with ``verbose``) and logs per-cycle scalars
    (sparsity, learning rate, test or validation accuracy, theoretical
    speed-up) and each layer's sparsity to ``tensorboard/cycles`` in
    ``workdir``, step = cycle. The report is the one the run wrote into
    ``cycle_N/report.json`` when there is one. A front end subclasses it with
    :meth:`_model_report`, :meth:`_write_dir` and :meth:`_write_scalars`.
    """

    def __init__(self, workdir: str, verbose: int = 1):
        self.workdir = workdir
        self.verbose = verbose

    def _model_report(self, model) -> ModelReport:
        raise NotImplementedError

    def _write_dir(self, model) -> str:
        return self.workdir

    def _write_scalars(self, directory: str, step: int, scalars: dict[str, float]) -> None:
        raise NotImplementedError

    def __call__(self, model, row: dict) -> None:
        cycle = int(row["cycle"])
        out = self._write_dir(model)
        saved = _storage.read_json(_workdir.path(_workdir.cycle_dir(out, cycle), _workdir.CYCLE_REPORT))
        try:
            report = ModelReport.from_dict(saved) if saved is not None else self._model_report(model)
        except ValueError as error:  # an output size no shape tells: no FLOP count, said once per cycle
            if self.verbose:
                print(f"[tfimp] no model report after cycle {cycle}: {error}", flush=True)
            return
        if self.verbose:
            print(f"\n[tfimp] model after cycle {cycle}:\n{report.table()}", flush=True)  # below the progress bar
        self._write_scalars(_workdir.path(out, _workdir.TENSORBOARD_CYCLES), cycle, cycle_scalars(row, report))
