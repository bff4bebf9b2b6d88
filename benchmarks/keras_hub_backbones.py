"""keras-hub backbones under IMP on Keras 3: coverage and exactness per backbone.

Builds keras-hub tasks from configs alone (no preset, nothing downloaded: a
ResNet image classifier, a ViT image classifier, a BERT text classifier and
a Gemma causal LM), wraps each with ``tfimp.wrap``, runs IMP with the
``tfimp.callbacks.IMP`` callback in its own ``fit`` for a few steps on
random inputs, strips it, saves the stripped model as ``.keras`` and loads it
back. Per backbone it reports:

- the share of trainable parameters under masks (``tfimp.coverage.describe``)
  and the weight matrices left dense;
- exactness: the zeros under the masks against ``round(target × prunable)``
  (global magnitude), and the zeros in the stripped model's weights;
- the class ``tfimp.strip`` gives back (the keras-hub class, rebuilt from its
  config) and the max |difference| of its predictions against the wrapped
  model's, and of the reloaded file's against the stripped model's.

``--size small`` (the table in docs/results/coverage.md) uses the published shapes of ResNet-18,
ViT-Tiny/16 and BERT-tiny and a Gemma-style decoder with a 32k vocabulary;
``--size tiny`` is what the tests run.

    KERAS_BACKEND=jax python benchmarks/keras_hub_backbones.py --size small --out bench_out/keras_hub
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Callable

import keras
import numpy as np

import tfimp

#: Each builder takes (size, rng, examples) and returns (task model, inputs, labels, loss).
BACKBONES = ("resnet", "vit", "bert", "gemma")
SIZES = ("tiny", "small")


def _images(rng, n: int, shape) -> np.ndarray:
    return rng.normal(size=(n,) + tuple(shape)).astype("float32")


def resnet(size: str, rng, n: int):
    import keras_hub

    small = size == "small"  # ResNet-18; keras-hub wants 64 filters in the first stage
    shape = (64, 64, 3) if small else (16, 16, 3)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7 if small else 3],
        stackwise_num_filters=[64, 128, 256, 512] if small else [64, 64],
        stackwise_num_blocks=[2, 2, 2, 2] if small else [1, 1], stackwise_num_strides=[1, 2, 2, 2] if small else [1, 2],
        block_type="basic_block", use_pre_activation=False, image_shape=shape)
    task = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10, preprocessor=None)
    return task, _images(rng, n, shape), rng.integers(0, 10, n), _classification_loss()


def vit(size: str, rng, n: int):
    import keras_hub

    small = size == "small"  # ViT-Tiny/16
    shape = (224, 224, 3) if small else (16, 16, 3)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=shape, patch_size=16 if small else 4,
        num_layers=12 if small else 2, num_heads=3 if small else 2, hidden_dim=192 if small else 32,
        mlp_dim=768 if small else 64)
    task = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=10, preprocessor=None)
    return task, _images(rng, n, shape), rng.integers(0, 10, n), _classification_loss()


def bert(size: str, rng, n: int):
    import keras_hub

    small = size == "small"  # BERT-tiny (2 layers, 128 wide)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522 if small else 100, num_layers=2, num_heads=2, hidden_dim=128 if small else 32,
        intermediate_dim=512 if small else 64, max_sequence_length=512 if small else 16)
    task = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    length = 32 if small else 16
    inputs = {"token_ids": rng.integers(0, backbone.vocabulary_size, (n, length)),
              "segment_ids": np.zeros((n, length), "int32"), "padding_mask": np.ones((n, length), "int32")}
    return task, inputs, rng.integers(0, 2, n), _classification_loss()


def gemma(size: str, rng, n: int):
    import keras_hub

    small = size == "small"  # Gemma's layout (multi-query attention, gated MLP, tied embedding), smaller
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=32000 if small else 100, num_layers=4 if small else 2, num_query_heads=4 if small else 2,
        num_key_value_heads=1, hidden_dim=256 if small else 32, intermediate_dim=1024 if small else 64,
        head_dim=64 if small else 16)
    task = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    length = 32 if small else 16
    tokens = rng.integers(0, backbone.vocabulary_size, (n, length))
    inputs = {"token_ids": tokens, "padding_mask": np.ones((n, length), "int32")}
    return task, inputs, np.roll(tokens, -1, axis=1), _classification_loss()


def _classification_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


BUILDERS: dict[str, Callable] = {"resnet": resnet, "vit": vit, "bert": bert, "gemma": gemma}


def _max_difference(first, second) -> float:
    return float(np.max(np.abs(np.asarray(first, dtype="float64") - np.asarray(second, dtype="float64"))))


def measure(name: str, *, size: str = "tiny", target: float = 0.9, cycles: int = 2, examples: int = 16,
            batch_size: int = 4, seed: int = 0, out: str | None = None) -> dict:
    """Builds, wraps, prunes by IMP, strips, saves and reloads backbone ``name``; returns what it measured.

    Also returns (under ``"models"``, not for JSON) the wrapped, stripped and
    reloaded models and the inputs, so callers can check the figures.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown keras-hub backbone {name!r}; known: {list(BUILDERS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {list(SIZES)}")
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    task, inputs, labels, loss = BUILDERS[name](size, np.random.default_rng(seed), examples)
    wrapped = tfimp.wrap(task, verbose=0)
    coverage = tfimp.coverage.describe(wrapped)
    plan = tfimp.Plan(target_sparsity=target, cycles=cycles, dense_epochs=1, retrain_epochs=1)
    wrapped.compile(keras.optimizers.SGD(0.01, momentum=0.9), loss)
    # Random labels: the loss stays at chance, which the callback would (rightly) stop on.
    imp = tfimp.callbacks.IMP(plan, schedule=tfimp.lr.StepDecay(0.01, [10 ** 6]), chance_guard=False, verbose=0)
    wrapped.fit(inputs, labels, batch_size=batch_size, epochs=plan.total_epochs, callbacks=[imp], verbose=0)
    kernels = tfimp.keras3.masks.prunable_kernels(wrapped)
    prunable = sum(int(np.prod(k.weight.shape)) for k in kernels)
    zeros_under_masks = sum(int(np.sum(keras.ops.convert_to_numpy(k.mask.value) == 0)) for k in kernels)
    stripped = tfimp.strip(wrapped)
    stripped_zeros = sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0))
                         for _, v in tfimp.keras3.masks.covered_weights(stripped))
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(out or scratch, f"{name}_{size}_stripped.keras")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stripped.save(path)
        reloaded = keras.saving.load_model(path, compile=False)
    probe = {k: v[:batch_size] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[:batch_size]
    predictions = [np.asarray(m.predict(probe, verbose=0)) for m in (wrapped, stripped, reloaded)]
    return {
        "backbone": name, "size": size, "task": type(task).__name__, "target": target, "cycles": cycles,
        "parameters": coverage.total_parameters, "prunable": prunable, "prunable_share": coverage.prunable_share,
        "dense_matrices": dict(coverage.dense_matrices_by_type),
        "zeros_under_masks": zeros_under_masks, "exact_zeros": int(round(target * prunable)),
        "stripped_zeros": stripped_zeros, "sparsity": tfimp.sparsity(wrapped),
        "stripped_class": type(stripped).__name__, "reloaded_class": type(reloaded).__name__,
        "max_diff_stripped": _max_difference(predictions[1], predictions[0]),
        "max_diff_reloaded": _max_difference(predictions[2], predictions[1]),
        "rows": imp.rows, "wall_s": time.perf_counter() - start,
        "models": {"task": task, "wrapped": wrapped, "stripped": stripped, "reloaded": reloaded, "inputs": probe},
    }


def table(results: list[dict]) -> str:
    lines = [f"{'backbone':9s} {'task':20s} {'params':>11s} {'covered':>8s} {'zeros/exact':>23s} "
             f"{'strip→class':>20s} {'|Δ| strip':>9s} {'|Δ| load':>9s}"]
    for r in results:
        lines.append(f"{r['backbone']:9s} {r['task']:20s} {r['parameters']:>11,d} {r['prunable_share']:>8.1%} "
                     f"{r['zeros_under_masks']:>11,d}/{r['exact_zeros']:<11,d} {r['stripped_class']:>20s} "
                     f"{r['max_diff_stripped']:>9.1e} {r['max_diff_reloaded']:>9.1e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--size", default="small", choices=SIZES)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--examples", type=int, default=8, help="random examples per epoch (a few steps)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--out", default="bench_out/keras_hub")
    args = parser.parse_args(argv)
    results = []
    for name in args.backbones.split(","):
        result = measure(name, size=args.size, target=args.target, cycles=args.cycles, examples=args.examples,
                         batch_size=args.batch_size, out=args.out)
        result.pop("models")
        results.append(result)
        print(f"[keras_hub] {name}: {result['prunable_share']:.1%} covered, zeros {result['zeros_under_masks']:,} "
              f"(exact {result['exact_zeros']:,}), strip -> {result['stripped_class']} ({result['wall_s']:.0f} s)",
              flush=True)
    print(f"keras {keras.__version__} on {keras.backend.backend()}\n" + table(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "keras_hub.json"), "w", encoding="utf-8") as handle:
        json.dump({"keras": keras.__version__, "backend": keras.backend.backend(), "results": results}, handle,
                  indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
