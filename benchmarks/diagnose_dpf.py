"""What DPF does, epoch by epoch, in the equal-budget benchmark: a measured trace.

Runs DPF and global GMP with exactly the settings of
``benchmarks/bench_methods.py`` (small CNN, 10k Fashion-MNIST examples,
8 epochs, lr 0.02 stepped x0.1 at 50% and 75%, torch-style SGD) at one
target and prints, per epoch: the learning rate, the sparsity the forward
pass uses, training loss and accuracy (the masked forward pass, as trained),
test accuracy, the share of the alive weights that the epoch's mask updates
brought back from the pruned set (summed over the updates), and the largest
*jump* of the epoch: over layers and steps, the largest relative change
||K_t - K_{t-1}|| / ||K_{t-1}|| of the kernel K the forward pass uses (masked
weights), mask updates included, with its layer. The
same DPF with the mask recomputed every step shows what the 16-step interval
adds.

    python benchmarks/diagnose_dpf.py                       (95%, seeds 0 and 1; ~10 minutes on 2 CPU cores)
    python benchmarks/diagnose_dpf.py --target 0.98 --seeds 0
    KERAS_BACKEND=jax python benchmarks/diagnose_dpf.py --keras 3   (the same trace through the Keras 3 front end)
"""

from __future__ import annotations

import argparse

import sys

import numpy as np

import tfimp


def _keras3_process() -> bool:
    return tfimp.front_end.of_process() == tfimp.front_end.KERAS3


def _numpy(value) -> np.ndarray:
    if _keras3_process():
        return np.asarray(sys.modules["keras"].ops.convert_to_numpy(getattr(value, "value", value)))
    return np.asarray(tfimp.keras.backend.get_value(value))


def _prunable_kernels(model):
    """The masked weights of ``model`` on either front end (each with ``name``, ``weight`` and ``mask``)."""
    if _keras3_process():
        from tfimp.keras3 import masks  # noqa: PLC0415

        return masks.prunable_kernels(model)
    return tfimp.wrapping.prunable_kernels(model)


def _sync(model) -> None:
    """On JAX, Keras 3's fit holds the training state outside the variables: write it back before reading them."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def trace_callback(test):
    """A ``_Trace`` built on the process's Keras (its Callback class differs between the two)."""
    keras = tfimp.keras_of_process()

    class _Trace(keras.callbacks.Callback):
        """Per epoch: how many weights DPF's mask updates bring back, and how far the pruned weights grew."""

        def __init__(self, test):
            super().__init__()
            self.test = test
            self.rows: list[dict] = []
            self._previous = None
            self._effective: dict[str, np.ndarray] = {}

        def _masks(self) -> np.ndarray:
            return np.concatenate([_numpy(k.mask).ravel() for k in _prunable_kernels(self.model)])

        def on_epoch_begin(self, epoch, logs=None):
            self._revived, self._updates, self._growth, self._growth_layer = 0.0, 0, 0.0, ""

        def on_train_batch_end(self, batch, logs=None):
            _sync(self.model)
            mask = self._masks()
            if self._previous is not None and not np.array_equal(mask, self._previous):
                revived = np.logical_and(self._previous == 0, mask != 0).sum()  # pruned before, alive now
                self._revived += float(revived) / max(1, int((mask != 0).sum()))
                self._updates += 1
            self._previous = mask
            # Per layer: how far one step moved the kernel the forward pass uses (mask updates included).
            for kernel in _prunable_kernels(self.model):
                effective = _numpy(kernel.weight) * (_numpy(kernel.mask) != 0)
                before = self._effective.get(kernel.name)
                if before is not None and np.linalg.norm(before) > 0:
                    jump = float(np.linalg.norm(effective - before) / np.linalg.norm(before))
                    if jump > self._growth:
                        self._growth, self._growth_layer = jump, kernel.name
                self._effective[kernel.name] = effective

        def on_epoch_end(self, epoch, logs=None):
            _sync(self.model)
            mask = self._masks()
            # The forward pass as trained (DPF: masked dense weights), before any end-of-run finalisation.
            x, y = self.test if isinstance(self.test, tuple) else (self.test, None)
            _, test_accuracy = self.model.evaluate(x, y, verbose=0)
            learning_rate = self.model.optimizer.learning_rate
            if callable(learning_rate):  # tf_keras: the schedule; Keras 3 evaluates it itself
                learning_rate = learning_rate(self.model.optimizer.iterations)
            self.rows.append({"epoch": epoch + 1, "lr": float(_numpy(learning_rate)),
                              "level": 1.0 - float(mask.mean()), "train": float(logs["accuracy"]),
                              "loss": float(logs["loss"]), "test": float(test_accuracy), "revived": self._revived,
                              "updates": self._updates, "growth": self._growth, "growth_layer": self._growth_layer})

    return _Trace(test)


def trace(method: str, target: float, seed: int, epochs: int, frequency=None, train_subset: int = 10000,
          data_dir=None) -> list[dict]:
    keras = tfimp.keras_of_process()
    data, models = tfimp.data, tfimp.models  # the process's front end
    keras.backend.clear_session()  # every run starts from the same state, as in bench_methods.py
    keras.utils.set_random_seed(seed)
    # Loaded per run: a reshuffling dataset iterated again would continue its shuffle sequence.
    dataset = data.load("fashion_mnist", data_dir=data_dir, batch_size=128, seed=seed, train_subset=train_subset)
    spec = data.spec("fashion_mnist")
    model = models.build("small_cnn", num_classes=spec.num_classes, input_shape=spec.input_shape)
    recorder = trace_callback(dataset.test)
    tfimp.DuringTraining(method, target, epochs, learning_rate=0.02, weight_decay=5e-4, batch_size=128,
                         seed=seed, frequency=frequency,
                         chance_guard=False).run(model, dataset.train, verbose=0, callbacks=[recorder])
    return recorder.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train_subset", type=int, default=10000)
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST's idx files (default: Debian's)")
    parser.add_argument("--keras", type=int, default=2, choices=(2, 3),
                        help="front end: 2 = tf_keras (tfmot), 3 = Keras 3 on KERAS_BACKEND's backend")
    args = parser.parse_args()
    keras = tfimp.use_keras(args.keras)  # first: tfimp's names then follow it
    if args.keras == 3:
        print(f"[diagnose_dpf] Keras {keras.__version__}, backend {keras.backend.backend()}", flush=True)
    runs = [("DPF (reference: mask every 16 steps)", "dpf", None), ("DPF, mask every step", "dpf", 1),
            ("global GMP", "gmp", None)]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for title, method, frequency in runs:
            rows = trace(method, args.target, seed, args.epochs, frequency, args.train_subset, args.data_dir)
            print(f"\n{title} at {args.target:.0%}, seed {seed}")
            print(f"{'epoch':>5s} {'lr':>7s} {'sparsity':>9s} {'train loss':>11s} {'train acc':>10s} "
                  f"{'test acc':>9s} {'revived':>8s} {'updates':>8s} {'largest jump':>13s}  layer")
            for row in rows:
                print(f"{row['epoch']:>5d} {row['lr']:>7.4f} {row['level']:>9.4f} {row['loss']:>11.3f} "
                      f"{100 * row['train']:>10.2f} {100 * row['test']:>9.2f} {row['revived']:>8.3f} "
                      f"{row['updates']:>8d} {row['growth']:>13.2f}  {row['growth_layer']}")


if __name__ == "__main__":
    main()
