"""The front ends side by side on one CPU: the fidelity protocol's IMP + SLR 98% run, and what the masks cost per step.

For each front end (tf_keras; Keras 3 on JAX; Keras 3 on TensorFlow; Keras 3
on PyTorch where torch is installed) a fresh process of this script
(``--worker``: the two Kerases cannot share a process) measures, on
Fashion-MNIST (Debian's idx files, or ``--data_dir``) with model H of
``benchmarks/fidelity_fashion_mnist.py`` at batch 128:

1. ``imp_wall_s``: the wall time of ``tfimp.IMP(...).run`` for the protocol's
   IMP + SLR 98% (3 cycles x 2 epochs, global magnitude, BatchNorm
   re-estimated after each pruning, TorchSGD with Nesterov and weight decay),
   from the model's initial weights (the dense phase's weights do not change
   the time), compiling included, as a user would see it;
2. ``step_ms_plain`` / ``step_ms_masked``: one training step of the
   unwrapped model and of the wrapped, 90%-pruned one, same optimizer,
   timed over ``--steps`` steps per round after a warm-up, rounds
   interleaved; ``mask_cost`` is the median over rounds of masked / plain
   (goal: <= 1.02).

The authors' PyTorch code ran that IMP + SLR 98% run in 80-86 s on this
2-core machine (measured by the issue that asked for this script); the
table prints each front end's wall against that and against tf_keras.
Every worker's figures go to ``--out``/speed.json.

    python benchmarks/speed_front_ends.py --out bench_out/speed --repeats 3   # workers interleaved 3 times
    python benchmarks/speed_front_ends.py --front_ends jax --variants all   # where JAX's time goes
    python benchmarks/speed_front_ends.py --front_ends tf_keras,tensorflow --variants default,steps_per_execution_8
    python benchmarks/speed_front_ends.py --phases    # the IMP run's wall split into steps, compiling, BN, tests
    git worktree add /tmp/tfimp_before 893b769 && \
        python benchmarks/speed_front_ends.py --baseline_tree /tmp/tfimp_before --repeats 2   # before/after

With ``--baseline_tree``, every worker also runs with ``tfimp`` imported from
that checkout (an older revision), right after the current one in the same
repeat, and the table adds each front end's wall over the older revision's
(``/ before``, paired by repeat).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
#: The authors' PyTorch wall time for the IMP + SLR 98% run on this 2-core machine (seconds, range of runs).
AUTHORS_WALL_S = (80.0, 86.0)
FRONT_ENDS = {  # name -> (config.keras, KERAS_BACKEND)
    "tf_keras": (2, None),
    "jax": (3, "jax"),
    "tensorflow": (3, "tensorflow"),
    "torch": (3, "torch"),
}
#: Variants of every worker (``--variants``): what each changes, as keyword arguments of the runner/compile.
VARIANTS = {
    "default": {},
    "steps_per_execution_8": {"steps_per_execution": 8},
    "no_bn_reestimation": {"recalibrate_bn": False},
}


def _instrument(version: int, keras) -> tuple[dict, object]:
    """Timers for ``--phases``: (totals, a callback for the run's fit).

    Wraps the IMP callback's BatchNorm re-estimation and test evaluations
    with timers, and times each epoch's first batch (tracing, compiling and
    one step) apart from the other batches; the rest of the wall is
    ``other_s`` (pruning, checkpoint-free bookkeeping, Keras' own epoch ends).
    """
    totals = {"steps_s": 0.0, "first_batches_s": 0.0, "bn_reestimation_s": 0.0, "test_evaluation_s": 0.0}

    def timed(module, name: str, key: str) -> None:
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - start

        setattr(module, name, wrapper)

    # Both front ends run the core's driver; their framework operations are one object each.
    ops = importlib.import_module("tfimp.keras3.framework" if version == 3 else "tfimp.tf_keras.framework").OPS
    timed(ops, "evaluate", "test_evaluation_s")
    timed(ops, "reestimate_batchnorm", "bn_reestimation_s")

    class BatchTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            totals["first_batches_s" if batch == 0 else "steps_s"] += time.perf_counter() - self._start

    return totals, BatchTimer()


def _worker(args) -> dict:
    """Runs in the front end's own process: returns the figures."""
    version, backend = FRONT_ENDS[args.worker]
    if version == 3:
        importlib.import_module("keras")  # first: tfimp's names then follow Keras 3
    sys.path.insert(0, HERE)
    import fidelity_fashion_mnist as fidelity  # noqa: E402

    import tfimp

    keras = fidelity.process_keras()
    train, test = fidelity.load(args.data_dir, args.train_subset or None)
    figures = {"front_end": args.worker, "keras": keras.__version__,
               "backend": keras.backend.backend() if version == 3 else "tensorflow (tf_keras)",
               "train_examples": len(train[0])}
    variant = VARIANTS[args.variant]
    figures["variant"] = args.variant
    figures["xla_flags"] = os.environ.get("XLA_FLAGS", "") if backend == "jax" else ""

    # 1. The IMP + SLR 98% run, as the fidelity protocol runs it.
    if args.steps_only:
        figures.update(imp_wall_s=float("nan"), imp_test_accuracy=float("nan"), imp_sparsity=float("nan"))
    keras.utils.set_random_seed(0)
    model = fidelity.model_h()
    imp = tfimp.IMP(target_sparsity=0.98, cycles=fidelity.CYCLES, dense_epochs=0,
                    original_epochs=fidelity.DENSE_EPOCHS, retrain_epochs=fidelity.RETRAIN_EPOCHS,
                    retrain_schedule="slr", criterion="global", optimizer_state="fresh_then_keep",
                    recalibrate_bn=variant.get("recalibrate_bn", True), learning_rate=0.1, dense_schedule="step",
                    momentum=0.9, weight_decay=5e-4, batch_size=fidelity.BATCH, seed=0,
                    steps_per_execution=variant.get("steps_per_execution", 1),
                    chance_guard=False)  # a timing run from the initial weights: tiny smoke runs learn nothing
    if not args.steps_only:
        phases, timer = _instrument(version, keras) if args.phases else (None, None)
        start = time.perf_counter()
        rows = imp.run(model, train, test=test, verbose=0, callbacks=[timer] if timer else [])
        figures["imp_wall_s"] = time.perf_counter() - start
        if phases is not None:
            figures["phases"] = {**phases, "other_s": figures["imp_wall_s"] - sum(phases.values())}
        figures["imp_test_accuracy"] = rows[-1]["test_accuracy"]
        figures["imp_sparsity"] = rows[-1]["sparsity"]

    # 2. One step, unwrapped against wrapped and 90% pruned.
    def compiled(wrapped: bool):
        keras.utils.set_random_seed(0)
        net = fidelity.model_h()
        if wrapped:
            net = tfimp.wrap(net, verbose=0)
            tfimp.prune(net, 0.9)
        net.compile(tfimp.optimizers.TorchSGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    steps_per_execution=variant.get("steps_per_execution", 1))
        return net

    x, y = train[0][:args.steps * fidelity.BATCH], train[1][:args.steps * fidelity.BATCH]
    nets = {"plain": compiled(False), "masked": compiled(True)}
    for net in nets.values():  # compile and warm up
        net.fit(x[:2 * fidelity.BATCH], y[:2 * fidelity.BATCH], batch_size=fidelity.BATCH, epochs=1, verbose=0,
                shuffle=False)
    times = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            net.fit(x, y, batch_size=fidelity.BATCH, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / (len(x) // fidelity.BATCH))
    figures["step_ms_plain"] = 1000 * statistics.median(times["plain"])
    figures["step_ms_masked"] = 1000 * statistics.median(times["masked"])
    figures["mask_cost"] = statistics.median(m / p for m, p in zip(times["masked"], times["plain"]))
    figures["mask_cost_rounds"] = [m / p for m, p in zip(times["masked"], times["plain"])]
    return figures


def _run_worker(name: str, variant: str, args, tree: str | None = None) -> dict | None:
    version, backend = FRONT_ENDS[name]
    if name == "torch" and importlib.util.find_spec("torch") is None:
        print("[speed] torch: not installed, skipped", flush=True)
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    if backend:
        env["KERAS_BACKEND"] = backend
    if args.xla_flags and name == "jax":
        env["XLA_FLAGS"] = args.xla_flags
    if tree:  # tfimp from the older checkout: first on the path, before this tree's installed package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(tree), env.get("PYTHONPATH")) if p)
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--variant", variant,
               "--rounds", str(args.rounds), "--steps", str(args.steps), "--train_subset", str(args.train_subset)]
    if args.data_dir:
        command += ["--data_dir", args.data_dir]
    if args.steps_only:
        command.append("--steps_only")
    if args.phases:
        command.append("--phases")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"[speed] worker {name} ({variant}) failed:\n{done.stderr[-4000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["tree"] = "before" if tree else "current"
    print(f"[speed] {name} ({variant}{', before' if tree else ''}): IMP + SLR 98% {figures['imp_wall_s']:.1f} s, step "
          f"{figures['step_ms_plain']:.2f} ms plain / {figures['step_ms_masked']:.2f} ms masked "
          f"({figures['mask_cost']:.3f}x)", flush=True)
    return figures


def table(results: list[dict]) -> str:
    """The side-by-side table, one row per front end (and variant): medians over the repeats.

    ``/ tf_keras`` is the median over repeats of the front end's wall over
    tf_keras' wall *in the same repeat* (the machine's speed drifts between
    repeats by tens of percent, so only neighbours compare).
    """
    current = [r for r in results if r.get("tree", "current") == "current"]
    base = {r["repeat"]: r["imp_wall_s"] for r in current if r["front_end"] == "tf_keras" and r["variant"] == "default"}
    before = {(r["front_end"], r["variant"], r["repeat"]): r["imp_wall_s"] for r in results if r.get("tree") == "before"}
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["front_end"], r["backend"], r["variant"], r.get("tree", "current")), []).append(r)
    lines = ["| front end | variant | tree | repeats | IMP + SLR 98% wall (median, range) | / authors' 80-86 s | "
             "/ tf_keras (paired) | / before (paired) | test acc. | plain step | masked step | mask cost |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (front_end, backend, variant, tree), rows in groups.items():
        walls = [r["imp_wall_s"] for r in rows]
        wall = statistics.median(walls)
        paired = [r["imp_wall_s"] / base[r["repeat"]] for r in rows if r["repeat"] in base and tree == "current"]
        against_base = f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})" if paired else "-"
        older = [r["imp_wall_s"] / before[(front_end, variant, r["repeat"])] for r in rows
                 if tree == "current" and (front_end, variant, r["repeat"]) in before]
        against_before = f"{statistics.median(older):.2f}x ({min(older):.2f}-{max(older):.2f})" if older else "-"
        lines.append(
            f"| {front_end} ({backend}) | {variant} | {tree} | {len(rows)} | {wall:.1f} s ({min(walls):.1f}-"
            f"{max(walls):.1f}) | {wall / AUTHORS_WALL_S[1]:.2f}-{wall / AUTHORS_WALL_S[0]:.2f}x | {against_base} | "
            f"{against_before} | {100 * rows[-1]['imp_test_accuracy']:.2f}% | "
            f"{statistics.median(r['step_ms_plain'] for r in rows):.2f} ms | "
            f"{statistics.median(r['step_ms_masked'] for r in rows):.2f} ms | "
            f"{statistics.median(r['mask_cost'] for r in rows):.3f}x |")
    return "\n".join(lines)


