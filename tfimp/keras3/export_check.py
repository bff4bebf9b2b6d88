"""Loads tfimp's exports in a fresh process and records what each predicts: :func:`tfimp.keras3.export.export`'s check.

    python -m tfimp.keras3.export_check [--test=TEST.npy] INPUTS.npy SCRATCH_DIR keras=PATH savedmodel=PATH ...

It imports nothing at the top but numpy and the framework-free core: each
loader imports its runtime.

Each file is loaded the way a user without tfimp would load it (Keras 3's
``load_model``, ``tf.saved_model.load``, TFLite's interpreter, onnxruntime),
run on the batch in ``INPUTS.npy`` and, given ``--test``, on the test inputs
in ``TEST.npy`` (:data:`tfimp.core.exports.EVALUATION_BATCH` at a time);
``SCRATCH_DIR/check_results.json`` gets, per format, the outputs' ``.npy``
files (``outputs``, ``test_outputs``), the count of zeros among the stored
weights where the format's weights can be read (else null), for ``.keras``
the sparsity tfimp measures on the loaded model and, for ``tflite_int8``,
an ``.npz`` of where each int8 weight tensor is zero (``weight_zeros``,
:func:`tfimp.core.exports.tflite_weight_zeros`).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from tfimp.core.exports import in_batches, run_tflite, tflite_runner, tflite_weight_zeros


def keras_zeros(model) -> int:
    """Zeros among a Keras 3 model's float weights (a seed generator's integer state is not a weight)."""
    import keras  # noqa: PLC0415

    return sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0)) for v in model.weights
               if "float" in str(v.dtype))


def _keras_file(path: str):
    import keras  # noqa: PLC0415  (first: tfimp's names then follow Keras 3)

    model = keras.saving.load_model(path, compile=False)  # a plain Keras 3 model: no tfimp objects needed
    from tfimp.keras3 import masks  # noqa: PLC0415

    return ((lambda x: keras.ops.convert_to_numpy(model(x, training=False))), keras_zeros(model),
            float(masks.sparsity(model)))


def _saved_model(path: str):
    import tensorflow as tf  # noqa: PLC0415

    loaded = tf.saved_model.load(path)
    zeros = sum(int(np.sum(v.numpy() == 0)) for v in loaded.variables if v.dtype.is_floating)
    return (lambda x: np.asarray(loaded.serve(x))), zeros, None


def tflite_predict(path: str, x: np.ndarray) -> np.ndarray:
    """The TFLite file's outputs on ``x`` (TensorFlow's interpreter, resized to the batch)."""
    import tensorflow as tf  # noqa: PLC0415

    return run_tflite(tf.lite, path, x)


def _tflite(path: str):
    import tensorflow as tf  # noqa: PLC0415

    return tflite_runner(tf.lite, path), None, None


def _onnx(path: str):
    import onnxruntime  # noqa: PLC0415

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return (lambda x: session.run(None, {session.get_inputs()[0].name: x})[0]), None, None


#: ``format -> loader``: ``path -> (predict, zeros, sparsity)``.
LOADERS = {"keras": _keras_file, "savedmodel": _saved_model, "tflite": _tflite, "tflite_dynamic": _tflite,
           "tflite_int8": _tflite, "onnx": _onnx}


def _weight_zeros(path: str, out: str) -> str:
    """Saves where each int8 weight tensor of the TFLite file is zero to ``out`` (``.npz``, in file order)."""
    import tensorflow as tf  # noqa: PLC0415

    found = tflite_weight_zeros(tf.lite, path)
    np.savez(out, names=np.array([name for name, _ in found]), **{f"w{i}": mask for i, (_, mask) in enumerate(found)})
    return out


def read_weight_zeros(path: str) -> list[tuple[str, np.ndarray]]:
    """What :func:`_weight_zeros` saved: ``(name, zero mask)`` per int8 weight tensor."""
    with np.load(path) as saved:
        return [(str(name), saved[f"w{i}"]) for i, name in enumerate(saved["names"])]


def main(argv: list[str]) -> int:
    test = None
    if argv and argv[0].startswith("--test="):
        test, argv = np.load(argv[0].partition("=")[2]), argv[1:]
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    inputs, scratch, entries = argv[0], argv[1], argv[2:]
    x = np.load(inputs)
    results = {}
    for entry in entries:
        fmt, _, path = entry.partition("=")
        if fmt not in LOADERS:
            print(f"unknown format {fmt!r}; known: {sorted(LOADERS)}", file=sys.stderr)
            return 2
        predict, zeros, sparsity = LOADERS[fmt](path)
        found = {"outputs": os.path.join(scratch, f"{fmt}_outputs.npy"), "zeros": zeros, "sparsity": sparsity,
                 "test_outputs": None, "weight_zeros": None}
        np.save(found["outputs"], np.asarray(predict(x)))
        if test is not None:
            found["test_outputs"] = os.path.join(scratch, f"{fmt}_test_outputs.npy")
            np.save(found["test_outputs"], in_batches(predict, test))
        if fmt == "tflite_int8":
            found["weight_zeros"] = _weight_zeros(path, os.path.join(scratch, f"{fmt}_weight_zeros.npz"))
        results[fmt] = found
    with open(os.path.join(scratch, "check_results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
