"""Cost of tfimp's masks: one global mask update, and a training step.

Prints measured ratios against baselines run in the same process:

1. ``tfimp.prune(model, s, criterion="global")`` on a wrapped ResNet-50
   (25.5M kernel weights, built with random weights, nothing downloaded)
   against ``np.partition`` of the same 25.5M magnitudes. Goal: <= 2x.
2. Steady-state ``model.fit`` step time of a wrapped, 90%-pruned ResNet-20
   (CIFAR-sized, batch 128) against the same model unwrapped. Goal: <= 1.05x.

Run:  python benchmarks/bench_core.py            (about 3 minutes on 2 CPU cores)
      python benchmarks/bench_core.py --quick    (a smoke run of seconds)
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

import tfimp
from tfimp import keras, models, tf, wrapping


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak_bytes(fn) -> int:
    """Peak of Python-heap allocations (numpy's included, TensorFlow's not) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_global_prune(model: keras.Model, repeats: int) -> dict:
    wrapped = tfimp.wrap(model)
    kernels = wrapping.prunable_kernels(wrapped)
    total = sum(k.size for k in kernels)
    magnitudes = np.concatenate([np.abs(k.weight.numpy()).ravel() for k in kernels])
    kth = int(0.9 * magnitudes.size)
    partition = [_timed(lambda: np.partition(magnitudes, kth)) for _ in range(repeats + 1)][1:]

    first = _timed(lambda: tfimp.prune(wrapped, 0.5))  # dense -> 50%: the cold first call
    steps = np.linspace(0.6, 0.95, repeats)  # IMP-like increasing targets
    prune = [_timed(lambda s=s: tfimp.prune(wrapped, float(s))) for s in steps]
    assert tfimp.sparsity(wrapped) == round(0.95 * total) / total
    partition_peak = _peak_bytes(lambda: np.partition(magnitudes, kth))
    prune_peak = _peak_bytes(lambda: tfimp.prune(wrapped, 0.97))
    return {
        "partition_peak_mb": partition_peak / 2**20,
        "prune_peak_mb": prune_peak / 2**20,
        "weights": total,
        "partition_s": statistics.median(partition),
        "prune_first_s": first,
        "prune_s": statistics.median(prune),
        "ratio": statistics.median(prune) / statistics.median(partition),
    }


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def _step_time(model: keras.Model, data: tf.data.Dataset, steps: int, warmup: int) -> float:
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = _StepTimer()
    model.fit(data, steps_per_epoch=steps + warmup, epochs=1, verbose=0, callbacks=[timer])
    return statistics.median(timer.times[warmup:])


def bench_training_step(depth: int, batch: int, steps: int, warmup: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch * 4)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)

    dense_times, masked_times = [], []
    for _ in range(rounds):  # alternate, so drift hits both alike
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        dense_times.append(_step_time(models.cifar_resnet(depth), data, steps, warmup))
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        wrapped = tfimp.wrap(models.cifar_resnet(depth))
        tfimp.prune(wrapped, 0.9)
        masked_times.append(_step_time(wrapped, data, steps, warmup))
    return {
        "dense_step_s": min(dense_times),
        "all_dense_s": dense_times,
        "all_masked_s": masked_times,
        "masked_step_s": min(masked_times),
        "ratio": min(masked_times) / min(dense_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth of the step benchmark (56: ResNet-56)")
    args = parser.parse_args()

    if args.quick:
        model = models.cifar_resnet(20)
        prune = bench_global_prune(model, repeats=2)
        step = bench_training_step(depth=8, batch=16, steps=3, warmup=2, rounds=1)
    else:
        model = keras.applications.ResNet50(weights=None)
        prune = bench_global_prune(model, repeats=args.repeats)
        step = bench_training_step(depth=args.depth, batch=128, steps=args.steps, warmup=5, rounds=args.rounds)

    print(f"device: {tf.config.list_logical_devices()[-1].device_type}, TF {tf.__version__}")
    print(f"global mask update over {prune['weights']:,} weights")
    print(f"  np.partition (baseline)      {prune['partition_s'] * 1e3:8.1f} ms")
    print(f"  tfimp.prune, first call      {prune['prune_first_s'] * 1e3:8.1f} ms")
    print(f"  tfimp.prune, median          {prune['prune_s'] * 1e3:8.1f} ms   ratio {prune['ratio']:.2f}x (goal <= 2x)")
    print(f"  peak numpy memory: np.partition {prune['partition_peak_mb']:.0f} MB, "
          f"tfimp.prune {prune['prune_peak_mb']:.0f} MB (tracemalloc; TensorFlow's own buffers not counted)")
    print(f"training step, ResNet-{args.depth} CIFAR-sized" if not args.quick else "training step (quick)")
    print(f"  unwrapped (baseline)         {step['dense_step_s'] * 1e3:8.1f} ms")
    print(f"  wrapped, 90% pruned          {step['masked_step_s'] * 1e3:8.1f} ms   ratio {step['ratio']:.3f}x (goal <= 1.05x)")
    dense_ms = [round(t * 1e3, 1) for t in step['all_dense_s']]
    masked_ms = [round(t * 1e3, 1) for t in step['all_masked_s']]
    print(f"  per round (ms): unwrapped {dense_ms}, wrapped {masked_ms}")


if __name__ == "__main__":
    main()
