"""Export sizes and prediction errors per format, from either front end.

Builds a model of the registry, prunes it to ``--sparsity`` (global
magnitude, on its initial weights: the sizes depend on how many zeros there
are, not on training), exports every format this process can write through
``tfimp.export.export`` (on Keras 3 each file is loaded in a fresh process)
and prints the size table with the max |error| of each format's predictions
on 8 inputs against the Keras model. ``tflite_int8`` calibrates on 100
standard normal inputs (the model is untrained; its sizes do not depend on
the calibration). Writes ``export_sizes.json`` into ``--out``.

    KERAS_BACKEND=jax python benchmarks/export_sizes.py --keras 3 --out bench_out/export_jax
    KERAS_BACKEND=tensorflow python benchmarks/export_sizes.py --keras 3 --out bench_out/export_tf
    python benchmarks/export_sizes.py --out bench_out/export_tf_keras       (tf_keras, through tfmot)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np

import tfimp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras", type=int, default=2, choices=(2, 3),
                        help="front end: 2 = tf_keras (tfmot), 3 = Keras 3 on KERAS_BACKEND's backend")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--input_shape", default="28,28,1")
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", default="bench_out/export_sizes")
    args = parser.parse_args()
    keras = tfimp.use_keras(args.keras)  # first: tfimp's names then follow this Keras
    keras.utils.set_random_seed(0)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    model = tfimp.wrap(tfimp.models.build(args.model, num_classes=args.num_classes, input_shape=shape), verbose=0)
    model(np.zeros((1, *shape), "float32"))
    tfimp.prune(model, args.sparsity)
    if args.keras == 3:
        formats = [f for f in tfimp.export.FORMATS if tfimp.export.unavailable(f) is None]
        skipped = {f: tfimp.export.unavailable(f) for f in tfimp.export.FORMATS if f not in formats}
        front = f"Keras {keras.__version__} ({keras.backend.backend()})"
    else:
        formats, skipped, front = list(tfimp.export.FORMATS), {}, "tf_keras"
    x = np.random.default_rng(0).normal(size=(8, *shape)).astype("float32")
    calibration = np.random.default_rng(1).normal(size=(100, *shape)).astype("float32")
    files = tfimp.export.export(model, os.path.join(args.out, "files"), formats=formats, check_inputs=x,
                                representative_data=calibration)
    print(f"[export] {front}: {args.model} pruned to {tfimp.sparsity(model):.2%}")
    print(tfimp.export.size_table(files))
    for fmt, why in skipped.items():
        print(f"[export] {fmt} not written here: {why}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "export_sizes.json"), "w", encoding="utf-8") as handle:
        json.dump({"front_end": front, "model": args.model, "sparsity": tfimp.sparsity(model), "skipped": skipped,
                   "files": [dataclasses.asdict(f) for f in files]}, handle, indent=2)


if __name__ == "__main__":
    main()
