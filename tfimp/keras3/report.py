"""The model report of a Keras 3 model (:mod:`tfimp.core.report`: parameters, sparsity, MACs, speed-up).

The output sizes come from the functional graph (each layer's symbolic
output); a layer that is not a node of one (inside a subclassed model) has
no known output size, and the report says so. The per-cycle TensorBoard
scalars are written with ``tf.summary`` where TensorFlow is installed (as
Keras 3's own TensorBoard callback does), on every backend.
"""

from __future__ import annotations

import importlib.util
import keras
import numpy as np

from tfimp.core import report as _core_report
from tfimp.core import structures as _structures
from tfimp.core.report import LayerReport, ModelReport  # noqa: F401  (public names)
from tfimp.keras3 import layer_specs
from tfimp.keras3 import masks as _masks


def _output_positions(layer) -> int:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):  # not a node of a functional graph
        raise ValueError(f"layer {layer.name!r} has an unknown output size (not a layer of a functional "
                         "model)") from None
    return _core_report.positions_of(tuple(shape), layer.name)


def _numpy(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable.value)


def model_report(model: keras.Model, structure: str = "unstructured") -> ModelReport:
    """Counts parameters, sparsity and MACs of every prunable weight of ``model`` (wrapped or not); with a
    ``structure``, also each weight's sparsity in its unit (see the tf_keras ``tfimp.report.model_report``).

    Raises:
      ValueError: the model is not built, or a convolution's output size is unknown.
    """
    _masks.check_keras3_model(model)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on a batch or build it first")
    _masks._sync_training_state(model)
    counted = []
    for path, wrapper in _masks.wrappers(model):
        kinds = dict(layer_specs.specs(wrapper.layer))
        for label, weight, mask in zip(wrapper.weight_paths, wrapper.masked_weights(), wrapper.masks):
            name = path if len(wrapper.weight_paths) == 1 else f"{path}/{_masks._weight_label(label)}"
            counted.append(_core_report.CountedWeight(name, kinds.get(label, "dense"), _numpy(weight), _numpy(mask),
                                                      lambda outer=wrapper: _output_positions(outer)))
    for name, variable, kind, layer in _masks.covered_weight_records(model):
        counted.append(_core_report.CountedWeight(name, kind, _numpy(variable), None,
                                                  lambda outer=layer: _output_positions(outer)))
    counts = _masks.channel_counts(model) if counted and isinstance(_structures.get(structure), _structures.Channels) else None
    return _core_report.build(counted, int(sum(np.prod(v.shape) for v in model.trainable_weights)), structure,
                              counts)


class CycleReporter(_core_report.CycleReporter):
    """:class:`tfimp.core.report.CycleReporter` on Keras 3: TensorBoard scalars through ``tf.summary`` where
    TensorFlow is installed (else the report alone, said once)."""

    _writer = None

    def _model_report(self, model):
        return model_report(model)

    def _write_scalars(self, directory, step, scalars):
        if self._writer is None:
            if importlib.util.find_spec("tensorflow") is None:
                if self.verbose:
                    print("[tfimp] TensorFlow is not installed: no TensorBoard scalars per cycle", flush=True)
                self._writer = False
            else:
                from tfimp.tfdata.tensorboard import ScalarWriter  # noqa: PLC0415  (needs TensorFlow)

                self._writer = ScalarWriter()
        if self._writer:
            self._writer.write(directory, step, scalars)
