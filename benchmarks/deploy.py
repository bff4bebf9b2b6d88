"""What gets faster where: dense vs 90% unstructured vs 2:4 vs channel-slimmed, per runtime, on the CPU.

For ``small_cnn`` (trained on Fashion-MNIST) and MobileNetV2 (keras.applications,
alpha 0.35, ``weights=None``, random weights: its sizes and latencies only, no
accuracy) it builds four variants in a tf_keras process:

- ``dense``: small_cnn trained ``--epochs`` on ``--train_examples`` examples;
  MobileNetV2 as initialised.
- ``unstructured_90``: the dense model wrapped, ``tfimp.prune(model, 0.9)``
  (global magnitude, one shot; ``uniform``, each layer to 90%, for the
  random MobileNetV2, where global empties whole layers), fine-tuned
  ``--finetune_epochs`` with the masks held, stripped.
- ``2:4``: the same with ``structure="2:4"`` (sparsity 0.5; a kernel whose
  input axis is not a multiple of 4 stays dense).
- ``channels_slimmed``: every convolution or dense layer whose output goes
  straight into a BatchNormalization loses its ``--channel_fraction``
  lowest-L2-norm output channels (filter zeroed, BatchNormalization gamma
  and beta zeroed), done here with numpy, as tests/slim_models.py does (the
  ``structure="channels"`` pruning does not exist yet); then ``tfimp.slim``
  removes those no other layer needs, and the slimmed model is fine-tuned
  as the others.

After every training (dense or fine-tuning) BatchNorm's moving statistics
are re-estimated on 2,048 training examples (``tfimp.batchnorm.reestimate``):
a short run leaves them behind the weights.

Each variant is saved as ``.keras`` and ``.tflite`` (TFLiteConverter with
``EXPERIMENTAL_SPARSITY``, as ``tfimp.export`` writes it) and, where tf2onnx
converts it, ``.onnx``. The latencies of one forward pass on random normal
inputs are then measured in separate processes, one per front end:

- ``keras_tf_keras``: ``predict_on_batch`` of the ``.keras`` file in tf_keras.
- ``keras_jax``: ``predict_on_batch`` of the same file in Keras 3 on JAX.
- ``tflite_xnnpack``: ``tf.lite.Interpreter`` as it comes (XNNPack default delegate).
- ``tflite_xnnpack_latest``: ``experimental_default_delegate_latest_features=True``,
  the one XNNPack switch the Python interpreter offers. XNNPack's sparse
  inference (``TFLITE_XNNPACK_DELEGATE_FLAG_SPARSE_INFERENCE``) is a delegate
  option that ``tf.lite.Interpreter`` does not expose; whether the
  "latest features" switch includes it is not observable from Python.
- ``tflite_builtin``: ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (TFLite's own kernels, no XNNPack).
- ``onnxruntime``: the ``.onnx`` file in onnxruntime's CPU provider (skipped, with the reason, when absent).

Every runtime runs on one thread. Within a runtime all variants of a model
are timed interleaved (each repeat times every variant once, in a rotated
order) after ``--warmup`` calls each; the table gives each variant's median
over ``--repeats`` as a ratio to the dense model's median in the same run,
with the median in milliseconds. Writes ``--out`` (the latency table, with the
raw medians, command and git revision) and ``<out>_sizes.json`` beside it
(parameters, file sizes, accuracy); both hold ``columns`` and ``rows`` for
docs_hooks.py.

    nice -n 10 python benchmarks/deploy.py --files_dir bench_out/deploy_files --out docs/tables/deploy.json
    python benchmarks/deploy.py --quick --out /tmp/deploy/deploy.json           (tiny sizes, 2 repeats)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("small_cnn", "mobilenetv2")
VARIANTS = ("dense", "unstructured_90", "2:4", "channels_slimmed")
RUNTIMES = ("keras_tf_keras", "keras_jax", "tflite_xnnpack", "tflite_xnnpack_latest", "tflite_builtin", "onnxruntime")
RUNTIME_LABELS = {"keras_tf_keras": "tf_keras predict_on_batch", "keras_jax": "Keras 3 + JAX predict_on_batch",
                  "tflite_xnnpack": "TFLite (XNNPack default)", "tflite_xnnpack_latest": "TFLite (XNNPack latest)",
                  "tflite_builtin": "TFLite (no delegate)", "onnxruntime": "ONNX Runtime"}
CHANNELS_NOTE = ("channels_slimmed: lowest-L2 output channels zeroed with numpy (filter, BatchNormalization gamma and "
                 "beta) in the benchmark itself, as tests/slim_models.py does (no structure='channels' pruning yet), "
                 "then tfimp.slim")


def file_name(model: str, variant: str, suffix: str) -> str:
    return f"{model}_{variant.replace(':', 'of')}{suffix}"


def git_revision() -> str:
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "tfimp", "benchmarks"],
                               cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{found}-dirty" if dirty else found


# -- build (a tf_keras process) --------------------------------------------------------------------------------------


def zero_channels_by_norm(keras, model, fraction: float) -> dict[str, int]:
    """Zeroes the ``fraction`` lowest-L2 output channels of every Conv2D/Dense layer that feeds a BatchNormalization
    directly (its filter, and the BatchNormalization's gamma and beta: the channel then holds zero); returns
    layer -> channels zeroed."""
    producers = {}
    for entry in model.get_config()["layers"]:
        if entry["class_name"] == "BatchNormalization" and entry["inbound_nodes"]:
            producers[entry["config"]["name"]] = entry["inbound_nodes"][0][0][0]
    zeroed = {}
    for bn_name, name in producers.items():
        layer = model.get_layer(name)
        if type(layer).__name__ not in ("Conv2D", "Dense"):
            continue
        weights = layer.get_weights()
        kernel = weights[0]
        norms = np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0))
        count = int(round(fraction * kernel.shape[-1]))
        if count == 0 or count >= kernel.shape[-1]:
            continue
        channels = np.argsort(norms, kind="stable")[:count]
        kernel[..., channels] = 0.0
        if len(weights) > 1:
            weights[1][channels] = 0.0
        layer.set_weights(weights)
        bn = model.get_layer(bn_name)
        gamma, beta, mean, variance = bn.get_weights()
        gamma[channels], beta[channels] = 0.0, 0.0
        bn.set_weights([gamma, beta, mean, variance])
        zeroed[name] = count
    return zeroed


def build(args) -> None:
    import tfimp  # noqa: PLC0415

    keras = tfimp.use_keras(2)
    import tensorflow as tf  # noqa: PLC0415
    from tfimp.core import datasets  # noqa: PLC0415
    from tfimp.core.exports import file_size  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    files = os.path.join(args.work, "files")
    os.makedirs(files, exist_ok=True)
    found = datasets.load_idx(datasets.idx_dirs("fashion_mnist", args.data_dir or None))
    if found is None:
        raise SystemExit("no Fashion-MNIST idx files: apt-get install dataset-fashion-mnist, or pass --data_dir")
    x_train, y_train, x_test, y_test, source = found
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(x_train))[:args.train_examples]
    x_train, y_train = x_train[pick].astype("float32") / 255.0, y_train[pick].astype("int64")
    x_test, y_test = x_test[:args.test_examples].astype("float32") / 255.0, y_test[:args.test_examples].astype("int64")
    tune = slice(0, args.finetune_examples)

    def compiled(model):
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def fit(model, epochs, part=slice(None)):
        if epochs:
            model.fit(x_train[part], y_train[part], batch_size=128, epochs=epochs, verbose=0)
            # A short run leaves BatchNorm's moving statistics behind the weights (momentum 0.99): re-estimated on
            # 2,048 training examples after every training, dense or fine-tuning alike.
            tfimp.batchnorm.reestimate(model, tf.data.Dataset.from_tensor_slices(x_train[:2048]).batch(128))

    records = []
    for name in args.models:
        trained = name == "small_cnn"
        if trained:
            shape = (28, 28, 1)
            dense = compiled(tfimp.wrap(tfimp.models.build("small_cnn", num_classes=10, input_shape=shape)))
            fit(dense, args.epochs)
            dense = tfimp.strip(dense)
        else:
            shape = (args.mobilenet_size, args.mobilenet_size, 3)
            dense = keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=10,
                                                   classifier_activation=None)
        dense_path = os.path.join(files, file_name(name, "dense", ".keras"))
        dense.save(dense_path)
        for variant in VARIANTS:
            notes = ""
            if variant == "dense":
                model = dense
            elif variant == "channels_slimmed":
                plain = keras.models.load_model(dense_path, compile=False)
                zeroed = zero_channels_by_norm(keras, plain, args.channel_fraction)
                model = tfimp.slim(plain)
                notes = f"channels zeroed in {len(zeroed)} layers before slimming"
                if trained:
                    fit(compiled(model), args.finetune_epochs, tune)
            else:
                wrapped = tfimp.wrap(keras.models.load_model(dense_path, compile=False))
                structure = "2:4" if variant == "2:4" else "unstructured"
                # Global magnitude on random weights empties whole layers (Glorot's scale falls with the fan-in):
                # the untrained MobileNetV2 is pruned layer by layer, each to the same sparsity.
                criterion = "global" if trained else "uniform"
                tfimp.prune(wrapped, 0.5 if variant == "2:4" else 0.9, criterion, structure=structure)
                notes = f"criterion {criterion}"
                if trained:
                    fit(compiled(wrapped), args.finetune_epochs, tune)
                model = tfimp.strip(wrapped)
            record = {"model": name, "variant": variant, "trained": trained, "input_shape": list(shape),
                      "parameters": int(model.count_params()),
                      "zeros": int(sum(int(np.sum(w == 0)) for w in model.get_weights())), "notes": notes}
            keras_path = os.path.join(files, file_name(name, variant, ".keras"))
            if variant != "dense":
                model.save(keras_path)
            np.savez(os.path.splitext(keras_path)[0] + ".npz", *model.get_weights())  # for Keras 3 (keras3_model)
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
            tflite_path = os.path.join(files, file_name(name, variant, ".tflite"))
            with open(tflite_path, "wb") as handle:
                handle.write(converter.convert())
            record["keras_bytes"], record["keras_gzip"] = file_size(keras_path)
            record["tflite_bytes"], record["tflite_gzip"] = file_size(tflite_path)
            record["onnx"] = write_onnx(tf, model, shape, os.path.join(files, file_name(name, variant, ".onnx")))
            record["test_accuracy"] = None
            if trained:
                compiled(model)
                record["test_accuracy"] = float(model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1])
            print(f"[deploy] built {name} {variant}: {record['parameters']:,} parameters, {record['zeros']:,} zeros",
                  flush=True)
            records.append(record)
    with open(os.path.join(args.work, "build.json"), "w", encoding="utf-8") as handle:
        json.dump({"data": source, "records": records}, handle, indent=1)


def write_onnx(tf, model, shape, path: str) -> dict:
    """Converts ``model`` with tf2onnx (batch axis left free); returns ``{"path"}`` or ``{"skipped": why}``."""
    try:
        import tf2onnx  # noqa: PLC0415
    except ImportError:
        return {"skipped": "tf2onnx is not installed (pip install tf2onnx)"}
    try:
        spec = [tf.TensorSpec((None, *shape), tf.float32, name="input")]
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=path)
    except Exception as error:  # noqa: BLE001 - any converter failure is a result: say it, go on
        return {"skipped": f"tf2onnx failed: {type(error).__name__}: {str(error)[:300]}"}
    return {"path": path}


# -- latency (one process per front end) -----------------------------------------------------------------------------


def interleaved(calls: dict[str, object], repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each ``calls[key]()``, timed in rotated interleaved order after ``warmup`` calls each."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    keys = list(calls)
    times = {key: [] for key in keys}
    for repeat in range(repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            calls[key]()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def inputs(shape, batch: int) -> np.ndarray:
    return np.random.default_rng(batch).normal(size=(batch, *shape)).astype("float32")


def measure(args) -> None:
    with open(os.path.join(args.work, "build.json"), encoding="utf-8") as handle:
        records = json.load(handle)["records"]
    files = os.path.join(args.work, "files")
    runtimes, runners, skipped = runtime_factories(args.stage)
    results = []
    for model_name in args.models:
        ours = [r for r in records if r["model"] == model_name]
        for runtime in runtimes:
            for batch in args.batches:
                calls = {}
                for record in ours:
                    x = inputs(record["input_shape"], batch)
                    suffix = ".onnx" if runtime == "onnxruntime" else ".tflite" if "tflite" in runtime else ".keras"
                    if runtime == "onnxruntime" and "path" not in record["onnx"]:
                        skipped[f"onnxruntime {model_name} {record['variant']}"] = record["onnx"]["skipped"]
                        continue
                    calls[record["variant"]] = runners[runtime](os.path.join(files, file_name(
                        model_name, record["variant"], suffix)), x)
                if not calls:
                    continue
                medians = interleaved(calls, args.repeats, args.warmup)
                for variant, seconds in medians.items():
                    results.append({"model": model_name, "variant": variant, "runtime": runtime, "batch": batch,
                                    "median_s": seconds})
                print(f"[deploy] {runtime} {model_name} batch {batch}: "
                      + ", ".join(f"{v} {1e3 * s:.2f} ms" for v, s in medians.items()), flush=True)
    with open(os.path.join(args.work, f"latency_{args.stage}.json"), "w", encoding="utf-8") as handle:
        json.dump({"results": results, "skipped": skipped, "versions": versions()}, handle, indent=1)


def keras3_model(keras, path: str):
    """The tf_keras ``.keras`` file at ``path`` rebuilt in Keras 3: its config (two tf_keras-only spellings
    rewritten: BatchNormalization's one-element axis list, DepthwiseConv2D's ``groups``) and the weights saved beside
    it (``.npz``, in ``get_weights()`` order). Keras 3 cannot load a tf_keras ``.keras`` file itself ("Could not
    locate class 'Functional'")."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))["config"]
    for layer in config["layers"]:
        options = layer["config"]
        if layer["class_name"] == "BatchNormalization" and isinstance(options.get("axis"), list):
            options["axis"] = options["axis"][0]
        if layer["class_name"] == "DepthwiseConv2D":
            options.pop("groups", None)
    model = keras.Model.from_config(config)
    with np.load(os.path.splitext(path)[0] + ".npz") as stored:
        model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
    return model


