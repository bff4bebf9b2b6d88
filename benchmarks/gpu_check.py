"""IMP on a GPU machine that has JAX but no TensorFlow (and no package index): accuracy, wall time, step cost.

Two checks, on Keras 3 with the JAX backend (TensorFlow is never imported):

1. The shared fidelity protocol's IMP + SLR at 98% (``fidelity_fashion_mnist.py``:
   model H, full Fashion-MNIST, TorchSGD with Nesterov, 6 dense epochs then
   3 cycles x 2 epochs, global magnitude, BatchNorm re-estimated): test
   accuracy beside the authors' 88.49 / 88.54, and the wall time.
2. The CIFAR-sized ResNet-56 training step at batch 128, unwrapped against
   wrapped and pruned to 90%: milliseconds per step (median of repeats,
   compilation excluded) and their ratio.

Prints both with the device JAX ran on and writes ``gpu_check.json`` into
``--out``. ``--small`` runs the same code at sizes a CPU finishes in a
minute or two (1,024 training and 2,000 test images, 1 dense epoch and 2 cycles of 1, ResNet-20 at
batch 16); the tests use it.

On the GPU machine, with the wheels ``benchmarks/gpu_wheels.sh`` made here
and carried in ``.whl/`` (keras, namex, optree, tfimp; Fashion-MNIST's idx
files in ``.whl/fashion-mnist``):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
        PYTHONPATH=/tmp/site KERAS_BACKEND=jax python3 benchmarks/gpu_check.py --data_dir .whl/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import keras  # noqa: E402  (first: tfimp's names then follow Keras 3)
import numpy as np  # noqa: E402

import tfimp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fidelity_fashion_mnist as fidelity  # noqa: E402

#: The authors' PyTorch test accuracy (%) of IMP + SLR at 98% on the fidelity protocol, seeds 0 and 1.
AUTHORS_SLR_98 = fidelity.AUTHORS[("imp_slr", 0.98)]
FULL = {"train_subset": 0, "test_subset": 0, "dense_epochs": fidelity.DENSE_EPOCHS, "cycles": fidelity.CYCLES,
        "retrain_epochs": fidelity.RETRAIN_EPOCHS, "resnet": "resnet56", "step_batch": 128, "steps": 100,
        "repeats": 3}
SMALL = {"train_subset": 1024, "test_subset": 2000, "dense_epochs": 1, "cycles": 2, "retrain_epochs": 1, "resnet": "resnet20",
         "step_batch": 16, "steps": 3, "repeats": 2}


def device_description() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {getattr(device, 'device_kind', device)} (jax {jax.__version__}, keras {keras.__version__})"


def imp_slr_98(sizes: dict, data_dir: str | None, seed: int = 0) -> dict:
    """The fidelity protocol's dense training then IMP + SLR to 98%; test accuracy and wall times."""
    train, test = fidelity.load(data_dir, sizes["train_subset"] or None)
    if sizes["test_subset"]:
        test = (test[0][:sizes["test_subset"]], test[1][:sizes["test_subset"]])
    settings = dict(learning_rate=0.1, dense_schedule="step", momentum=0.9, weight_decay=5e-4, optimizer="torch_sgd",
                    batch_size=fidelity.BATCH, seed=seed)
    keras.utils.set_random_seed(seed)
    model = fidelity.model_h()
    start = time.perf_counter()
    dense_rows = tfimp.Dense(sizes["dense_epochs"], **settings).run(model, train, test=test, verbose=0)
    dense_wall = time.perf_counter() - start
    imp = tfimp.IMP(target_sparsity=0.98, cycles=sizes["cycles"], dense_epochs=0,
                    original_epochs=sizes["dense_epochs"], retrain_epochs=sizes["retrain_epochs"],
                    retrain_schedule="slr", criterion="global", recalibrate_bn=True,
                    optimizer_state="fresh_then_keep", **settings)
    start = time.perf_counter()
    rows = imp.run(model, train, test=test, verbose=0)
    imp_wall = time.perf_counter() - start
    kernels = tfimp.keras3.masks.prunable_kernels(imp.model)
    return {"dense_test_accuracy": 100 * dense_rows[-1]["test_accuracy"],
            "test_accuracy": 100 * rows[-1]["test_accuracy"], "sparsity": rows[-1]["sparsity"],
            "zeros": sum(int(np.sum(keras.ops.convert_to_numpy(k.mask.value) == 0)) for k in kernels),
            "prunable": sum(int(np.prod(k.weight.shape)) for k in kernels),
            "dense_wall_s": dense_wall, "imp_wall_s": imp_wall, "wall_s": dense_wall + imp_wall,
            "training_images": len(train[0]), "rows": rows}


