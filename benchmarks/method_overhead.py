"""What each pruning-during-training method costs per training step, against plain (dense) training.

Every method runs with ``tfimp.DuringTraining`` (dense with ``tfimp.Dense``)
on the fidelity protocol's model H (``benchmarks/fidelity_fashion_mnist.py``)
and random 28x28 inputs, batch 128, in this one process and front end. A
run's step time is the median over its epochs after the first (the first
traces and compiles) of the epoch's wall time over its steps, so it counts
everything a method adds inside the epoch: mask updates between steps (GMP,
DPF, DNW), the reparametrised forward pass (DPF, STR, DNW, CS, DST), the
in-step top-k of the gradient rules (LC, GSM), DST's reset check after
every step. The runs are interleaved over
``--rounds`` rounds; each method's ratio is the median over rounds of its
step time over the dense run's in the same round.

    python benchmarks/method_overhead.py                                   # tf_keras
    KERAS_BACKEND=jax python benchmarks/method_overhead.py --keras 3       # Keras 3 on JAX

The table goes to stdout and, with every figure, to ``--out``/method_overhead.json
(``columns``/``rows``, the form the docs' tables read).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("dense", "gmp", "dpf", "str", "dnw", "lc", "gsm", "cs", "dst")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", type=int, choices=(2, 3), default=2, help="2: tf_keras; 3: Keras 3 (KERAS_BACKEND)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not timed)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per epoch")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", default="bench_out/method_overhead")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "dense" not in methods:
        raise SystemExit(f"--methods needs 'dense' (the baseline) and names of {list(METHODS)}; got {methods}")
    if args.epochs < 2:
        raise SystemExit(f"--epochs must be >= 2 (the first is not timed), got {args.epochs}")
    if args.keras == 3:
        import keras  # noqa: F401  (first: tfimp's names follow Keras 3)
    sys.path.insert(0, HERE)
    import numpy as np

    import fidelity_fashion_mnist as fidelity
    import tfimp

    keras = fidelity.process_keras()
    rng = np.random.default_rng(0)
    n = args.steps * 128
    x = rng.normal(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.walls = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.walls.append(time.perf_counter() - self._start)

    def step_ms(method: str) -> tuple[float, float]:
        keras.utils.set_random_seed(0)
        settings = dict(learning_rate=0.05, batch_size=128, chance_guard=False)
        runner = (tfimp.Dense(args.epochs, **settings) if method == "dense" else
                  tfimp.DuringTraining(method, args.sparsity, args.epochs, **settings))
        timer = EpochTimer()
        rows = runner.run(fidelity.model_h(), (x, y), verbose=0, callbacks=[timer])
        return 1000 * statistics.median(timer.walls[1:]) / args.steps, float(rows[-1]["sparsity"])

    times: dict[str, list[float]] = {m: [] for m in methods}
    reached: dict[str, float] = {}
    for round_index in range(args.rounds):
        for method in methods:
            ms, reached[method] = step_ms(method)
            times[method].append(ms)
            print(f"[overhead] round {round_index + 1}: {method} {ms:.2f} ms per step", flush=True)
    ratios = {m: statistics.median(t / d for t, d in zip(times[m], times["dense"])) for m in methods}
    front = f"Keras 3 + {keras.backend.backend()}" if args.keras == 3 else "tf_keras"
    columns = ["method", "step (median over rounds)", "/ dense, paired (median)", "sparsity reached"]
    rows = [[m, f"{statistics.median(times[m]):.2f} ms", f"{ratios[m]:.2f}x", f"{100 * reached[m]:.2f}%"]
            for m in methods]
    print(f"[overhead] {front}, model H, batch 128, {args.steps} steps x {args.epochs - 1} timed epochs, "
          f"{args.rounds} rounds:")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    os.makedirs(args.out, exist_ok=True)
    command = "python benchmarks/method_overhead.py " + " ".join(sys.argv[1:])
    with open(os.path.join(args.out, "method_overhead.json"), "w", encoding="utf-8") as handle:
        json.dump({"command": command, "front_end": front, "columns": columns, "rows": rows,
                   "step_ms": times, "ratios": ratios, "reached": reached}, handle, indent=2)


if __name__ == "__main__":
    main()