def versions() -> dict:
    found = {"python": platform.python_version()}
    for module in ("tensorflow", "tf_keras", "keras", "jax", "onnxruntime", "tf2onnx"):
        if module in sys.modules:
            found[module] = getattr(sys.modules[module], "__version__", "?")
    return found


def runtime_factories(stage: str):
    """(runtimes this stage measures, runtime -> (path, x) -> call, runtime -> why skipped)."""
    import tfimp  # noqa: PLC0415

    if stage in ("keras_tf_keras", "keras_jax"):
        keras = tfimp.use_keras(2 if stage == "keras_tf_keras" else 3)
        if stage == "keras_tf_keras":
            import tensorflow as tf  # noqa: PLC0415

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)

        def keras_runner(path, x):
            model = keras.models.load_model(path, compile=False) if stage == "keras_tf_keras" else keras3_model(
                keras, path)
            return lambda: model.predict_on_batch(x)

        return [stage], {stage: keras_runner}, {}

    import tensorflow as tf  # noqa: PLC0415

    def tflite(**options):
        def runner(path, x):
            interpreter = tf.lite.Interpreter(model_path=path, num_threads=1, **options)
            source = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(source, x.shape)
            interpreter.allocate_tensors()

            def call():
                interpreter.set_tensor(source, x)
                interpreter.invoke()
            return call
        return runner

    resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runners = {"tflite_xnnpack": tflite(), "tflite_xnnpack_latest": tflite(
        experimental_default_delegate_latest_features=True), "tflite_builtin": tflite(
        experimental_op_resolver_type=resolver)}
    skipped = {}
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        skipped["onnxruntime"] = "onnxruntime is not installed (pip install onnxruntime): ONNX not measured"
    else:
        def onnx_runner(path, x):
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            return lambda: session.run(None, {name: x})

        runners["onnxruntime"] = onnx_runner
    return list(runners), runners, skipped


