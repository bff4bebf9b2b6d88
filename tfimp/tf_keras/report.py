"""The model report of a tf_keras model (:mod:`tfimp.core.report`: parameters, sparsity, MACs, speed-up).

This module reads the weights and the output sizes (from the graph, or one
traced forward pass of a subclassed model) and writes the per-cycle
TensorBoard scalars with ``tf.summary``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tfimp.core import structures as _structures
from tfimp.tf_keras import _private, wrapping
from tfimp.tf_keras import pruning as _pruning
from tfimp.core import report as _core_report
from tfimp.tfdata.tensorboard import ScalarWriter
from tfimp.core import storage as _storage
from tfimp.core.report import LayerReport, ModelReport  # noqa: F401  (public names)
from tfimp.tf_keras import workdir as _workdir
from tfimp.tf_keras._backend import keras


def _output_positions(layer: keras.layers.Layer, traced: Optional[dict] = None) -> int:
    try:
        shape = layer.output_shape
    except AttributeError:  # called eagerly inside a subclassed model: no graph node records it
        shape = (traced or {}).get(id(layer))
        if shape is None:
            raise ValueError(f"layer {layer.name!r} has an unknown output size; call the model on a batch first")
    return _core_report.positions_of(shape, layer.name)


def model_report(model: keras.Model, structure: str = "unstructured") -> ModelReport:
    """Counts parameters, sparsity and MACs of every prunable weight of ``model`` (wrapped or not).

    Rows are the weights of the kinds tfimp prunes (``tfimp.coverage``),
    wrapped or not (see :func:`tfimp.core.report.build`). With a
    ``structure`` (``"2:4"``, ``"block:1x4"``: :mod:`tfimp.core.structures`)
    each row also counts its sparsity in that structure's unit, and the
    table shows it as a column.

    Raises:
      ValueError: the model is not built, or a convolution's output size is unknown.
    """
    wrapping.check_tf_keras_model(model)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on a batch or build it first")
    found = wrapping.covered_weights(model)
    outers = [weight.outer for weight in found if weight.kind not in _core_report.LOOKUP_KINDS]
    traced = None if all(_has_output_shape(outer) for outer in outers) else _trace_output_shapes(model, outers)
    counted = [_core_report.CountedWeight(
        weight.name, weight.kind, weight.variable.numpy(), None if weight.mask is None else weight.mask.numpy(),
        lambda outer=weight.outer: _output_positions(outer, traced)) for weight in found]
    counts = _pruning.channel_counts(model) if counted and isinstance(_structures.get(structure), _structures.Channels) else None
    return _core_report.build(counted, int(sum(np.prod(v.shape) for v in model.trainable_weights)), structure,
                              counts)


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


def print_report(model: keras.Model, path: Optional[str] = None, structure: str = "unstructured") -> ModelReport:
    """Prints :func:`model_report`'s table and, with ``path``, writes its JSON there."""
    report = model_report(model, structure)
    print(report.table(), flush=True)
    if path:
        _storage.atomic_write_text(path, report.to_json())
    return report


class CycleReporter(_core_report.CycleReporter):
    """:class:`tfimp.core.report.CycleReporter` on tf_keras: scalars through ``tf.summary`` (the chief's workdir
    under several workers)."""

    def __init__(self, workdir: str, verbose: int = 1):
        super().__init__(workdir, verbose)
        self._writer = ScalarWriter()

    def _model_report(self, model):
        return model_report(model)

    def _write_dir(self, model):
        return _workdir.write_dir(self.workdir, model.distribute_strategy)

    def _write_scalars(self, directory, step, scalars):
        self._writer.write(directory, step, scalars)
