"""LC, GSM, DNW, CS and DST: tfimp against an independent PyTorch implementation, on one small shared protocol.

The PyTorch side is this file's own code, written from the methods'
definitions and the authors' training (their code is ZIB-IOL/BIMP,
``strategies/scratchStrategies.py``; nothing is copied from it). Both sides
train the same network from the same initial weights on the same batches:

- a 784-300-100-10 ReLU MLP, every kernel prunable (biases never);
- Fashion-MNIST: the first ``--train_subset`` training images (10,000), the
  full test set, pixels scaled to [0, 1] (the authors' MNIST transform);
- batch 128, each epoch's order ``numpy.random.default_rng(epoch_seed(seed,
  epoch)).permutation(n)`` (the order of ``tfimp.keras3.data.EpochOrdered``;
  the tf_keras side is fed the same batches explicitly);
- ``torch.optim.SGD(lr, momentum=0.9, nesterov=True, weight_decay=5e-4)`` on
  every parameter (tfimp: ``optimizer="torch_sgd"``, its default), the rate
  linear from 0.1 to 0 per step (the authors' ``(Linear, 0.1)``; tfimp:
  ``dense_schedule="linear"``), 5 epochs, target sparsity 0.9;
- the initial weights are the tf_keras model's (Glorot-uniform kernels, zero
  biases, from ``keras.utils.set_random_seed(seed)``), written by the tf_keras
  side and read by the others (Dense kernels transposed for PyTorch).

Per method and implementation: test accuracy, overall and per-layer
sparsity, and the final masks; the comparison adds the differences to the
PyTorch run of the same seed and the overlap of the kept weights
(|A and B| / |A or B|).

    python benchmarks/torch_methods_reference.py --torch_path /tmp/torchlib            # tf_keras and PyTorch
    python benchmarks/torch_methods_reference.py --torch_path /tmp/torchlib --sides tf_keras,torch,torch64,torch_l2,jax

``torch64`` is the PyTorch side in float64: how far float32 rounding alone
moves the protocol's results (its noise floor). ``torch_l2`` runs CS and DST
as the authors' later code does, with ``0.5 wd |w|^2`` added to the loss on
top of the optimizer's coupled decay (the others, and tfimp, have the
optimizer's decay only). ``jax`` is tfimp's Keras 3
front end on JAX (``--train_subset 2560 --epochs 1`` gives a 20-step check of
the update rules, short enough that rounding has not yet been amplified).

Each side runs in its own process (``--side``); the driver merges their JSON
into ``--out``/fidelity_methods.json (``--docs_json NAME`` also writes it
to docs/NAME). CS and DST run on the tfimp side only where
``tfimp.core.during_training.RULES`` has them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np
import provenance  # benchmarks/ is on the path of a script run from it

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tfimp.core import datasets as _datasets  # noqa: E402  (framework-free)
from tfimp.core.gradient_rules import kept_count  # noqa: E402

METHODS = ("lc", "gsm", "dnw", "cs", "dst")
#: The network: (layer name, inputs, outputs), ReLU between.
LAYERS = (("fc1", 784, 300), ("fc2", 300, 100), ("fc3", 100, 10))
#: The shared protocol (see the module docstring).
PROTOCOL = dict(train_subset=10_000, batch_size=128, epochs=5, learning_rate=0.1, schedule="linear to 0 per step",
                momentum=0.9, nesterov=True, weight_decay=5e-4, target_sparsity=0.9)
#: CS's and DST's hyper-parameters on this protocol, under tfimp's runner keyword names. beta_final 200 is the
#: default of the authors' first commit (and tfimp's); s_init, lambda and alpha were chosen on the PyTorch side
#: (seed 0, float32) to land near 0.9 here: CS with s_init 0 and lambda 5e-6 reached 90.9% (lambda 3e-6: 86.9%;
#: from s_init -0.1, the authors' debug value, every lambda from 1e-5 up pruned over 99.7% in this budget, measured
#: with the extra L2 term), DST with alpha 1.5e-3 reached 90.0% (2e-3: 92.9%). Both reach their own sparsity; the
#: comparison is at the sparsity reached.
HYPER = {"cs": dict(cs_init=0.0, cs_lambda=5e-6, cs_beta_final=200.0), "dst": dict(dst_alpha=1.5e-3)}
SIDES = ("tf_keras", "torch", "torch64", "torch_l2", "jax")
#: The sides that run this file's PyTorch code (torch64: in float64, the protocol's float32 noise floor; torch_l2:
#: CS and DST with the authors' extra L2 term in the loss).
TORCH_SIDES = ("torch", "torch64", "torch_l2")
#: The methods whose authors' code adds 0.5 wd |w|^2 to the loss on top of the optimizer's decay.
EXTRA_L2_METHODS = ("cs", "dst")
#: How far apart two implementations may end, as the issue asks (test accuracy, points).
ACCURACY_TOLERANCE = 0.5


# -- shared: data, order, init -----------------------------------------------------------------------------------------


def protocol_data(data_dir: str, train_subset: int, test_subset: Optional[int] = None):
    """(x_train, y_train, x_test, y_test): flattened float32 in [0, 1], int32 labels; the first examples."""
    loaded = _datasets.load_idx([data_dir])
    if loaded is None:
        raise SystemExit(f"no Fashion-MNIST idx files in {data_dir!r}")
    x_train, y_train, x_test, y_test, _ = loaded

    def prepare(x, y, count):
        count = len(x) if count is None else min(int(count), len(x))
        return (x[:count].reshape(count, -1).astype(np.float32) / 255.0), y[:count].astype(np.int32)

    return (*prepare(x_train, y_train, train_subset), *prepare(x_test, y_test, test_subset))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of ``epoch`` (the one ``tfimp.keras3.data.EpochOrdered`` uses)."""
    return np.random.default_rng(_datasets.epoch_seed(seed, epoch)).permutation(n)


