"""Why DPF collapses in the equal-budget benchmark: a per-step trace.

Trains the small CNN on 4,000 Fashion-MNIST examples with DPF (target 90%,
6 epochs, lr 0.02, mask update every 16 steps) and prints, per step, the
training loss, the largest masked and alive weight of the dense layer
``fc1`` and how many of its weights are masked, marking mask updates.
Then compares DPF and tfimp's policy wrapper with one fixed mask (one-shot
90% after one dense epoch), where DPF trains normally.

    python benchmarks/diagnose_dpf.py              (about 2 minutes on 2 CPU cores)
    python benchmarks/diagnose_dpf.py --variants   (also: ramp ending at 50%, cosine schedule,
                                                    no Nesterov, no weight decay, no momentum)
"""

from __future__ import annotations

import argparse

import numpy as np

import tfimp
from tfimp import data, keras, models, tfmot_glue


class _Trace(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        kernel = [k for k in tfmot_glue.prunable_kernels(self.model) if k.name == "fc1"][0]
        weight, mask = kernel.weight.numpy(), kernel.mask.numpy()
        masked = float(np.abs(weight[mask == 0]).max()) if (mask == 0).any() else 0.0
        self.rows.append((float(logs["loss"]), masked, float(np.abs(weight[mask != 0]).max()), int((mask == 0).sum())))


def _model():
    return models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))


def main(variants: bool = False) -> None:
    dataset = data.load("fashion_mnist", batch_size=128, train_subset=4000)
    keras.utils.set_random_seed(0)
    trace = _Trace()
    tfimp.DuringTraining("dpf", 0.9, 6, learning_rate=0.02, frequency=16).run(
        _model(), dataset.train, verbose=0, callbacks=[trace])
    print("step  loss   max|masked fc1|  max|alive fc1|  masked fc1 weights")
    previous = None
    for step, (loss, masked, alive, count) in enumerate(trace.rows):
        marker = "  <- mask update" if previous is not None and count != previous else ""
        print(f"{step:4d}  {loss:5.3f}  {masked:15.3f}  {alive:14.3f}  {count:18d}{marker}")
        previous = count

    print("\none fixed mask (one-shot 90% after one dense epoch), training accuracy per epoch:")
    for kind in ("policy", "dpf"):
        keras.utils.set_random_seed(0)
        factory = None if kind == "policy" else (
            lambda layer: tfmot_glue.ReparamPruneLowMagnitude(layer, reparam="dpf"))
        model = tfmot_glue.wrap(_model(), wrapper=factory)
        model.compile(keras.optimizers.SGD(0.02, momentum=0.9, nesterov=True, weight_decay=5e-4),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        model.fit(dataset.train, epochs=1, verbose=0)
        tfimp.prune(model, 0.9, allow_revival=kind == "dpf", zero_pruned=kind == "policy")
        history = model.fit(dataset.train, epochs=3, verbose=0)
        print(f"  {kind:6s} {[round(a, 3) for a in history.history['accuracy']]}")

    if variants:
        print("\nDPF variants (and GMP with the same ramp), training accuracy per epoch:")
        variants = {"ramp ends at 50%": dict(end_fraction=0.5),
                    "cosine schedule": dict(end_fraction=0.5, dense_schedule="cosine"),
                    "no Nesterov": dict(nesterov=False), "no weight decay": dict(weight_decay=0.0),
                    "no momentum, lr 0.1": dict(momentum=0.0, learning_rate=0.1)}
        variants["GMP (reference)"] = dict(end_fraction=0.5, method="gmp")
        for name, settings in variants.items():
            keras.utils.set_random_seed(0)
            accuracy = _EpochAccuracy()
            options = {"learning_rate": 0.02, "frequency": 16, **settings}
            method = options.pop("method", "dpf")
            tfimp.DuringTraining(method, 0.9, 6, **options).run(_model(), dataset.train, verbose=0,
                                                                 callbacks=[accuracy])
            print(f"  {name:20s} {accuracy.values}")


class _EpochAccuracy(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(round(float(logs["accuracy"]), 3))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", action="store_true", help="also run the DPF variants")
    main(variants=parser.parse_args().variants)