# -- the orchestrating process ---------------------------------------------------------------------------------------


def run_stage(args, stage: str, argv: list[str]) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TF_USE_LEGACY_KERAS", None)
    if stage == "keras_jax":
        env["KERAS_BACKEND"] = "jax"
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    elif stage in ("build", "keras_tf_keras"):
        env["TF_USE_LEGACY_KERAS"] = "1"
    started = time.time()
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--stage", stage, *argv], env=env, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"stage {stage} failed (exit {result.returncode})")
    print(f"[deploy] stage {stage}: {time.time() - started:.0f} s", flush=True)


def cell_ratio(seconds: float | None, dense: float | None) -> str:
    if seconds is None or not dense:
        return "n/a"
    return f"{seconds / dense:.2f} ({1e3 * seconds:.2f} ms)"


def tables(records: list[dict], latencies: list[dict], runtimes: list[str], batches: list[int], models: list[str]):
    size_columns = ["model", "variant", "parameters", "zero parameters", "`.keras` bytes / gzip", "`.tflite` bytes / gzip",
                    "test accuracy"]
    size_rows = []
    for r in records:
        accuracy = f"{100 * r['test_accuracy']:.2f}%" if r["test_accuracy"] is not None else "untrained"
        size_rows.append([r["model"], r["variant"], f"{r['parameters']:,}", f"{r['zeros']:,}",
                          f"{r['keras_bytes']:,} / {r['keras_gzip']:,}", f"{r['tflite_bytes']:,} / {r['tflite_gzip']:,}",
                          accuracy])
    median = {(x["model"], x["variant"], x["runtime"], x["batch"]): x["median_s"] for x in latencies}
    columns = ["model", "variant", "batch"] + [RUNTIME_LABELS[r] for r in runtimes]
    rows = []
    for model in models:
        for batch in batches:
            for variant in VARIANTS:
                rows.append([model, variant, str(batch)]
                            + [cell_ratio(median.get((model, variant, rt, batch)), median.get((model, "dense", rt, batch)))
                               for rt in runtimes])
    return (size_columns, size_rows), (columns, rows)


