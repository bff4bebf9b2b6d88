"""Accuracy at equal budget: the paper's three claims on one small task.

(a) IMP with each retraining schedule, BIMP and the pruning-during-training
    baselines (tfmot's per-layer GMP, global GMP, DPF) at the same total
    budget (``--epochs``): during-training methods train for all of it; IMP
    spends ``epochs - imp_cycles * imp_retrain_epochs`` dense and
    ``imp_retrain_epochs`` per cycle; BIMP splits the same total with its
    linear dense schedule and ALLR. Dense training for the budget is the
    reference.
(b) IMP + SLR with each selection criterion (global, uniform, uniform+, ERK,
    LAMP) at the same budget and sparsities, with the per-layer sparsities
    each one chose.
(c) IMP + SLR at ``--c_sparsity`` with a budget of ``--split_budget``
    epochs split dense/retraining as ``--splits`` (e.g. 50/50 and 75/25), with
    1, 2 or 4 retraining epochs per cycle (the number of cycles fills the
    retraining share).
STR, CS and DST take no target (group ``own``, ``--own_methods``): the
hyper-parameter that sets their sparsity (STR's decay on its thresholds,
CS's ``cs_lambda``, DST's ``dst_alpha``) is calibrated per target on the first
seed (``tfimp.baselines.calibrate``, same budget) unless ``--own_values`` gives
it, each runs with it on every seed, and IMP + SLR is run again, per seed, at
exactly the sparsity it reached on that seed.

Every run goes through the CLI's ``tfimp.cli.main.run`` (no exports). Prints
mean ± std of test accuracy over seeds, writes ``methods.json`` (every run,
with per-layer sparsities) and ``accuracy_vs_sparsity.png`` into ``--out``.

The tables of docs/results/methods.md came from (about an hour on 2 CPU cores):

    python benchmarks/bench_methods.py --out bench_out/methods

``--keras 3`` runs every run through the CLI's Keras 3 front end
(``config.keras=3``) on the backend ``KERAS_BACKEND`` names, with the same
configs, so the tables can be set side by side:

    KERAS_BACKEND=jax python benchmarks/bench_methods.py --keras 3 --groups a --out bench_out/methods_k3

On a GPU, CIFAR-10 with ResNet-56 (data from tfds):

    python benchmarks/bench_methods.py --dataset cifar10 --model resnet56 --train_subset 0 \
        --epochs 200 --imp_retrain_epochs 10 --split_budget 200 --learning_rate 0.1 --data_dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import tfimp
from tfimp.cli import config as tfimp_config
from tfimp.cli import main
from tfimp.core import during_training

IMP_SCHEDULES = {"imp_ft": "ft", "imp_lrw": "lrw", "imp_slr": "slr", "imp_clr": "clr", "imp_llr": "llr",
                 "imp_allr": "allr"}
DEFAULT_METHODS = "dense,tfmot_gmp,gmp,dpf,dnw,lc,gsm,imp_ft,imp_lrw,imp_slr,imp_clr,imp_allr,bimp"
#: Every during-training method; those in ``during_training.CALIBRATION`` reach their own sparsity (group ``own``).
DURING = during_training.DURING_TRAINING
OWN = tuple(m for m in DURING if m in during_training.CALIBRATION)
GROUPS = ("a", "b", "c", "own")


def base_config(args, seed: int, sparsity: float):
    config = tfimp_config.base()
    config.update(dataset=args.dataset, model=args.model, data_dir=args.data_dir, train_subset=args.train_subset,
                  test_subset=args.test_subset,
                  batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                  seed=seed, verbose=0, target_sparsity=sparsity, criterion="global", cycles=args.imp_cycles,
                  retrain_epochs=args.imp_retrain_epochs, export_formats="", keras=args.keras,
                  chance_guard=False)  # a method that learns nothing is a result here, not an error
    return config


def method_config(method: str, sparsity: float, seed: int, args):
    """The CLI config of one group-(a) run (``method`` as named in this benchmark)."""
    config = base_config(args, seed, sparsity)
    dense_part = args.epochs - args.imp_cycles * args.imp_retrain_epochs
    if method == "dense":
        config.update(method="dense", dense_epochs=args.epochs)
    elif method in IMP_SCHEDULES:
        config.update(method="imp", dense_epochs=dense_part, retrain_schedule=IMP_SCHEDULES[method])
    elif method == "bimp":
        config.update(method="bimp", epochs=args.epochs, dense_epochs=dense_part)
    elif method in DURING:
        config.update(method=method, epochs=args.epochs)
    else:
        raise ValueError(f"unknown benchmark method {method!r}")
    return config


def split_configs(args, seed: int) -> list[tuple[str, dict, object]]:
    """Group (c): (label, facts, config) for each budget split and retraining epochs per cycle."""
    entries = []
    for fraction in args.splits:
        dense = int(round(fraction * args.split_budget))
        retraining = args.split_budget - dense
        for per_cycle in args.retrain_per_cycle:
            if dense < 1 or retraining % per_cycle or retraining // per_cycle < 1:
                continue
            config = base_config(args, seed, args.c_sparsity)
            config.update(method="imp", dense_epochs=dense, cycles=retraining // per_cycle, retrain_epochs=per_cycle,
                          retrain_schedule="slr")
            facts = {"dense_epochs": dense, "cycles": retraining // per_cycle, "retrain_epochs": per_cycle,
                     "dense_fraction": fraction}
            entries.append((f"split{round(100 * fraction)}_e{per_cycle}", facts, config))
    return entries


def _layer_sparsity(workdir: str, rows: list[dict]) -> dict:
    """Per-layer sparsity of the run's last cycle, read back from its ``cycle_N/`` (either front end)."""
    return tfimp.layer_sparsity(tfimp.load_cycle(workdir, rows[-1]["cycle"]))


