"""Loads tfimp's exports in a fresh process and records what each predicts: :func:`tfimp.keras3.export.export`'s check.

    python -m tfimp.keras3.export_check INPUTS.npy SCRATCH_DIR keras=PATH savedmodel=PATH ...

It imports nothing at the top but numpy: each loader imports its runtime,
so the tf_keras front end reuses :func:`tflite_predict` too.

Each file is loaded the way a user without tfimp would load it (Keras 3's
``load_model``, ``tf.saved_model.load``, TFLite's interpreter, onnxruntime),
run on the batch in ``INPUTS.npy``; ``SCRATCH_DIR/check_results.json`` gets,
per format, the outputs' ``.npy`` file, the count of zeros among the stored
weights where the format's weights can be read (else null) and, for
``.keras``, the sparsity tfimp measures on the loaded model.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from tfimp.core.exports import run_tflite


def keras_zeros(model) -> int:
    """Zeros among a Keras 3 model's float weights (a seed generator's integer state is not a weight)."""
    import keras  # noqa: PLC0415

    return sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0)) for v in model.weights
               if "float" in str(v.dtype))


def _keras_file(path: str, x: np.ndarray):
    import keras  # noqa: PLC0415  (first: tfimp's names then follow Keras 3)

    model = keras.saving.load_model(path, compile=False)  # a plain Keras 3 model: no tfimp objects needed
    from tfimp.keras3 import masks  # noqa: PLC0415

    return keras.ops.convert_to_numpy(model(x, training=False)), keras_zeros(model), float(masks.sparsity(model))


def _saved_model(path: str, x: np.ndarray):
    import tensorflow as tf  # noqa: PLC0415

    loaded = tf.saved_model.load(path)
    zeros = sum(int(np.sum(v.numpy() == 0)) for v in loaded.variables if v.dtype.is_floating)
    return np.asarray(loaded.serve(x)), zeros, None


def tflite_predict(path: str, x: np.ndarray) -> np.ndarray:
    """The TFLite file's outputs on ``x`` (TensorFlow's interpreter, resized to the batch)."""
    import tensorflow as tf  # noqa: PLC0415

    return run_tflite(tf.lite, path, x)


def _tflite(path: str, x: np.ndarray):
    return tflite_predict(path, x), None, None


def _onnx(path: str, x: np.ndarray):
    import onnxruntime  # noqa: PLC0415

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0], None, None


LOADERS = {"keras": _keras_file, "savedmodel": _saved_model, "tflite": _tflite, "tflite_dynamic": _tflite,
           "onnx": _onnx}


def main(argv: list[str]) -> int:
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
        outputs, zeros, sparsity = LOADERS[fmt](path, x)
        out = os.path.join(scratch, f"{fmt}_outputs.npy")
        np.save(out, np.asarray(outputs))
        results[fmt] = {"outputs": out, "zeros": zeros, "sparsity": sparsity}
    with open(os.path.join(scratch, "check_results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
