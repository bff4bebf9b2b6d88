"""Merges equal-budget benchmark runs into one ``methods.json`` and one three-panel figure.

Each input is a ``--out`` directory of ``benchmarks/bench_methods.py``: its
``methods.json`` when the run finished, else the rows of its finished runs
(``runs/GROUP_METHOD_TARGET_SEED/``), so a grid measured in parts, or one
stopped early, still gives one table. ``DIR@b,c`` keeps only those groups
of an input; ``DIR:TAG`` relabels its group (the per-layer table at 98% in
docs/results/methods.md is tagged ``b98`` and left out of the figure).
``docs/bench_methods_fashion_mnist.*`` came from:

    python benchmarks/merge_methods.py --out docs/bench_methods_fashion_mnist \\
        bench_out/a bench_out/rest@b,c bench_out/layers:b98 bench_out/str2
"""

from __future__ import annotations

import argparse
import json
import os
import re

import bench_methods

_RUN = re.compile(r"(?P<group>[a-z]+)_(?P<method>.+)_(?P<target>[\d.]+)_(?P<seed>\d+)$")


def _from_runs(directory: str) -> list[dict]:
    """Result entries rebuilt from the run directories of an unfinished benchmark."""
    results = []
    runs = os.path.join(directory, "runs")
    for name in sorted(os.listdir(runs)):
        match = _RUN.match(name)
        path = os.path.join(runs, name, "results.json")
        if not match or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            rows = json.load(handle)["rows"]
        last = rows[-1]
        layers = {}
        for report in (os.path.join(runs, name, f"cycle_{last['cycle']}", "report.json"),
                       os.path.join(runs, name, "reports", f"cycle_{last['cycle']}.json")):  # the older layout
            if os.path.exists(report):
                with open(report, encoding="utf-8") as handle:
                    layers = {layer["name"]: layer["sparsity"] for layer in json.load(handle)["layers"]}
                break
        entry = {"group": match["group"], "method": match["method"], "target": float(match["target"]),
                 "seed": int(match["seed"]), "sparsity": last["sparsity"], "test_accuracy": last["test_accuracy"],
                 "wall_s": sum(r["wall_s"] for r in rows), "epochs": sum(r["epochs"] for r in rows),
                 "layer_sparsity": layers}
        if entry["group"] == "c":  # split<percent>_e<epochs per cycle>
            split = re.match(r"split(\d+)_e(\d+)", entry["method"])
            fraction, per_cycle = int(split[1]) / 100, int(split[2])
            dense = sum(r["epochs"] for r in rows if r["cycle"] == 0)
            entry.update(dense_fraction=fraction, retrain_epochs=per_cycle, dense_epochs=dense,
                         cycles=len(rows) - 1)
        results.append(entry)
    return results


def load(spec: str) -> list[dict]:
    """The entries of one input ``DIR``, ``DIR@GROUPS`` or ``DIR:TAG``."""
    spec, _, groups = spec.partition("@")
    directory, _, tag = spec.partition(":")
    summary = os.path.join(directory, "methods.json")
    if os.path.exists(summary):
        with open(summary, encoding="utf-8") as handle:
            results = json.load(handle)["results"]
    else:
        results = _from_runs(directory)
    if groups:
        results = [r for r in results if r["group"] in groups.split(",")]
    return [{**r, "group": tag} if tag else r for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="bench_methods.py --out directories, each optionally @GROUPS or :TAG")
    parser.add_argument("--out", required=True, help="path without extension: writes OUT.json and OUT.png")
    args = parser.parse_args()
    results = [entry for spec in args.inputs for entry in load(spec)]
    with open(f"{args.out}.json", "w", encoding="utf-8") as handle:
        json.dump({"inputs": args.inputs, "results": results}, handle, indent=1)
    plotted = [r for r in results if r["group"] in ("a", "b", "c", "str", "own")]
    bench_methods.plot(plotted, f"{args.out}.png")
    print(bench_methods.summarise(plotted))
    print(f"\nwrote {args.out}.json and {args.out}.png ({len(results)} runs)")


if __name__ == "__main__":
    main()