class Runner:
    """Runs configs through the CLI and collects one result dict per run."""

    def __init__(self, args, front: str = ""):
        self.args, self.front = args, front
        self.results: list[dict] = []
        #: Runs the CLI refused (e.g. a criterion that cannot reach the target on this model), with its reason.
        self.skipped: list[dict] = []

    def save(self) -> None:
        """Writes ``methods.json`` as it stands: after every run, so a long grid stopped midway keeps its runs."""
        write_json(os.path.join(self.args.out, "methods.json"),
                   {"front_end": self.front, "args": vars(self.args), "results": self.results,
                    "skipped": self.skipped})

    def run(self, group: str, method: str, target, seed: int, config, **facts) -> dict | None:
        """One run through the CLI; None (recorded in ``skipped``, the grid goes on) where the CLI refuses it."""
        workdir = os.path.join(self.args.out, "runs", f"{group}_{method}_{target}_{seed}")
        tfimp.use_keras(self.args.keras).backend.clear_session()
        start = time.perf_counter()
        try:
            rows = main.run(config, workdir, overwrite=True)
        except ValueError as refusal:  # the CLI checks before any training: nothing of the grid is lost
            self.skipped.append({"group": group, "method": method, "target": target, "seed": seed,
                                 "reason": str(refusal)})
            print(f"[bench] ({group}) {method:16s} {str(target):>8s} seed {seed}: skipped: {refusal}", flush=True)
            self.save()
            return None
        wall = time.perf_counter() - start
        final = rows[-1]
        result = {"group": group, "method": method, "target": target, "seed": seed, "sparsity": final["sparsity"],
                  "test_accuracy": final["test_accuracy"], "wall_s": wall,
                  "epochs": sum(r["epochs"] for r in rows), "layer_sparsity": _layer_sparsity(workdir, rows),
                  **facts}
        self.results.append(result)
        self.save()
        print(f"[bench] ({group}) {method:16s} {str(target):>8s} seed {seed}: sparsity {final['sparsity']:.4f} "
              f"test acc {final['test_accuracy']:.4f} ({wall:.0f} s)", flush=True)
        return result


def calibrate(args, method: str, target: float, seed: int) -> tuple[float, float]:
    """The hyper-parameter of ``method`` (STR, CS, DST) that reaches ``target`` on this benchmark's data and budget."""
    spec = tfimp.data.spec(args.dataset)  # tfimp's names follow the Keras select_keras chose
    loaded = tfimp.data.load(args.dataset, data_dir=args.data_dir or None, batch_size=args.batch_size, seed=seed,
                             train_subset=args.train_subset or None)
    build = lambda: tfimp.models.build(args.model, num_classes=spec.num_classes,  # noqa: E731
                                       input_shape=spec.input_shape)
    return tfimp.baselines.calibrate(method, build, loaded.train, target, args.epochs, tolerance=args.own_tolerance,
                                     max_runs=args.calibration_runs, seed=seed, learning_rate=args.learning_rate,
                                     weight_decay=args.weight_decay, batch_size=args.batch_size)


