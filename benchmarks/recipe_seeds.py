"""Does the default recipe train on every seed? The default config's model and optimizer, many seeds, two datasets.

The default job (``configs/fashion_mnist_imp.py``) trains ``small_cnn`` with
TorchSGD at 0.02, Nesterov 0.9, weight decay 5e-4, batch 128. Before fc1 had
BatchNorm, seed 0 on a held-out 28x28 dataset spiked in the first steps and
killed fc1's ReLU units, and the run stayed at chance. This script trains the
dense phase's first epoch (or ``--steps``) for each seed, on Fashion-MNIST
and on a generated 28x28 grey dataset (class prototypes plus noise), for the
current model and for the model as it was (``--variants``), and prints per
seed the loss after 2 steps, the final training loss and accuracy, the share
of fc1's ReLU units that are dead (zero on a whole batch), and whether the
run is at chance level (loss within 0.2% of ln 10, as ``tfimp.guards``).

    python benchmarks/recipe_seeds.py --seeds 8 --out bench_out/recipe_seeds

About 6 minutes on 2 CPU cores with the defaults. ``--train_examples`` and
``--steps`` shrink it (the tests run it on a few hundred examples).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import tfimp  # noqa: E402
from tfimp import keras  # noqa: E402

CLASSES = 10


VARIANTS = {
    "current": lambda: tfimp.models.build("small_cnn", num_classes=CLASSES, input_shape=(28, 28, 1)),
    "before_fc1_bn": lambda: tfimp.models.small_cnn(num_classes=CLASSES, fc1_batch_norm=False),
}


def generated_dataset(examples: int, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """28x28 grey images: one smooth random prototype per class, shifted, scaled and with noise (held out: no download)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, size=(CLASSES, 7, 7))
    prototypes = np.kron(coarse, np.ones((4, 4)))  # 28x28, blocky
    labels = rng.integers(0, CLASSES, size=examples)
    shifts = rng.integers(-2, 3, size=(examples, 2))
    images = np.stack([np.roll(prototypes[label], tuple(shift), axis=(0, 1)) for label, shift in zip(labels, shifts)])
    images = images * rng.uniform(0.6, 1.4, size=(examples, 1, 1)) + rng.normal(0, 0.35, size=images.shape)
    images = (images - images.mean()) / images.std()
    return images[..., None].astype("float32"), labels.astype("int64")


def fashion_mnist(examples: int, data_dir: str = "") -> tuple[np.ndarray, np.ndarray]:
    directories = [data_dir] if data_dir else [tfimp.data.DEBIAN_FASHION_MNIST]
    for directory in directories:
        images = os.path.join(directory, "train-images-idx3-ubyte.gz")
        labels = os.path.join(directory, "train-labels-idx1-ubyte.gz")
        if os.path.exists(images):
            x = tfimp.data.read_idx(images)[:examples].astype("float32") / 255.0
            y = tfimp.data.read_idx(labels)[:examples].astype("int64")
            return ((x - x.mean()) / x.std())[..., None], y
    raise FileNotFoundError(f"Fashion-MNIST idx files not found in {directories}; "
                            "apt-get install dataset-fashion-mnist, or pass --data_dir")


class _Probe(keras.callbacks.Callback):
    """The loss of the first batches, and fc1's dead units on a fixed batch at the end."""

    def __init__(self, batch: np.ndarray):
        super().__init__()
        self.batch = batch
        self.first_losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        if len(self.first_losses) < 2:
            self.first_losses.append(float(logs["loss"]))  # the running mean Keras reports

    def dead_fc1_share(self) -> float:
        names = [layer.name for layer in self.model.layers]
        # fc1's ReLU: the layer after bn_fc1 in the current model, fc1's own activation in the old one.
        relu = self.model.layers[names.index("bn_fc1") + 1] if "bn_fc1" in names else self.model.get_layer("fc1")
        activations = keras.Model(self.model.inputs, relu.output)(self.batch, training=False).numpy()
        return float(np.mean(np.all(activations <= 0, axis=0)))


def run_one(variant: str, x: np.ndarray, y: np.ndarray, seed: int, steps: int) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = VARIANTS[variant]()
    model.compile(tfimp.optimizers.TorchSGD(0.02, momentum=0.9, nesterov=True, weight_decay=5e-4),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    probe = _Probe(x[:512])
    order = np.random.default_rng(seed).permutation(len(x))
    start = time.perf_counter()
    history = model.fit(x[order], y[order], batch_size=128, epochs=1, steps_per_epoch=min(steps, len(x) // 128),
                        callbacks=[probe], verbose=0)
    loss, accuracy = float(history.history["loss"][-1]), float(history.history["accuracy"][-1])
    chance = math.log(CLASSES)
    return {"variant": variant, "seed": seed, "loss_step2": probe.first_losses[-1], "final_loss": loss,
            "final_accuracy": accuracy, "dead_fc1_share": probe.dead_fc1_share(),
            "at_chance": abs(loss - chance) <= tfimp.guards.CHANCE_TOLERANCE * chance,
            "wall_s": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--datasets", default="fashion_mnist,generated")
    parser.add_argument("--variants", default="current,before_fc1_bn")
    parser.add_argument("--train_examples", type=int, default=30000)
    parser.add_argument("--steps", type=int, default=120, help="training steps per run (batch 128)")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--out", default="bench_out/recipe_seeds")
    args = parser.parse_args(argv)
    loaders = {"fashion_mnist": lambda: fashion_mnist(args.train_examples, args.data_dir),
               "generated": lambda: generated_dataset(args.train_examples)}
    results = []
    for dataset in args.datasets.split(","):
        x, y = loaders[dataset]()
        for variant in args.variants.split(","):
            for seed in range(args.seeds):
                row = {"dataset": dataset, **run_one(variant, x, y, seed, args.steps)}
                results.append(row)
                print(f"{dataset:14s} {variant:14s} seed {seed}: loss@2 {row['loss_step2']:.3f}  final loss "
                      f"{row['final_loss']:.4f}  acc {row['final_accuracy']:.2%}  dead fc1 {row['dead_fc1_share']:.0%}"
                      f"{'  AT CHANCE' if row['at_chance'] else ''}", flush=True)
    print("\nruns at chance level (of seeds):")
    for dataset in args.datasets.split(","):
        for variant in args.variants.split(","):
            rows = [r for r in results if r["dataset"] == dataset and r["variant"] == variant]
            print(f"  {dataset:14s} {variant:14s} {sum(r['at_chance'] for r in rows)} of {len(rows)}; "
                  f"lowest final accuracy {min(r['final_accuracy'] for r in rows):.2%}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "recipe_seeds.json"), "w") as handle:
        json.dump({"args": vars(args), "runs": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