def init_path(out: str, seed: int) -> str:
    return os.path.join(out, f"init_seed{seed}.npz")


def side_path(out: str, side: str) -> str:
    return os.path.join(out, f"side_{side}.json")


def masks_path(out: str, side: str) -> str:
    return os.path.join(out, f"masks_{side}.npz")


def summarise(masks: dict) -> tuple[float, dict]:
    """(overall sparsity, per-layer sparsity) of ``{layer: 0/1 kept array}``."""
    total = sum(m.size for m in masks.values())
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return 1.0 - kept / total, {name: 1.0 - float(np.count_nonzero(m)) / m.size for name, m in masks.items()}


# -- the tfimp side (tf_keras or Keras 3) ------------------------------------------------------------------------------


def keras_mlp(keras):
    """The protocol's MLP in the given Keras, with its default initialisation."""
    return keras.Sequential([keras.Input((LAYERS[0][1],))] + [
        keras.layers.Dense(units, activation="relu" if i < len(LAYERS) - 1 else None, name=name)
        for i, (name, _, units) in enumerate(LAYERS)])


def tfimp_train_data(front: str, x, y, batch_size: int, seed: int):
    """The training batches in the protocol's order: tf_keras is given them explicitly, Keras 3 orders them so."""
    steps = -(-len(x) // batch_size)
    if front == "tf_keras":
        from tfimp.tf_keras import data as tfk_data
        from tfimp.tf_keras._backend import tf

        def make_epoch(epoch):
            order = epoch_order(seed, epoch, len(x))
            return tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch_size)

        return tfk_data.EpochOrdered(make_epoch, steps)
    from tfimp.keras3 import data as k3_data

    class WholeEpochs(k3_data.EpochOrdered):
        """Moves to the next epoch only after the last batch of this one was served: Keras 3.15's JAX ``fit``
        peeks at a batch and calls ``on_epoch_end`` once before training (``epoch_iterator.reset()``), which
        would shift every epoch's order by one."""

        def __getitem__(self, index):
            self._served_last = self._served_last or index == len(self) - 1
            return super().__getitem__(index)

        def on_epoch_end(self):
            if getattr(self, "_served_last", False):
                super().on_epoch_end()
            self._served_last = False

    ordered = WholeEpochs(x, y, batch_size, seed)
    ordered._served_last = False
    if not np.array_equal(ordered.order(1), epoch_order(seed, 1, len(x))):
        raise AssertionError("tfimp.keras3.data.EpochOrdered no longer orders epochs as epoch_order does")
    return ordered