def write_json(path: str, content: dict) -> None:
    """Writes ``content`` to ``path`` through a temporary file and a rename: a reader never sees half a file."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
    os.replace(partial, path)


def run_grid(args, runner: "Runner") -> list[dict]:
    methods = args.methods.split(",")
    known = list(dict.fromkeys(DEFAULT_METHODS.split(",") + list(IMP_SCHEDULES)))
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown benchmark method {unknown[0]!r}; known: {known}")
    groups = args.groups.split(",")
    if any(g not in GROUPS for g in groups):
        raise ValueError(f"unknown group in {groups}; known: {list(GROUPS)}")
    sparsities, seeds = args.sparsities, [int(s) for s in args.seeds.split(",")]
    if "a" in groups:
        for method in methods:
            for sparsity in [0.0] if method == "dense" else sparsities:
                for seed in seeds:
                    runner.run("a", method, sparsity, seed, method_config(method, sparsity, seed, args))
    if "b" in groups:
        for criterion in args.criteria.split(","):
            for sparsity in sparsities:
                for seed in seeds:
                    config = method_config("imp_slr", sparsity, seed, args)
                    config.criterion = criterion
                    runner.run("b", f"imp_slr_{criterion}", sparsity, seed, config, criterion=criterion)
    if "c" in groups:
        for seed in seeds:
            for label, facts, config in split_configs(args, seed):
                runner.run("c", label, args.c_sparsity, seed, config, **facts)
    if "own" in groups:
        for method in args.own_methods.split(","):
            if method not in OWN:
                raise ValueError(f"unknown --own_methods entry {method!r}; known: {list(OWN)}")
            calibration = during_training.CALIBRATION.get(method)
            for target in sparsities:
                if method in args.own_values:  # the user's value: no calibration
                    value = args.own_values[method]
                    print(f"[bench] {method} for {target:.0%}: {calibration.hyperparameter} {value:.4g} (given)",
                          flush=True)
                else:
                    value, reached = calibrate(args, method, target, seeds[0])
                    print(f"[bench] {method} for {target:.0%}: {calibration.hyperparameter} {value:.4g} (calibration "
                          f"run reached {reached:.4f})", flush=True)
                runs = []
                for seed in seeds:
                    config = method_config(method, target, seed, args)
                    config.update(**calibration.settings, **{calibration.hyperparameter: value})
                    runs.append(runner.run("own", method, target, seed, config, hyperparameter=calibration.hyperparameter,
                                           value=value))
                for run in (r for r in runs if r is not None):
                    # IMP at exactly the sparsity the method reached on this seed (DST's can differ by tens of
                    # points between seeds: a mean would compare it with IMP at a sparsity no run had).
                    at = round(run["sparsity"], 4)
                    if not 0.0 < at < 1.0:
                        print(f"[bench] {method} seed {run['seed']} reached {at}: no IMP run at that sparsity",
                              flush=True)
                        continue
                    runner.run("own", f"imp_slr_at_{method}", target, run["seed"],
                               method_config("imp_slr", at, run["seed"], args), reached_by=method, reached=at)
    return runner.results


def summarise(results: list[dict]) -> str:
    """The tables of the three claims and of the methods that reach their own sparsity."""
    out = []
    dense = [r for r in results if r["method"] == "dense"]
    dense_wall = _mean([r["wall_s"] for r in dense]) if dense else None
    targeted = [r for r in results if r["group"] in ("a", "b")]
    targets = sorted({r["target"] for r in targeted if r["target"]})
    if targeted:
        out.append("(a, b) test accuracy (%) at equal budget\n" + f"{'method':22s}"
                   + "".join(f"{t:>17.0%}" for t in targets) + f"{'wall / dense':>14s}")
        for method in dict.fromkeys(r["method"] for r in targeted):
            runs = [r for r in targeted if r["method"] == method]
            if method == "dense":
                cells = [_mean_std([r["test_accuracy"] for r in runs])] + [""] * (len(targets) - 1)
            else:
                cells = [_mean_std([r["test_accuracy"] for r in runs if r["target"] == t]) for t in targets]
            wall = f"{_mean([r['wall_s'] for r in runs]) / dense_wall:.2f}x" if dense_wall else ""
            out.append(f"{method:22s}" + "".join(f"{c:>17s}" for c in cells) + f"{wall:>14s}")
        criteria = [r for r in results if r["group"] == "b"] + [r for r in results if r["method"] == "imp_slr"]
        if criteria and targets:
            top = targets[-1]
            out.append(f"\n(b) per-layer sparsity (%) chosen at {top:.0%}, mean over seeds")
            for method in dict.fromkeys(r["method"] for r in criteria):
                runs = [r for r in criteria if r["method"] == method and r["target"] == top and r["layer_sparsity"]]
                if runs:
                    layers = runs[0]["layer_sparsity"]
                    cells = ", ".join(f"{name} {100 * _mean([r['layer_sparsity'][name] for r in runs]):.1f}"
                                      for name in layers)
                    out.append(f"{method:22s} {cells}")
    splits = [r for r in results if r["group"] == "c"]
    if splits:
        out.append(f"\n(c) IMP + SLR at {splits[0]['target']:.0%}, budget {splits[0]['epochs']} epochs\n"
                   f"{'dense/retraining':>17s} {'epochs/cycle':>13s} {'cycles':>7s} {'test accuracy':>16s}")
        for method in dict.fromkeys(r["method"] for r in splits):
            runs = [r for r in splits if r["method"] == method]
            fraction = runs[0]["dense_fraction"]
            out.append(f"{f'{fraction:.0%}/{1 - fraction:.0%}':>17s} {runs[0]['retrain_epochs']:>13d} "
                       f"{runs[0]['cycles']:>7d} {_mean_std([r['test_accuracy'] for r in runs]):>16s}")
    own = [r for r in results if r["group"] == "own"]
    if own:
        out.append(f"\nSTR, CS, DST and IMP + SLR at the sparsity each reached\n"
                   f"{'method':>7s} {'target':>7s} {'hyper-parameter':>22s} {'reached':>9s} {'method acc':>14s} "
                   f"{'IMP+SLR acc':>14s}")
        for method in dict.fromkeys(r["method"] for r in own if not r["method"].startswith("imp_slr_at_")):
            for target in dict.fromkeys(r["target"] for r in own if r["method"] == method):
                runs = [r for r in own if r["target"] == target and r["method"] == method]
                imp_runs = [r for r in own if r["target"] == target and r["method"] == f"imp_slr_at_{method}"]
                setting = f"{runs[0]['hyperparameter']} {runs[0]['value']:.3g}"
                out.append(f"{method:>7s} {target:>7.0%} {setting:>22s} "
                           f"{100 * _mean([r['sparsity'] for r in runs]):>8.2f}% "
                           f"{_mean_std([r['test_accuracy'] for r in runs]):>14s} "
                           f"{_mean_std([r['test_accuracy'] for r in imp_runs]):>14s}")
    return "\n".join(out)


def _mean(values):
    return statistics.mean(values) if values else float("nan")


def _mean_std(values) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def _curve(axis, runs: list[dict], label: str, **style) -> None:
    points = []
    for target in dict.fromkeys(r["target"] for r in runs):
        group = [r for r in runs if r["target"] == target]
        accuracies = [100 * r["test_accuracy"] for r in group]
        points.append((100 * _mean([r["sparsity"] for r in group]), _mean(accuracies),
                       statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0))
    points.sort()
    axis.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                  capsize=3, label=label, **style)


def plot(results: list[dict], path: str) -> None:
    """Left: (a, b) against sparsity; middle: STR, CS, DST and IMP at their sparsity; right: (c)."""
    import matplotlib

    matplotlib.use("Agg")  # a script: no display
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 5), dpi=110)
    for method in dict.fromkeys(r["method"] for r in results if r["group"] in ("a", "b")):
        runs = [r for r in results if r["group"] in ("a", "b") and r["method"] == method]
        if method == "dense":
            for axis in (left, middle):
                axis.axhline(100 * _mean([r["test_accuracy"] for r in runs]), color="black", linestyle="--",
                             label="dense")
            continue
        _curve(left, runs, method, linestyle="-" if runs[0]["group"] == "a" else ":")
    for method in dict.fromkeys(r["method"] for r in results if r["group"] == "own"):
        runs = [r for r in results if r["group"] == "own" and r["method"] == method]
        _curve(middle, runs, method, linestyle=":" if method.startswith("imp_slr_at_") else "-")
    for fraction in dict.fromkeys(r.get("dense_fraction") for r in results if r["group"] == "c"):
        runs = [r for r in results if r["group"] == "c" and r["dense_fraction"] == fraction]
        per_cycle = sorted({r["retrain_epochs"] for r in runs})
        accuracies = [[100 * r["test_accuracy"] for r in runs if r["retrain_epochs"] == e] for e in per_cycle]
        right.errorbar(per_cycle, [_mean(a) for a in accuracies],
                       yerr=[statistics.stdev(a) if len(a) > 1 else 0.0 for a in accuracies], marker="o", capsize=3,
                       label=f"dense {fraction:.0%} / retraining {1 - fraction:.0%}")
    titles = ("(a, b) accuracy at equal budget", "STR, CS, DST at the sparsity they reach, IMP + SLR there",
              "(c) IMP + SLR: retraining epochs per cycle")
    for axis, title in zip((left, middle, right), titles):
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7, ncol=2)
    left.set_xlabel("sparsity (%)")
    middle.set_xlabel("sparsity (%)")
    right.set_xlabel("retraining epochs per cycle (cycles fill the retraining share)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _own_values(text: str) -> dict[str, float]:
    """``str=0.0133,dst=0.00316`` as a dict; a name outside ``OWN`` or a value that is no number is refused."""
    values = {}
    for item in (t for t in text.split(",") if t):
        method, _, value = item.partition("=")
        if method not in OWN:
            raise argparse.ArgumentTypeError(f"--own_values: unknown method {method!r} in {item!r}; known: {list(OWN)}")
        try:
            values[method] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--own_values: {item!r} is not METHOD=NUMBER") from None
    return values


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", default=",".join(GROUPS), help="which of a, b, c, own to run")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="group (a)")
    parser.add_argument("--criteria", default="uniform,uniform_plus,erk,lamp", help="group (b); global is (a)'s imp_slr")
    parser.add_argument("--sparsities", default="0.9,0.95,0.98", type=_floats)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8, help="the budget of every method in (a), (b) and own")
    parser.add_argument("--imp_cycles", type=int, default=3)
    parser.add_argument("--imp_retrain_epochs", type=int, default=1)
    parser.add_argument("--split_budget", type=int, default=16, help="group (c)'s budget")
    parser.add_argument("--splits", default="0.5,0.75", type=_floats, help="group (c)'s dense fractions")
    parser.add_argument("--retrain_per_cycle", default="1,2,4", type=lambda t: [int(v) for v in t.split(",")])
    parser.add_argument("--c_sparsity", type=float, default=0.95)
    parser.add_argument("--own_methods", default=",".join(OWN), help="group own: methods that reach their own sparsity")
    parser.add_argument("--own_tolerance", type=float, default=0.015, help="calibration: within this of the target")
    parser.add_argument("--calibration_runs", type=int, default=7, help="calibration: at most this many runs")
    parser.add_argument("--own_values", default={}, type=_own_values,
                        help="group own: METHOD=VALUE,... of the methods' hyper-parameters, used instead of calibrating")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--train_subset", type=int, default=10000, help="0 = the whole training set")
    parser.add_argument("--test_subset", type=int, default=0, help="0 = the whole test set")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=0.02)
    parser.add_argument("--weight_decay", type=float, default=5e-4)
    parser.add_argument("--keras", type=int, default=2, choices=(2, 3),
                        help="front end: 2 = tf_keras (tfmot), 3 = Keras 3 on KERAS_BACKEND's backend")
    parser.add_argument("--out", default="bench_out/methods")
    args = parser.parse_args()
    keras = tfimp.use_keras(args.keras)  # first: the CLI's front end and tfimp's names then follow it
    front = f"Keras {keras.__version__} ({keras.backend.backend()})" if args.keras == 3 else "tf_keras"
    if any(not 0.0 < s < 1.0 for s in args.sparsities + [args.c_sparsity]):
        parser.error(f"sparsities must lie in (0, 1), got {args.sparsities} and {args.c_sparsity}")
    if args.epochs <= args.imp_cycles * args.imp_retrain_epochs:
        parser.error(f"--epochs must exceed imp_cycles * imp_retrain_epochs "
                     f"({args.imp_cycles * args.imp_retrain_epochs}) to leave a dense phase")
    os.makedirs(args.out, exist_ok=True)
    runner = Runner(args, front)
    try:
        results = run_grid(args, runner)
    except ValueError as error:
        parser.error(str(error))
    runner.save()
    plot(results, os.path.join(args.out, "accuracy_vs_sparsity.png"))
    print(f"\nmean ± std over seeds {args.seeds}; {front}; {args.model} on {args.dataset} "
          f"(train_subset {args.train_subset or 'all'}); budget {args.epochs} epochs\n")
    print(summarise(results))
    for skip in runner.skipped:
        print(f"skipped: ({skip['group']}) {skip['method']} at {skip['target']} seed {skip['seed']}: {skip['reason']}")
    print(f"\nwrote {args.out}/methods.json and {args.out}/accuracy_vs_sparsity.png")


if __name__ == "__main__":
    main_cli()