def _ms_per_step(model, x, y, steps: int) -> float:
    """Wall milliseconds per training step over ``steps`` steps of a compiled ``fit`` (compiled beforehand)."""
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=len(x) // steps, epochs=1, verbose=0, shuffle=False)
    float(history.history["loss"][-1])  # the last step has finished
    return 1000.0 * (time.perf_counter() - start) / steps


def step_cost(sizes: dict, seed: int = 0) -> dict:
    """ResNet training step, unwrapped against wrapped at 90%: ms per step (median over repeats) and the ratio."""
    batch, steps = sizes["step_batch"], sizes["steps"]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch * steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, batch * steps)
    models = {}
    for variant in ("unwrapped", "wrapped"):
        keras.utils.set_random_seed(seed)
        model = tfimp.models.build(sizes["resnet"], num_classes=10, input_shape=(32, 32, 3))
        if variant == "wrapped":
            model = tfimp.wrap(model, verbose=0)
            tfimp.prune(model, 0.9)
        model.compile(tfimp.optimizers.TorchSGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # compiles the step
        models[variant] = model
    timings = {"unwrapped": [], "wrapped": []}
    for _ in range(sizes["repeats"]):  # alternated, so drift in clocks hits both alike
        for variant, model in models.items():
            timings[variant].append(_ms_per_step(model, x, y, steps))
    medians = {variant: statistics.median(values) for variant, values in timings.items()}
    return {"model": sizes["resnet"], "batch": batch, "steps": steps, "ms_per_step": medians, "timings_ms": timings,
            "ratio": medians["wrapped"] / medians["unwrapped"],
            "sparsity": tfimp.sparsity(models["wrapped"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CPU-sized run (what the tests use)")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST idx files (default: Debian's package)")
    parser.add_argument("--out", default="bench_out/gpu_check")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        raise SystemExit(f"gpu_check runs on Keras 3's JAX backend; KERAS_BACKEND is {keras.backend.backend()!r}")
    sizes = SMALL if args.small else FULL
    device = device_description()
    print(f"[gpu_check] {device}; {'small' if args.small else 'full'} sizes {sizes}", flush=True)
    accuracy = imp_slr_98(sizes, args.data_dir)
    print(f"[gpu_check] IMP + SLR 98%: test accuracy {accuracy['test_accuracy']:.2f}% (authors "
          f"{AUTHORS_SLR_98[0]:.2f} / {AUTHORS_SLR_98[1]:.2f}), sparsity {accuracy['sparsity']:.4f}, "
          f"wall {accuracy['wall_s']:.0f} s (dense {accuracy['dense_wall_s']:.0f} s)", flush=True)
    cost = step_cost(sizes)
    print(f"[gpu_check] {cost['model']} step at batch {cost['batch']}: unwrapped {cost['ms_per_step']['unwrapped']:.2f} "
          f"ms, wrapped at 90% {cost['ms_per_step']['wrapped']:.2f} ms, ratio {cost['ratio']:.3f}", flush=True)
    report = {"device": device, "small": args.small, "sizes": sizes, "imp_slr_98": accuracy, "step_cost": cost,
              "authors_imp_slr_98": AUTHORS_SLR_98, "tensorflow_imported": "tensorflow" in sys.modules}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)
    return report


if __name__ == "__main__":
    main()
