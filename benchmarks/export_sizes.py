"""Export sizes and prediction errors per format, from either front end.

Builds a model of the registry, prunes it to ``--sparsity`` (global
magnitude, on its initial weights: the sizes depend on how many zeros there
are, not on training), exports every format this process can write through
``tfimp.export.export`` (on Keras 3 each file is loaded in a fresh process)
and prints the size table with the max |error| of each format's predictions
on 8 inputs against the Keras model. ``tflite_int8`` calibrates on 100
standard normal inputs (the model is untrained; its sizes do not depend on
the calibration). Writes ``export_sizes.json`` into ``--out``.

``--combine DIR,DIR,...`` reads the ``export_sizes.json`` of each run
instead (nothing is built) and writes them side by side, one column pair a
front end, as the docs table ``--table`` (``columns`` and ``rows`` for
docs_hooks.py). docs/tables/export_sizes.json is written so:

    KERAS_BACKEND=jax python benchmarks/export_sizes.py --keras 3 --out bench_out/export_jax
    KERAS_BACKEND=tensorflow python benchmarks/export_sizes.py --keras 3 --out bench_out/export_tf
    python benchmarks/export_sizes.py --out bench_out/export_tf_keras       (tf_keras, through tfmot)
    python benchmarks/export_sizes.py --combine bench_out/export_jax,bench_out/export_tf,bench_out/export_tf_keras \
        --table docs/tables/export_sizes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys

import numpy as np

import tfimp

import provenance  # benchmarks/ is on the path of a script run from it

#: The docs table's row label of each format, in the table's order.
FORMAT_LABELS = {"keras": "`.keras`", "savedmodel": "SavedModel", "tflite": "TFLite",
                 "tflite_dynamic": "TFLite dynamic range", "tflite_int8": "TFLite full integer (int8)", "onnx": "ONNX"}
COMMANDS = ("KERAS_BACKEND=jax python benchmarks/export_sizes.py --keras 3 --out bench_out/export_jax; "
            "KERAS_BACKEND=tensorflow python benchmarks/export_sizes.py --keras 3 --out bench_out/export_tf; "
            "python benchmarks/export_sizes.py --out bench_out/export_tf_keras; python benchmarks/export_sizes.py "
            "--combine bench_out/export_jax,bench_out/export_tf,bench_out/export_tf_keras "
            "--table docs/tables/export_sizes.json")


git_revision = provenance.git_revision


def combine(directories: list[str]) -> dict:
    """The docs table of the runs in ``directories`` (each holding an ``export_sizes.json``), one column pair each."""
    runs = []
    for directory in directories:
        path = os.path.join(directory, "export_sizes.json")
        if not os.path.isfile(path):
            raise SystemExit(f"--combine: {path} does not exist; run export_sizes.py --out {directory} first")
        with open(path, encoding="utf-8") as handle:
            runs.append(json.load(handle))
    models = {(run["model"], round(run["sparsity"], 4)) for run in runs}
    if len(models) != 1:
        raise SystemExit(f"--combine: the runs prune different models or sparsities ({sorted(models)}); "
                         "combine runs of one model at one sparsity")
    (model, sparsity), = models
    columns = ["format"]
    for run in runs:
        columns += [f"{run['front_end']}: bytes / gzip (dense gzip)", "max |err|"]
    rows = []
    for fmt, label in FORMAT_LABELS.items():
        if not any(fmt in run.get("skipped", {}) or any(e["format"] == fmt for e in run["files"]) for run in runs):
            continue  # no front end knows the format
        row = [label]
        for run in runs:
            found = {entry["format"]: entry for entry in run["files"]}
            if fmt in found:
                entry = found[fmt]
                row += [f"{entry['bytes']:,} / {entry['gzip_bytes']:,} ({entry['dense_gzip_bytes']:,})",
                        "0" if entry["max_abs_error"] == 0 else f"{entry['max_abs_error']:.1e}"]
            elif fmt in run.get("skipped", {}):
                row += [f"not written: {run['skipped'][fmt]}", ""]
            else:
                row += [f"({run['front_end']} exports no {label})", ""]
        rows.append(row)
    first = runs[0]
    return {"title": f"Export sizes of {model} pruned to {sparsity:.0%}, each file loaded in a fresh process",
            "command": COMMANDS, "revision": ", ".join(dict.fromkeys(run.get("revision", "unknown") for run in runs)),
            "machine": first.get("machine", "unknown"), "columns": columns, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras", type=int, default=2, choices=(2, 3),
                        help="front end: 2 = tf_keras (tfmot), 3 = Keras 3 on KERAS_BACKEND's backend")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--input_shape", default="28,28,1")
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", default="bench_out/export_sizes")
    parser.add_argument("--combine", default="", help="DIR,DIR,...: runs to combine into --table (nothing built)")
    parser.add_argument("--table", default="", help="with --combine: the docs table to write")
    args = parser.parse_args()
    if args.combine:
        if not args.table:
            parser.error("--combine writes the table named by --table; pass --table PATH")
        table = combine([d for d in args.combine.split(",") if d])
        with open(args.table, "w", encoding="utf-8") as handle:
            json.dump(table, handle, indent=1)
            handle.write("\n")
        print(f"[export] wrote {args.table}: {len(table['rows'])} formats, {len(table['columns']) // 2} front ends")
        return
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
                   "command": " ".join(["python", *sys.argv]), "revision": git_revision(),
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                   "files": [dataclasses.asdict(f) for f in files]}, handle, indent=2)


if __name__ == "__main__":
    main()