def print_table(columns, rows) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(columns, *rows)]
    for row in [columns, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out/deploy/deploy.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats: a smoke test, not a result")
    parser.add_argument("--data_dir", default="", help="the Fashion-MNIST idx files (default: Debian's)")
    parser.add_argument("--train_examples", type=int, default=12000)
    parser.add_argument("--finetune_examples", type=int, default=6000)
    parser.add_argument("--test_examples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune_epochs", type=int, default=1)
    parser.add_argument("--channel_fraction", type=float, default=0.5)
    parser.add_argument("--mobilenet_size", type=int, default=96)
    parser.add_argument("--models", default=",".join(MODELS), help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--files_dir", default="", help="where the model files go (default: <out>_files)")
    parser.add_argument("--stage", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.train_examples, args.finetune_examples, args.test_examples = 256, 128, 200
        args.epochs, args.finetune_epochs, args.mobilenet_size = 1, 1, 32
        args.batches, args.repeats, args.warmup = "1,4", 2, 1
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown or 'empty'}; known: {', '.join(MODELS)}")
    args.batches = [int(b) for b in str(args.batches).split(",")] if isinstance(args.batches, str) else args.batches
    if args.stage == "build":
        return build(args)
    if args.stage:
        return measure(args)

    out = os.path.abspath(args.out)
    args.work = os.path.abspath(args.files_dir) if args.files_dir else os.path.splitext(out)[0] + "_files"
    os.makedirs(args.work, exist_ok=True)
    argv = [a for a in sys.argv[1:]] + ["--work", args.work]
    stages = ["keras_tf_keras", "keras_jax", "lite"]
    skipped = {}
    if importlib.util.find_spec("jax") is None:
        stages.remove("keras_jax")
        skipped["keras_jax"] = "jax is not installed (pip install -e '.[jax]'): Keras 3 + JAX not measured"
    for stage in ["build", *stages]:
        run_stage(args, stage, argv)
    with open(os.path.join(args.work, "build.json"), encoding="utf-8") as handle:
        built = json.load(handle)
    latencies, found_versions = [], {}
    for stage in stages:
        with open(os.path.join(args.work, f"latency_{stage}.json"), encoding="utf-8") as handle:
            part = json.load(handle)
        latencies += part["results"]
        skipped.update(part["skipped"])
        found_versions.update(part["versions"])
    runtimes = [r for r in RUNTIMES if any(x["runtime"] == r for x in latencies)]
    (size_columns, size_rows), (columns, rows) = tables(built["records"], latencies, runtimes, args.batches, args.models)
    command = "python benchmarks/deploy.py " + " ".join(a for a in sys.argv[1:])
    common = {"command": command.strip(), "revision": git_revision(), "quick": args.quick,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs seen, one thread per runtime",
              "versions": found_versions, "data": built["data"], "notes": [
                  CHANNELS_NOTE, "small_cnn trained; MobileNetV2 (alpha 0.35, weights=None) random: sizes and "
                  "latency only", "latency on random normal inputs; cells: median / dense median in the same run "
                  "(median in ms)", "XNNPack sparse inference is a delegate flag tf.lite.Interpreter does not "
                  "expose; 'XNNPack latest' is experimental_default_delegate_latest_features=True"],
              "settings": {k: getattr(args, k) for k in ("train_examples", "finetune_examples", "test_examples",
                                                         "epochs", "finetune_epochs", "channel_fraction",
                                                         "mobilenet_size", "models", "batches", "repeats", "warmup")}}
    sizes_path = os.path.splitext(out)[0] + "_sizes.json"
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"title": "Latency per runtime, as a ratio to dense in the same run", **common,
                   "skipped": skipped, "columns": columns, "rows": rows, "results": latencies}, handle, indent=1)
    with open(sizes_path, "w", encoding="utf-8") as handle:
        json.dump({"title": "Parameters, file sizes and test accuracy", **common, "columns": size_columns,
                   "rows": size_rows, "records": built["records"]}, handle, indent=1)
    print_table(size_columns, size_rows)
    print()
    print_table(columns, rows)
    for what, why in skipped.items():
        print(f"[deploy] skipped {what}: {why}")
    print(f"[deploy] {CHANNELS_NOTE}")
    print(f"[deploy] wrote {out} and {sizes_path}")


if __name__ == "__main__":
    main()