def tfimp_run(front: str, method: str, seed: int, data: tuple, out: str, *, epochs: int, hyper: dict,
              protocol: dict = PROTOCOL) -> tuple[dict, dict, dict]:
    """One tfimp ``DuringTraining`` run of the protocol: (result, masks by layer, final kernels by layer).

    The tf_keras side writes the seed's initial weights to ``out`` when they
    are not there yet; every other side reads them.
    """
    import tfimp

    keras = tfimp.keras_of_process()
    x_train, y_train, x_test, y_test = data
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = keras_mlp(keras)
    path = init_path(out, seed)
    if os.path.exists(path):
        with np.load(path) as saved:
            model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
    elif front == "tf_keras":
        np.savez(path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    else:
        raise SystemExit(f"{path} is missing: run the tf_keras side first (it writes the initial weights)")
    runner = tfimp.DuringTraining(method, protocol["target_sparsity"], epochs, learning_rate=protocol["learning_rate"],
                                  dense_schedule="linear", optimizer="torch_sgd", momentum=protocol["momentum"],
                                  nesterov=protocol["nesterov"], weight_decay=protocol["weight_decay"],
                                  batch_size=protocol["batch_size"], seed=seed, chance_guard=False, **hyper)
    start = time.perf_counter()
    rows = runner.run(model, tfimp_train_data(front, x_train, y_train, protocol["batch_size"], seed),
                      test=(x_test, y_test), verbose=0)
    wall = time.perf_counter() - start
    stripped = tfimp.strip(runner.model)
    kernels = {name: np.asarray(stripped.get_layer(name).kernel).T for name, _, _ in LAYERS}
    masks = {name: (kernel != 0).astype(np.uint8) for name, kernel in kernels.items()}
    sparsity, layers = summarise(masks)
    reported = tfimp.layer_sparsity(stripped)
    return {"side": front, "method": method, "seed": seed, "epochs": epochs, "hyper": hyper,
            "test_accuracy": float(rows[-1]["test_accuracy"]), "sparsity": sparsity, "layer_sparsity": layers,
            "tfimp_sparsity": float(rows[-1]["sparsity"]),
            "tfimp_layer_sparsity": {k: float(v) for k, v in reported.items()}, "wall_s": wall}, masks, kernels


# -- the PyTorch side --------------------------------------------------------------------------------------------------


def torch_run(method: str, seed: int, data: tuple, out: str, *, epochs: int, hyper: dict, protocol: dict = PROTOCOL,
              rule_scope: str = "kernels", extra_l2: bool = False, dnw_final_mask: str = "recompute",
              float64: bool = False) -> tuple[dict, dict, dict]:
    """One PyTorch run of the protocol: (result, masks by layer, final kernels by layer).

    See :func:`_torch_train` for the methods; ``float64`` runs it in double precision.
    """
    import torch

    start = time.perf_counter()
    result, masks, kernels = _torch_train(torch, method, seed, data, out, epochs=epochs, hyper=hyper,
                                          protocol=protocol, rule_scope=rule_scope, extra_l2=extra_l2,
                                          dnw_final_mask=dnw_final_mask,
                                          dtype=torch.float64 if float64 else torch.float32)
    result.update(side="torch64" if float64 else "torch_l2" if extra_l2 else "torch", method=method, seed=seed,
                  epochs=epochs, hyper=hyper, wall_s=time.perf_counter() - start)
    return result, masks, kernels


def _torch_train(torch, method, seed, data, out, *, epochs, hyper, protocol, rule_scope, extra_l2, dnw_final_mask,
                 dtype):
    """The methods, per training step (n prunable weights, k = n - round(S n) kept):

    - LC: after the backward pass, ``grad -= wd * w`` on the global top-k of
      ``|w|`` (the optimizer's coupled decay cancelled there); at the end one
      global magnitude pruning step to S;
    - GSM: ``grad`` kept on the global top-k of ``|w * grad|``, zero elsewhere
      (the coupled decay still reaches every weight); the same end;
    - DNW: the forward pass uses ``w * 1[|w| among the top-k]`` (global,
      recomputed every step), the gradient reaching every weight
      (straight-through); the final mask is recomputed from the final
      weights, as the authors' code does (``dnw_final_mask="recompute"``), or
      is the mask of the last step (``"last_step"``, what tfimp keeps);
    - CS: ``w * sigmoid(beta s) / sigmoid(s_init)``, one score ``s`` per weight
      (a parameter of the optimizer), ``loss += lambda * sum(sigmoid(beta
      s))`` (+ ``0.5 wd |w|^2`` with ``extra_l2``, as the authors' later code
      adds on top of the optimizer's decay); ``beta = beta_final **
      (t / T)`` for step t = 0..T-1; the end keeps ``s > 0`` with the weights'
      last effective values (at ``beta_final``);
    - DST: ``w * step(|w| - t)``, one threshold per output unit (a parameter,
      0 at the start), the step's derivative ``2 - 4|x|`` (``|x| <= 0.4``),
      ``0.4`` (``<= 1``), 0 beyond; ``loss += alpha * sum(exp(-t))`` (+ ``0.5
      wd |w|^2`` with ``extra_l2``); a layer keeping at most 1% has its
      thresholds reset to 0; the end keeps ``|w| > t``.

    ``rule_scope="all"`` takes LC's and GSM's top-k over every parameter with
    a gradient (biases too), as the authors' code does; "kernels" over the
    prunable kernels only (the definition tfimp follows).
    """
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = (torch.from_numpy(np.asarray(a)) for a in data)
    x_train, x_test, y_train, y_test = x_train.to(dtype), x_test.to(dtype), y_train.long(), y_test.long()
    with np.load(init_path(out, seed)) as saved:
        init = [saved[f"w{i}"] for i in range(len(saved.files))]
    kernels = [torch.nn.Parameter(torch.tensor(init[2 * i].T.copy(), dtype=dtype)) for i in range(len(LAYERS))]
    biases = [torch.nn.Parameter(torch.tensor(init[2 * i + 1].copy(), dtype=dtype)) for i in range(len(LAYERS))]
    n = sum(k.numel() for k in kernels)
    kept = kept_count(n, protocol["target_sparsity"])
    wd, lr0 = protocol["weight_decay"], protocol["learning_rate"]
    extra = []
    if method == "cs":
        s_init, lam, beta_final = hyper["cs_init"], hyper["cs_lambda"], hyper["cs_beta_final"]
        extra = [torch.nn.Parameter(torch.full_like(k, s_init)) for k in kernels]
        scale = 1.0 / float(torch.sigmoid(torch.tensor(s_init, dtype=torch.float64)))
    elif method == "dst":
        alpha = hyper["dst_alpha"]
        extra = [torch.nn.Parameter(torch.zeros(k.shape[0], dtype=dtype)) for k in kernels]
    elif method not in ("lc", "gsm", "dnw"):
        raise ValueError(f"unknown method {method!r}; known: {list(METHODS)}")
    params = [p for pair in zip(kernels, biases) for p in pair] + extra
    optimizer = torch.optim.SGD(params, lr=lr0, momentum=protocol["momentum"], nesterov=protocol["nesterov"],
                                weight_decay=wd)

    class DstStep(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            size = x.abs()
            slope = torch.where(size <= 0.4, 2.0 - 4.0 * size, torch.where(size <= 1.0, 0.4, 0.0))
            return grad * slope

    def top_k_masks(scores):
        flat = torch.cat([s.reshape(-1) for s in scores])
        keep = torch.zeros_like(flat)
        keep[torch.topk(flat, kept).indices] = 1.0
        return [m.view_as(s) for m, s in zip(torch.split(keep, [s.numel() for s in scores]), scores)]

    def dst_masks():
        masks = []
        for kernel, threshold in zip(kernels, extra):
            mask = DstStep.apply(kernel.abs() - threshold[:, None])
            if float(mask.detach().mean()) <= 0.01:
                with torch.no_grad():
                    threshold.zero_()
                mask = DstStep.apply(kernel.abs() - threshold[:, None])
            masks.append(mask)
        return masks

    def effective(beta):
        """The kernels the forward pass uses, and the masks they were made with (None: no mask)."""
        if method == "dnw":
            with torch.no_grad():
                masks = top_k_masks([k.abs() for k in kernels])
            return [k + (k * m - k).detach() for k, m in zip(kernels, masks)], masks
        if method == "cs":
            return [k * torch.sigmoid(beta * s) * scale for k, s in zip(kernels, extra)], None
        if method == "dst":
            masks = dst_masks()
            return [k * m for k, m in zip(kernels, masks)], masks
        return list(kernels), None

    def forward(x, weights):
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.nn.functional.linear(x, w, b)
            if i < len(weights) - 1:
                x = torch.relu(x)
        return x

    steps_per_epoch = -(-len(x_train) // protocol["batch_size"])
    total = epochs * steps_per_epoch
    step = 0
    last_masks = None
    for epoch in range(epochs):
        order = torch.from_numpy(epoch_order(seed, epoch, len(x_train)))
        for start in range(0, len(x_train), protocol["batch_size"]):
            batch = order[start:start + protocol["batch_size"]]
            for group in optimizer.param_groups:
                group["lr"] = lr0 * (1.0 - step / total)
            beta = beta_final ** (step / total) if method == "cs" else None
            weights, last_masks = effective(beta)
            loss = torch.nn.functional.cross_entropy(forward(x_train[batch], weights), y_train[batch])
            if method == "cs":
                loss = loss + lam * sum(torch.sigmoid(beta * s).sum() for s in extra)
            if method == "dst":
                loss = loss + alpha * sum(torch.exp(-t).sum() for t in extra)
            if extra_l2 and method in EXTRA_L2_METHODS:
                loss = loss + 0.5 * wd * sum((k ** 2).sum() for k in kernels)
            optimizer.zero_grad()
            loss.backward()
            if method in ("lc", "gsm"):
                with torch.no_grad():
                    ruled = kernels if rule_scope == "kernels" else [p for p in params if p.grad is not None]
                    if method == "lc":
                        for p, m in zip(ruled, top_k_masks([p.abs() for p in ruled])):
                            p.grad.add_(-wd * p * m)
                    else:
                        for p, m in zip(ruled, top_k_masks([(p * p.grad).abs() for p in ruled])):
                            p.grad.mul_(m)
            optimizer.step()
            step += 1
    extra_result = {}
    with torch.no_grad():
        if method in ("lc", "gsm"):  # what the one pruning step at the end takes the model from
            extra_result["test_accuracy_before_pruning"] = float(
                (forward(x_test, kernels).argmax(1) == y_test).float().mean())
        if method in ("lc", "gsm", "dnw"):
            masks = top_k_masks([k.abs() for k in kernels])  # one global magnitude step; DNW: from the final weights
            if method == "dnw":
                extra_result["dnw_final_vs_last_step_mask_changes"] = int(
                    sum(int((a != b).sum()) for a, b in zip(masks, last_masks)))
                extra_result["dnw_final_mask"] = dnw_final_mask
                masks = last_masks if dnw_final_mask == "last_step" else masks
            final = [k * m for k, m in zip(kernels, masks)]
        elif method == "cs":
            masks = [(s > 0).float() for s in extra]
            final = [k * torch.sigmoid(beta_final * s) * scale * m for k, s, m in zip(kernels, extra, masks)]
        else:
            masks = [(k.abs() - t[:, None] > 0).float() for k, t in zip(kernels, extra)]
            final = [k * m for k, m in zip(kernels, masks)]
        accuracy = float((forward(x_test, final).argmax(1) == y_test).float().mean())
    masks = {name: m.numpy().astype(np.uint8) for (name, _, _), m in zip(LAYERS, masks)}
    sparsity, layers = summarise(masks)
    return ({"test_accuracy": accuracy, "sparsity": sparsity, "layer_sparsity": layers, "rule_scope": rule_scope,
             "extra_l2": extra_l2 and method in EXTRA_L2_METHODS, "dtype": str(dtype).replace("torch.", ""),
             **extra_result}, masks,
            {name: w.numpy().astype(np.float32) for (name, _, _), w in zip(LAYERS, final)})


# -- one side, in this process -----------------------------------------------------------------------------------------


def available_methods(side: str, methods: list[str]) -> tuple[list[str], list[str]]:
    """(methods this side runs, methods it skips): tfimp runs only the methods its RULES have."""
    if side == "torch_l2":
        return [m for m in methods if m in EXTRA_L2_METHODS], [m for m in methods if m not in EXTRA_L2_METHODS]
    if side in TORCH_SIDES:
        return list(methods), []
    from tfimp.core.during_training import RULES

    return [m for m in methods if m in RULES], [m for m in methods if m not in RULES]


def run_side(side: str, methods: list[str], seeds: list[int], data_dir: str, out: str, *, epochs: int,
             train_subset: int, test_subset: Optional[int] = None, threads: int = 1,
             hyper_overrides: Optional[dict] = None, **torch_options) -> dict:
    """Runs ``methods`` x ``seeds`` on one side; writes ``side_<side>.json`` and ``masks_<side>.npz`` (the final
    masks and kernels, PyTorch's layout) to ``out``."""
    os.makedirs(out, exist_ok=True)
    data = protocol_data(data_dir, train_subset, test_subset)
    run, skipped = available_methods(side, methods)
    if side in TORCH_SIDES:
        import torch

        torch.set_num_threads(threads)
    else:
        import tfimp  # noqa: F401  (the process's Keras is already chosen)
    results, masks = [], {}
    for seed in seeds:
        for method in run:
            hyper = {**HYPER.get(method, {}), **(hyper_overrides or {}).get(method, {})}
            if side in TORCH_SIDES:
                result, kept, final = torch_run(method, seed, data, out, epochs=epochs, hyper=hyper,
                                                float64=side == "torch64", extra_l2=side == "torch_l2",
                                                **torch_options)
            else:
                result, kept, final = tfimp_run(side, method, seed, data, out, epochs=epochs, hyper=hyper)
            results.append(result)
            masks.update({f"{method}/{seed}/{layer}": m for layer, m in kept.items()})
            masks.update({f"kernel:{method}/{seed}/{layer}": w for layer, w in final.items()})
            print(f"[torchref] {side} {method} seed {seed}: test accuracy {100 * result['test_accuracy']:.2f}%, "
                  f"sparsity {100 * result['sparsity']:.2f}% ({result['wall_s']:.1f} s)", flush=True)
    report = {"side": side, "results": results, "skipped": skipped,
              "data": {"train": len(data[0]), "test": len(data[2])}}
    with open(side_path(out, side), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    np.savez_compressed(masks_path(out, side), **masks)
    return report


# -- merging ---------------------------------------------------------------------------------------------------------


def compare(sides: dict, masks: dict, reference: str = "torch") -> tuple[list[dict], list[dict]]:
    """(comparisons per method, seed and side against ``reference``; their summary per method and side)."""
    by_key = {(r["side"], r["method"], r["seed"]): r for report in sides.values() for r in report["results"]}
    comparisons = []
    for (side, method, seed), result in by_key.items():
        base = by_key.get((reference, method, seed))
        if side == reference or base is None:
            continue
        overlap, apart, size = [], 0.0, 0.0
        for layer in result["layer_sparsity"]:
            a = masks[side][f"{method}/{seed}/{layer}"].astype(bool)
            b = masks[reference][f"{method}/{seed}/{layer}"].astype(bool)
            overlap.append((int((a & b).sum()), int((a | b).sum())))
            mine, theirs = (masks[s][f"kernel:{method}/{seed}/{layer}"].astype(np.float64) for s in (side, reference))
            apart += float(np.sum((mine - theirs) ** 2))
            size += float(np.sum(theirs ** 2))
        comparisons.append({
            "side": side, "method": method, "seed": seed,
            "accuracy_difference": 100 * (result["test_accuracy"] - base["test_accuracy"]),
            "sparsity_difference": 100 * (result["sparsity"] - base["sparsity"]),
            "layer_differences": {layer: 100 * (value - base["layer_sparsity"][layer])
                                  for layer, value in result["layer_sparsity"].items()},
            "kept_overlap": sum(i for i, _ in overlap) / max(1, sum(u for _, u in overlap)),
            "kept_differences": sum(u - i for i, u in overlap),
            "kernel_relative_difference": (apart / size) ** 0.5 if size else 0.0})
    summary = []
    for side, method in dict.fromkeys((c["side"], c["method"]) for c in comparisons):
        chosen = [c for c in comparisons if (c["side"], c["method"]) == (side, method)]
        mean = lambda key: float(np.mean([c[key] for c in chosen]))  # noqa: E731
        summary.append({"side": side, "method": method, "seeds": [c["seed"] for c in chosen],
                        "mean_accuracy_difference": mean("accuracy_difference"),
                        "mean_sparsity_difference": mean("sparsity_difference"),
                        "max_layer_difference": max(abs(d) for c in chosen for d in c["layer_differences"].values()),
                        "mean_kept_overlap": mean("kept_overlap"),
                        "mean_kept_differences": mean("kept_differences"),
                        "mean_kernel_relative_difference": mean("kernel_relative_difference"),
                        "within_tolerance": abs(mean("accuracy_difference")) <= ACCURACY_TOLERANCE})
    return comparisons, summary


def merge(out: str, sides: list[str], command: str, revision: str) -> dict:
    """Reads each side's JSON and masks from ``out`` and writes ``out``/fidelity_methods.json (its ``epochs`` and
    ``hyper``: what the runs had, read from their results)."""
    reports, masks = {}, {}
    for side in sides:
        with open(side_path(out, side), encoding="utf-8") as handle:
            reports[side] = json.load(handle)
        with np.load(masks_path(out, side)) as saved:
            masks[side] = {key: saved[key] for key in saved.files}
    comparisons, summary = compare(reports, masks)
    results = [r for report in reports.values() for r in report["results"]]
    epochs = sorted({r["epochs"] for r in results})  # --epochs, where it changed the protocol's
    merged = {"command": command, "revision": revision,
              "protocol": {**PROTOCOL, **next(iter(reports.values()))["data"],
                           "epochs": epochs[0] if len(epochs) == 1 else epochs},
              "hyper": {method: next((r["hyper"] for r in results if r["method"] == method), values)
                        for method, values in HYPER.items()},
              "layers": [name for name, _, _ in LAYERS],
              "skipped": {side: r["skipped"] for side, r in reports.items() if r["skipped"]},
              "results": results,
              "comparisons": comparisons, "summary": summary}
    with open(os.path.join(out, "fidelity_methods.json"), "w", encoding="utf-8") as handle:
        json.dump(merged, handle, indent=1)
    return merged


def print_summary(merged: dict) -> None:
    print("| method | side | seeds | test accuracy (%) | sparsity (%) | layers (%) | vs torch: accuracy | overlap "
          "| kernels apart |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {(s["side"], s["method"]): s for s in merged["summary"]}
    for method in METHODS:
        for side in SIDES:
            runs = [r for r in merged["results"] if (r["side"], r["method"]) == (side, method)]
            if not runs:
                continue
            layers = " / ".join(f"{100 * np.mean([r['layer_sparsity'][name] for r in runs]):.1f}"
                                for name in merged["layers"])
            s = summary.get((side, method))
            versus = (f"{s['mean_accuracy_difference']:+.2f}", f"{s['mean_kept_overlap']:.3f}",
                      f"{s['mean_kernel_relative_difference']:.2e}") if s else ("", "", "")
            accuracies = " / ".join(f"{100 * r['test_accuracy']:.2f}" for r in runs)
            print(f"| {method} | {side} | {len(runs)} | {accuracies} | "
                  f"{100 * np.mean([r['sparsity'] for r in runs]):.2f} | {layers} | {' | '.join(versus)} |")


git_revision = provenance.git_revision


def side_environment(side: str, torch_path: Optional[str]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    if side in TORCH_SIDES:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (torch_path, REPO) if p)
    elif side == "tf_keras":
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
        env["KERAS_BACKEND"] = side
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=SIDES, help="run one side in this process (the driver's subprocesses)")
    parser.add_argument("--sides", default="tf_keras,torch", help=f"the driver's sides, of {list(SIDES)}; "
                        "tf_keras first (it writes the initial weights)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=PROTOCOL["epochs"])
    parser.add_argument("--train_subset", type=int, default=PROTOCOL["train_subset"])
    parser.add_argument("--test_subset", type=int, default=None, help="default: the full test set")
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--torch_path", default=None, help="a folder holding torch (put first on the torch side's path)")
    parser.add_argument("--rule_scope", choices=("kernels", "all"), default="kernels",
                        help="LC's and GSM's top-k on the torch side: over the kernels, or all parameters (authors)")
    parser.add_argument("--dnw_final_mask", choices=("recompute", "last_step"), default="recompute",
                        help="DNW's final mask on the torch side: from the final weights (authors) or the last step's")
    parser.add_argument("--cs_lambda", type=float, default=None,
                        help=f"CS's lambda instead of the protocol's {HYPER['cs']['cs_lambda']}")
    parser.add_argument("--dst_alpha", type=float, default=None,
                        help=f"DST's alpha instead of the protocol's {HYPER['dst']['dst_alpha']}")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per side")
    parser.add_argument("--out", default="bench_out/torch_methods")
    parser.add_argument("--docs_json", default=None, help="also write the merged JSON to docs/ under this name")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or not seeds:
        raise SystemExit(f"--methods takes names of {list(METHODS)} and --seeds at least one seed; got {methods}, "
                         f"{seeds}")
    overrides = {method: {key: value} for method, key, value in (("cs", "cs_lambda", args.cs_lambda),
                                                                  ("dst", "dst_alpha", args.dst_alpha))
                 if value is not None}
    if args.side:
        if args.side not in TORCH_SIDES:
            os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
            os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(args.threads))
            if args.side == "jax":
                import keras  # noqa: F401  (Keras 3 before tfimp: the process's front end)
        run_side(args.side, methods, seeds, args.data_dir, args.out, epochs=args.epochs,
                 train_subset=args.train_subset, test_subset=args.test_subset, threads=args.threads,
                 hyper_overrides=overrides,
                  **({"rule_scope": args.rule_scope, "dnw_final_mask": args.dnw_final_mask}
                    if args.side in TORCH_SIDES else {}))
        return
    sides = [s for s in args.sides.split(",") if s]
    if [s for s in sides if s not in SIDES] or "torch" not in sides:
        raise SystemExit(f"--sides takes names of {list(SIDES)}, torch (the reference) among them; got {sides}")
    command = "python benchmarks/torch_methods_reference.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--torch_path") and a != args.torch_path)
    revision = git_revision()
    for side in sorted(sides, key=lambda s: s != "tf_keras"):
        print(f"[torchref] side {side}", flush=True)
        result = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--side", side],
                                env=side_environment(side, args.torch_path), cwd=REPO)
        if result.returncode != 0:
            raise SystemExit(f"the {side} side failed (exit status {result.returncode})")
    merged = merge(args.out, sides, command, revision)
    print_summary(merged)
    if args.docs_json:
        with open(os.path.join(REPO, "docs", args.docs_json), "w", encoding="utf-8") as handle:
            json.dump(merged, handle, indent=1)


if __name__ == "__main__":
    main()
