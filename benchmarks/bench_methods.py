"""Accuracy at equal budget: IMP (with each retraining schedule), BIMP and the
pruning-during-training baselines, side by side.

Every sparse method gets the same total number of epochs (``--epochs``):
during-training methods train for all of it; IMP spends
``epochs - cycles * retrain_epochs`` dense and ``retrain_epochs`` per cycle;
BIMP splits the same total with its linear dense schedule and ALLR. Dense
training for the same budget is the reference. STR does not take a target:
it runs once per ``--str_inits`` value and reports the sparsity it reaches.

Prints mean ± std of test accuracy per method and sparsity, wall time per
method relative to dense, and writes ``methods.json`` and
``accuracy_vs_sparsity.png`` into ``--out``.

The measured README table came from (about 30 minutes on 2 CPU cores):

    python benchmarks/bench_methods.py --out bench_out/methods

On a GPU, CIFAR-10 with ResNet-56 (data from tfds):

    python benchmarks/bench_methods.py --dataset cifar10 --model resnet56 --train_subset 0 \
        --epochs 200 --imp_retrain_epochs 10 --learning_rate 0.1 --data_dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from tfimp import config as tfimp_config
from tfimp import keras, main

IMP_SCHEDULES = {"imp_ft": "ft", "imp_lrw": "lrw", "imp_slr": "slr", "imp_clr": "clr", "imp_llr": "llr",
                 "imp_allr": "allr"}
DEFAULT_METHODS = "dense,tfmot_gmp,gmp,imp_ft,imp_lrw,imp_slr,imp_clr,imp_allr,bimp,dpf,str"


def method_config(method: str, sparsity: float, seed: int, args) -> tuple:
    """The CLI config of one run (``method`` as named in this benchmark)."""
    config = tfimp_config.base()
    config.update(dataset=args.dataset, model=args.model, data_dir=args.data_dir, train_subset=args.train_subset,
                  batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                  seed=seed, verbose=0, target_sparsity=sparsity, criterion="global",
                  cycles=args.imp_cycles, retrain_epochs=args.imp_retrain_epochs)
    dense_part = args.epochs - args.imp_cycles * args.imp_retrain_epochs
    if method == "dense":
        config.update(method="dense", dense_epochs=args.epochs)
    elif method in IMP_SCHEDULES:
        config.update(method="imp", dense_epochs=dense_part, retrain_schedule=IMP_SCHEDULES[method])
    elif method == "bimp":
        config.update(method="bimp", epochs=args.epochs, dense_epochs=dense_part)
    elif method in main.DURING_TRAINING:
        config.update(method=method, epochs=args.epochs)
        if method == "str":
            config.str_init = sparsity  # here `sparsity` carries the STR init value
            config.target_sparsity = 0.5  # unused by STR
    else:
        raise ValueError(f"unknown benchmark method {method!r}")
    return config


def run_grid(args) -> list[dict]:
    methods = args.methods.split(",")
    known = list(dict.fromkeys(DEFAULT_METHODS.split(",") + list(IMP_SCHEDULES)))
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown benchmark method {unknown[0]!r}; known: {known}")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    if any(not 0.0 < s < 1.0 for s in sparsities):
        raise ValueError(f"sparsities must lie in (0, 1), got {sparsities}")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for method in methods:
        grid = [0.0] if method == "dense" else [float(v) for v in args.str_inits.split(",")] if method == "str" \
            else sparsities
        for value in grid:
            for seed in seeds:
                config = method_config(method, value, seed, args)
                workdir = os.path.join(args.out, "runs", f"{method}_{value}_{seed}")
                keras.backend.clear_session()
                start = time.perf_counter()
                rows = main.run(config, workdir, overwrite=True)
                wall = time.perf_counter() - start
                final = rows[-1]
                results.append({"method": method, "target": value if method != "str" else None,
                                "str_init": value if method == "str" else None, "seed": seed,
                                "sparsity": final["sparsity"], "test_accuracy": final["test_accuracy"],
                                "wall_s": wall, "epochs": sum(r["epochs"] for r in rows)})
                print(f"[bench] {method:10s} {value:>6} seed {seed}: sparsity {final['sparsity']:.4f} "
                      f"test acc {final['test_accuracy']:.4f} ({wall:.0f} s)", flush=True)
    return results


def summarise(results: list[dict]) -> str:
    """mean ± std test accuracy per method and target sparsity, and wall time relative to dense."""
    dense_wall = statistics.mean(r["wall_s"] for r in results if r["method"] == "dense") if any(
        r["method"] == "dense" for r in results) else None
    targets = sorted({r["target"] for r in results if r["target"] not in (None, 0.0)})
    header = f"{'method':11s}" + "".join(f"{t:>17.0%}" for t in targets) + f"{'wall / dense':>14s}"
    lines = [header]
    for method in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == method]
        cells = []
        for target in targets:
            accuracies = [r["test_accuracy"] for r in runs if r["target"] == target]
            cells.append(_mean_std(accuracies) if accuracies else "")
        if method == "dense":
            cells = [_mean_std([r["test_accuracy"] for r in runs])] + [""] * (len(targets) - 1)
        if method == "str":
            cells = ["; ".join(f"{_mean([r['sparsity'] for r in runs if r['str_init'] == v]):.1%}: "
                               f"{_mean([r['test_accuracy'] for r in runs if r['str_init'] == v]):.2%}"
                               for v in dict.fromkeys(r["str_init"] for r in runs))]
        wall = f"{_mean([r['wall_s'] for r in runs]) / dense_wall:.2f}x" if dense_wall else ""
        lines.append(f"{method:11s}" + "".join(f"{c:>17s}" for c in cells) + f"{wall:>14s}")
    return "\n".join(lines)


def _mean(values):
    return statistics.mean(values) if values else float("nan")


def _mean_std(values) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), dpi=120)
    for method in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == method]
        if method == "dense":
            axis.axhline(100 * _mean([r["test_accuracy"] for r in runs]), color="black", linestyle="--",
                         label="dense")
            continue
        key = "str_init" if method == "str" else "target"
        points = []
        for value in dict.fromkeys(r[key] for r in runs):
            group = [r for r in runs if r[key] == value]
            accuracies = [100 * r["test_accuracy"] for r in group]
            points.append((100 * _mean([r["sparsity"] for r in group]), _mean(accuracies),
                           statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0))
        points.sort()
        axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points],
                      marker="o", capsize=3, label=method)
    axis.set_xlabel("sparsity (%)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("accuracy at equal budget")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--sparsities", default="0.9,0.95,0.98")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8, help="the budget of every method")
    parser.add_argument("--imp_cycles", type=int, default=3)
    parser.add_argument("--imp_retrain_epochs", type=int, default=1)
    parser.add_argument("--str_inits", default="-5.0,-4.0", help="STR threshold initialisations to run")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--train_subset", type=int, default=10000, help="0 = the whole training set")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.02)
    parser.add_argument("--weight_decay", type=float, default=5e-4)
    parser.add_argument("--out", default="bench_out/methods")
    args = parser.parse_args()
    if args.epochs <= args.imp_cycles * args.imp_retrain_epochs:
        parser.error(f"--epochs must exceed imp_cycles * imp_retrain_epochs "
                     f"({args.imp_cycles * args.imp_retrain_epochs}) to leave a dense phase")
    os.makedirs(args.out, exist_ok=True)
    results = run_grid(args)
    with open(os.path.join(args.out, "methods.json"), "w", encoding="utf-8") as handle:
        json.dump({"args": vars(args), "results": results}, handle, indent=2)
    plot(results, os.path.join(args.out, "accuracy_vs_sparsity.png"))
    print(f"\ntest accuracy (%), mean ± std over seeds {args.seeds}, budget {args.epochs} epochs, "
          f"{args.model} on {args.dataset} (train_subset {args.train_subset or 'all'})")
    print(summarise(results))
    print(f"\nwrote {args.out}/methods.json and {args.out}/accuracy_vs_sparsity.png")


if __name__ == "__main__":
    main_cli()