PHASES = ("steps_s", "first_batches_s", "bn_reestimation_s", "test_evaluation_s", "other_s")


def phase_table(results: list[dict]) -> str:
    """One row per worker run with ``--phases``: the IMP run's wall split into its parts."""
    lines = ["| front end | repeat | wall | steps | first batches (compile) | BatchNorm re-estimation | "
             "test evaluations | other |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "phases" in r:
            parts = " | ".join(f"{r['phases'][name]:.1f}" for name in PHASES)
            lines.append(f"| {r['front_end']} ({r['backend']}) | {r['repeat']} | {r['imp_wall_s']:.1f} | {parts} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out/speed")
    parser.add_argument("--front_ends", default="tf_keras,jax,tensorflow,torch",
                        help=f"comma-separated, of {list(FRONT_ENDS)}")
    parser.add_argument("--variants", default="default",
                        help=f"comma-separated, of {list(VARIANTS)}, or 'all': each front end runs each")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every worker this many times, interleaved (the table gives medians)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the per-step timing")
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed round")
    parser.add_argument("--train_subset", type=int, default=0, help="first N training images (smoke runs only)")
    parser.add_argument("--data_dir", default=None, help="idx files (default: Debian's Fashion-MNIST)")
    parser.add_argument("--steps_only", action="store_true", help="time the steps only, not the IMP run")
    parser.add_argument("--phases", action="store_true",
                        help="time the IMP run's parts: steps, first batches, BatchNorm re-estimation, test evaluations")
    parser.add_argument("--xla_flags", default="", help="XLA_FLAGS for the JAX worker (XLA CPU options)")
    parser.add_argument("--baseline_tree", default=None,
                        help="a checkout of an older revision: every worker also runs with its tfimp, paired")
    parser.add_argument("--worker", choices=list(FRONT_ENDS), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="default", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)), flush=True)
        return
    names = [n for n in args.front_ends.split(",") if n]
    unknown = [n for n in names if n not in FRONT_ENDS]
    if unknown:
        raise SystemExit(f"unknown front end(s) {unknown}; known: {list(FRONT_ENDS)}")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    variants = list(VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SystemExit(f"unknown variant(s) {unknown or args.variants!r}; known: {list(VARIANTS)} or 'all'")
    results = []
    for repeat in range(args.repeats):
        for name in names:
            for variant in variants:
                for tree in (None, args.baseline_tree) if args.baseline_tree else (None,):
                    figures = _run_worker(name, variant, args, tree)
                    if figures is not None:
                        results.append({**figures, "repeat": repeat})
    print(f"[speed] side by side (this machine, {os.cpu_count()} cores):\n{table(results)}", flush=True)
    if any("phases" in r for r in results):
        print(f"[speed] where the IMP run's wall goes (seconds):\n{phase_table(results)}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "speed.json"), "w", encoding="utf-8") as handle:
        json.dump({"authors_wall_s": AUTHORS_WALL_S, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
