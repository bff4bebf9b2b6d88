"""Cost of the IMP machinery per training step, against plain ``fit`` in the same process.

The same wrapped, 90%-pruned model is trained, interleaved round by round:

  (a) plain ``fit`` with a constant learning rate (the baseline);
  (b) ``fit`` with the IMP callback in its retraining phase (in-graph phase
      schedule, SLR);
  (c) (b) with ``steps_per_execution=8``;
  (d) (a) with ``steps_per_execution=8`` (what (c) is compared with on its own);
  (e) plain ``fit`` with a Keras per-step schedule (cosine decay): what any
      schedule that changes every step costs, IMP or not.

Each run's first two epochs are not timed (tracing; the IMP callback's
pruning epoch); the step time of a run is the fastest of its timed epochs'
epoch time / steps (on a shared machine other work only ever adds time, so
the minimum is the least noisy estimate of what the step itself costs), and
per-epoch work (the callback's logs and checks) is counted in it. Ratios are per round, against that round's (a)
(or (d) for (c)/(d)),
and the median over rounds is reported. Goal: (b)/(a) <= 1.02.

Two models: a small MLP whose ~1 ms steps let per-step overheads show, and
ResNet-20 (CIFAR-sized).

Run:  python benchmarks/bench_callback.py              (about 5 minutes on 2 CPU cores)
      python benchmarks/bench_callback.py --quick      (a smoke run of seconds)
      python benchmarks/bench_callback.py --models mlp --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import tfimp
from tfimp import keras, models, tf

CASES = ("a_plain", "b_imp", "c_imp_spe8", "d_plain_spe8", "e_plain_cosine")


class _EpochStart(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()


class _EpochEnd(keras.callbacks.Callback):
    """Last in the list: an epoch's time includes every other callback's epoch hooks."""

    def __init__(self, start: _EpochStart):
        super().__init__()
        self.start_clock, self.times = start, []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start_clock.start)


def mlp() -> keras.Model:
    inputs = keras.Input((64,))
    x = keras.layers.Dense(256, activation="relu")(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="mlp")


def _data(input_shape, batch: int) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 8, *input_shape)).astype("float32")
    y = rng.integers(0, 10, size=batch * 8)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)


def step_time(model: keras.Model, data, case: str, steps: int, epochs: int) -> float:
    """Seconds per step of one run of ``case`` (its fastest timed epoch)."""
    imp = case.startswith(("b_", "c_"))
    rate = keras.optimizers.schedules.CosineDecay(0.05, steps * epochs) if case == "e_plain_cosine" else 0.05
    model.compile(tfimp.optimizers.make("torch_sgd", rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=8 if case.endswith("spe8") else 1)
    start = _EpochStart()
    end = _EpochEnd(start)
    callbacks: list = [start]
    if imp:
        plan = tfimp.Plan(target_sparsity=0.9, cycles=1, dense_epochs=1, retrain_epochs=epochs - 1,
                          retrain_schedule="slr", recalibrate_bn=False)
        callbacks.append(tfimp.callbacks.IMP(plan, steps_per_epoch=steps, verbose=0))
    callbacks.append(end)
    model.fit(data, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    return min(t / steps for t in end.times[2:])


def bench(name: str, build, input_shape, batch: int, steps: int, epochs: int, rounds: int) -> dict:
    keras.utils.set_random_seed(0)
    model = tfimp.wrap(build())
    tfimp.prune(model, 0.9)  # (a) and (d) train the pruned model the callback makes in (b) and (c)
    data = _data(input_shape, batch)
    times = {case: [] for case in CASES}
    for round_index in range(rounds):
        order = CASES[round_index % len(CASES):] + CASES[:round_index % len(CASES)]  # no case always first
        for case in order:
            times[case].append(step_time(model, data, case, steps, epochs))
    ratios = {
        "b_imp/a_plain": [b / a for a, b in zip(times["a_plain"], times["b_imp"])],
        "c_imp_spe8/a_plain": [c / a for a, c in zip(times["a_plain"], times["c_imp_spe8"])],
        "c_imp_spe8/d_plain_spe8": [c / d for d, c in zip(times["d_plain_spe8"], times["c_imp_spe8"])],
        "b_imp/e_plain_cosine": [b / e for e, b in zip(times["e_plain_cosine"], times["b_imp"])],
        "e_plain_cosine/a_plain": [e / a for a, e in zip(times["a_plain"], times["e_plain_cosine"])],
    }
    assert abs(tfimp.sparsity(model) - 0.9) < 1e-3
    return {"model": name, "batch": batch, "steps_per_epoch": steps, "rounds": rounds,
            "step_ms": {case: statistics.median(t) * 1e3 for case, t in times.items()},
            "all_step_ms": {case: [round(x * 1e3, 3) for x in t] for case, t in times.items()},
            "ratio_median": {k: statistics.median(v) for k, v in ratios.items()},
            "all_ratios": {k: [round(x, 4) for x in v] for k, v in ratios.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--models", default="mlp,resnet20", help="comma-separated: mlp, resnet20")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    settings = {  # (builder, input shape, batch, steps per epoch, epochs)
        "mlp": (mlp, (64,), 32, 200, 8),
        "resnet20": (lambda: models.cifar_resnet(20), (32, 32, 3), 32, 25, 5),
    }
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in settings]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {list(settings)}")
    results = []
    for name in names:
        build, shape, batch, steps, epochs = settings[name]
        if args.quick:
            steps, epochs, args.rounds = 16, 4, 1
        results.append(bench(name, build, shape, batch, steps, epochs, args.rounds))

    device = tf.config.list_logical_devices()[-1].device_type
    print(f"device: {device}, TF {tf.__version__}; median of {args.rounds} interleaved round(s)")
    for r in results:
        ms, ratio = r["step_ms"], r["ratio_median"]
        print(f"{r['model']} (batch {r['batch']}, {r['steps_per_epoch']} steps per epoch), ms per step:")
        print(f"  (a) plain fit, constant rate        {ms['a_plain']:8.3f}")
        print(f"  (b) IMP callback, retraining        {ms['b_imp']:8.3f}   ratio (b)/(a) "
              f"{ratio['b_imp/a_plain']:.3f}x (goal <= 1.02x)")
        print(f"  (c) IMP callback, steps_per_exec 8  {ms['c_imp_spe8']:8.3f}   ratio (c)/(a) "
              f"{ratio['c_imp_spe8/a_plain']:.3f}x, (c)/(d) {ratio['c_imp_spe8/d_plain_spe8']:.3f}x")
        print(f"  (d) plain fit, steps_per_exec 8     {ms['d_plain_spe8']:8.3f}")
        print(f"  (e) plain fit, Keras cosine decay   {ms['e_plain_cosine']:8.3f}   ratio (e)/(a) "
              f"{ratio['e_plain_cosine/a_plain']:.3f}x, (b)/(e) {ratio['b_imp/e_plain_cosine']:.3f}x")
        print(f"  per round (b)/(a): {r['all_ratios']['b_imp/a_plain']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": device, "tf": tf.__version__, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
