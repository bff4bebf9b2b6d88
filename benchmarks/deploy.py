"""What gets faster where: dense vs 90% unstructured vs 2:4 vs channel-slimmed, per runtime, on the CPU.

For ``small_cnn`` and MobileNetV2 (keras.applications, alpha 0.35,
``weights=None``), both trained on Fashion-MNIST, it builds four variants in
a tf_keras process:

- ``dense``: small_cnn trained ``--epochs`` on ``--train_examples`` examples;
  MobileNetV2 trained from scratch ``--mobilenet_epochs`` on the same
  examples, resized to ``--mobilenet_size`` squared, the grey channel
  repeated to three.
- ``unstructured_90``: the dense model wrapped, ``tfimp.prune(model, 0.9)``
  in one shot (global magnitude for small_cnn; ``--mobilenet_criterion``,
  ``uniform`` by default, for MobileNetV2: global magnitude at 90% empties
  its late depthwise layers, ``Conv_1`` and the classifier even after
  training), fine-tuned ``--finetune_epochs`` on ``--finetune_examples``
  with the masks held, stripped.
- ``2:4``: the same with ``structure="2:4"`` (sparsity 0.5; a kernel whose
  input axis is not a multiple of 4 stays dense).
- ``channels_slimmed``: the dense model wrapped (convolutions and dense
  layers; not the output layer, whose channels are the classes, nor
  depthwise kernels, which the channels structure reads as a single
  channel: they lose the channels of the convolution feeding them when the
  model is slimmed), ``tfimp.prune(model, --channel_sparsity, "uniform",
  structure="channels")`` (each layer loses the same share; a global
  ranking of channel norms empties small_cnn's conv1, whose filters hold 9
  weights against conv2's 288), fine-tuned as above (the pruned channels'
  biases and BatchNorm gamma and beta held at zero after every step),
  stripped and slimmed by ``tfimp.slim``. Its record holds the parameters before and after
  slimming, each counted on the model.

After every training (dense or fine-tuning), and after slimming,
BatchNorm's moving statistics are re-estimated on 2,048 training examples
(``tfimp.batchnorm.reestimate``): a short run leaves them behind the
weights. Every variant's test accuracy is measured on ``--test_examples``.

Each variant is saved as ``.keras`` and ``.tflite`` (TFLiteConverter with
``EXPERIMENTAL_SPARSITY``, as ``tfimp.export`` writes it) and, where tf2onnx
converts it, ``.onnx`` (``--runtimes`` and ``--variants`` narrow a run: a
file no named runtime reads is not written). The latencies of one forward pass on random normal
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

The full run trains MobileNetV2 at 96x96 for 3 epochs: most of its build
stage (see ``build_s`` in each record).
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
import provenance  # benchmarks/ is on the path of a script run from it

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("small_cnn", "mobilenetv2")
VARIANTS = ("dense", "unstructured_90", "2:4", "channels_slimmed")
RUNTIMES = ("keras_tf_keras", "keras_jax", "tflite_xnnpack", "tflite_xnnpack_latest", "tflite_builtin", "onnxruntime")
RUNTIME_LABELS = {"keras_tf_keras": "tf_keras predict_on_batch", "keras_jax": "Keras 3 + JAX predict_on_batch",
                  "tflite_xnnpack": "TFLite (XNNPack default)", "tflite_xnnpack_latest": "TFLite (XNNPack latest)",
                  "tflite_builtin": "TFLite (no delegate)", "onnxruntime": "ONNX Runtime"}
SETTINGS = ("train_examples", "finetune_examples", "test_examples", "epochs", "finetune_epochs", "channel_sparsity",
            "mobilenet_size", "mobilenet_epochs", "mobilenet_criterion", "models", "variants", "runtimes", "batches",
            "repeats", "warmup")
#: The criterion of the channels_slimmed variant: each layer loses the same share of its channels. Global ranking of
#: channel L2 norms across layers empties small_cnn's conv1 (9 weights a filter against conv2's 288 and fc1's 3,136).
CHANNELS_CRITERION = "uniform"
CHANNELS_NOTE = (f"channels_slimmed: tfimp.prune(structure='channels', criterion {CHANNELS_CRITERION!r}) on the "
                 "convolutions and "
                 "dense layers but the output layer (depthwise kernels unwrapped), fine-tuned with the masks held, "
                 "then tfimp.slim; its parameters are the slimmed model's, the pruned model's are in the pruning "
                 "column")


def file_name(model: str, variant: str, suffix: str) -> str:
    return f"{model}_{variant.replace(':', 'of')}{suffix}"


git_revision = provenance.git_revision


# -- build (a tf_keras process) --------------------------------------------------------------------------------------


def output_layers(model) -> list[str]:
    """The names of the layers that make ``model``'s outputs (their channels are the classes: never pruned)."""
    return [tensor._keras_history.layer.name for tensor in model.outputs]  # noqa: SLF001 - tf_keras' public history


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

    def batches(x, y, shape, batch_size, shuffle=False):
        """``(x, y)`` in batches, each image resized to ``shape`` and its grey channel repeated to fill it."""
        data = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
        if shuffle:
            data = data.shuffle(len(x), seed=0, reshuffle_each_iteration=True)
        data = data.batch(batch_size)
        if tuple(shape) != tuple(x.shape[1:]):
            def prepare(images):
                return tf.tile(tf.image.resize(images, shape[:2]), [1, 1, 1, shape[2] // images.shape[-1]])

            data = data.map(lambda *batch: (prepare(batch[0]), *batch[1:]) if y is not None else prepare(batch[0]))
        return data.prefetch(1)

    def compiled(model):
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def reestimate(model, shape):
        # A short run leaves BatchNorm's moving statistics behind the weights (momentum 0.99): re-estimated on
        # 2,048 training examples after every training, dense or fine-tuning alike, and after slimming.
        tfimp.batchnorm.reestimate(model, batches(x_train[:2048], None, shape, 128))

    def fit(model, epochs, shape, part=slice(None)):
        if epochs:
            model.fit(batches(x_train[part], y_train[part], shape, 128, shuffle=True), epochs=epochs, verbose=0)
            reestimate(model, shape)

    records = []
    for name in args.models:
        if name == "small_cnn":
            shape, epochs = (28, 28, 1), args.epochs
            dense = compiled(tfimp.wrap(tfimp.models.build("small_cnn", num_classes=10, input_shape=shape)))
        else:
            shape, epochs = (args.mobilenet_size, args.mobilenet_size, 3), args.mobilenet_epochs
            dense = compiled(keras.applications.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=10,
                                                            classifier_activation=None))
        started = time.time()
        fit(dense, epochs, shape)
        dense = tfimp.strip(dense) if name == "small_cnn" else dense
        print(f"[deploy] trained {name} dense: {time.time() - started:.0f} s", flush=True)
        dense_path = os.path.join(files, file_name(name, "dense", ".keras"))
        dense.save(dense_path)
        for variant in args.variants:
            started = time.time()
            record = {"model": name, "variant": variant, "trained": True, "input_shape": list(shape)}
            if variant == "dense":
                model = dense
            else:
                criterion = CHANNELS_CRITERION if variant == "channels_slimmed" else (
                    args.mobilenet_criterion if name == "mobilenetv2" else "global")
                record["criterion"] = criterion
                plain = keras.models.load_model(dense_path, compile=False)
                if variant == "channels_slimmed":
                    # Whole output channels of the convolutions and dense layers but the output layer (its channels
                    # are the classes). Depthwise kernels stay unwrapped: slimming removes their channels with those
                    # of the convolution that feeds them.
                    wrapped = tfimp.wrap(plain, kinds=("conv", "dense"), exclude=output_layers(plain))
                    target, structure = args.channel_sparsity, "channels"
                else:
                    wrapped = tfimp.wrap(plain)
                    target, structure = (0.5, "2:4") if variant == "2:4" else (0.9, "unstructured")
                reached = tfimp.prune(wrapped, target, criterion, structure=structure)
                record["emptied_layers"] = sorted(layer for layer, value in reached.items() if value >= 1.0)
                fit(compiled(wrapped), args.finetune_epochs, shape, tune)
                if variant == "channels_slimmed":
                    # The pruned channels' biases and BatchNorm gamma/beta stayed zero while fine-tuning (tfimp.prune
                    # with channels holds them after every optimizer step), so the channels slim away exactly.
                    record["channel_sparsity"] = float(tfimp.sparsity(wrapped, structure="channels"))
                    record["parameters_before_slim"] = int(tfimp.strip(wrapped).count_params())
                    model = tfimp.slim(wrapped)
                    reestimate(model, shape)
                else:
                    model = tfimp.strip(wrapped)
            record["parameters"] = int(model.count_params())
            record["zeros"] = int(sum(int(np.sum(w == 0)) for w in model.get_weights()))
            keras_path = os.path.join(files, file_name(name, variant, ".keras"))
            if variant != "dense":
                model.save(keras_path)
            np.savez(os.path.splitext(keras_path)[0] + ".npz", *model.get_weights())  # for Keras 3 (keras3_model)
            record["keras_bytes"], record["keras_gzip"] = file_size(keras_path)
            record["tflite_bytes"] = record["tflite_gzip"] = None
            if any("tflite" in runtime for runtime in args.runtimes):
                converter = tf.lite.TFLiteConverter.from_keras_model(model)
                converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
                tflite_path = os.path.join(files, file_name(name, variant, ".tflite"))
                with open(tflite_path, "wb") as handle:
                    handle.write(converter.convert())
                record["tflite_bytes"], record["tflite_gzip"] = file_size(tflite_path)
            record["onnx"] = {"skipped": "onnxruntime not among --runtimes"}
            if "onnxruntime" in args.runtimes:
                record["onnx"] = write_onnx(tf, model, shape, os.path.join(files, file_name(name, variant, ".onnx")))
            compiled(model)
            record["test_accuracy"] = float(model.evaluate(batches(x_test, y_test, shape, 256), verbose=0)[1])
            record["build_s"] = round(time.time() - started, 1)
            print(f"[deploy] built {name} {variant}: {record['parameters']:,} parameters, {record['zeros']:,} zeros, "
                  f"test accuracy {record['test_accuracy']:.4f}, {record['build_s']:.0f} s"
                  + (f", emptied {record['emptied_layers']}" if record.get("emptied_layers") else ""), flush=True)
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
    runtimes = [runtime for runtime in runtimes if runtime in args.runtimes]
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


def pruning(record: dict) -> str:
    """How a variant was pruned, as measured: its criterion, and for the slimmed one its channel sparsity and the
    parameters before slimming."""
    if record["variant"] == "dense":
        return ""
    text = record["criterion"]
    if "parameters_before_slim" in record:
        text += (f", channel sparsity {100 * record['channel_sparsity']:.1f}%, "
                 f"{record['parameters_before_slim']:,} parameters before slimming")
    if record.get("emptied_layers"):
        text += f", emptied {', '.join(record['emptied_layers'])}"
    return text


def tables(records: list[dict], latencies: list[dict], runtimes: list[str], batches: list[int], models: list[str],
           variants: list[str]):
    size_columns = ["model", "variant", "pruning", "parameters", "zero parameters", "`.keras` bytes / gzip",
                    "`.tflite` bytes / gzip", "test accuracy"]
    size_rows = []
    for r in records:
        accuracy = f"{100 * r['test_accuracy']:.2f}%" if r.get("test_accuracy") is not None else "n/a"
        size_rows.append([r["model"], r["variant"], pruning(r), f"{r['parameters']:,}", f"{r['zeros']:,}",
                          f"{r['keras_bytes']:,} / {r['keras_gzip']:,}",
                          f"{r['tflite_bytes']:,} / {r['tflite_gzip']:,}" if r["tflite_bytes"] else "not written",
                          accuracy])
    median = {(x["model"], x["variant"], x["runtime"], x["batch"]): x["median_s"] for x in latencies}
    columns = ["model", "variant", "batch"] + [RUNTIME_LABELS[r] for r in runtimes]
    rows = []
    for model in models:
        for batch in batches:
            for variant in variants:
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
    parser.add_argument("--channel_sparsity", type=float, default=0.5,
                        help="the target of tfimp.prune(structure='channels') for channels_slimmed")
    parser.add_argument("--channel_fraction", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mobilenet_size", type=int, default=96)
    parser.add_argument("--mobilenet_epochs", type=int, default=3)
    parser.add_argument("--mobilenet_criterion", default="uniform",
                        help="the criterion of MobileNetV2's unstructured_90 and 2:4 variants (small_cnn: global)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"any of {', '.join(MODELS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"any of {', '.join(VARIANTS)} (dense is always built: the others start from it)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help=f"any of {', '.join(RUNTIMES)} (files no runtime reads are not written)")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--files_dir", default="", help="where the model files go (default: <out>_files)")
    parser.add_argument("--stage", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.channel_fraction is not None:
        parser.error(f"--channel_fraction={args.channel_fraction} is gone: the channels are pruned by tfimp now; "
                     "pass --channel_sparsity (the target of tfimp.prune(structure='channels'))")
    if args.quick:
        args.train_examples, args.finetune_examples, args.test_examples = 256, 128, 200
        args.epochs, args.finetune_epochs, args.mobilenet_size, args.mobilenet_epochs = 1, 1, 32, 1
        args.batches, args.repeats, args.warmup = "1,4", 2, 1
    for flag, known in (("models", MODELS), ("variants", VARIANTS), ("runtimes", RUNTIMES)):
        given = [m for m in getattr(args, flag).split(",") if m] if isinstance(getattr(args, flag), str) else getattr(
            args, flag)
        unknown = sorted(set(given) - set(known))
        if unknown or not given:
            parser.error(f"--{flag}: unknown {unknown or 'empty'}; known: {', '.join(known)}")
        setattr(args, flag, [k for k in known if k in given])
    if "dense" not in args.variants:
        args.variants.insert(0, "dense")
    args.batches = [int(b) for b in str(args.batches).split(",")] if isinstance(args.batches, str) else args.batches
    if args.stage == "build":
        return build(args)
    if args.stage:
        return measure(args)

    out = os.path.abspath(args.out)
    args.work = os.path.abspath(args.files_dir) if args.files_dir else os.path.splitext(out)[0] + "_files"
    os.makedirs(args.work, exist_ok=True)
    argv = [a for a in sys.argv[1:]] + ["--work", args.work]
    stages = [stage for stage in ("keras_tf_keras", "keras_jax") if stage in args.runtimes]
    if set(args.runtimes) - set(stages):
        stages.append("lite")
    skipped = {}
    if "keras_jax" in stages and importlib.util.find_spec("jax") is None:
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
    (size_columns, size_rows), (columns, rows) = tables(built["records"], latencies, runtimes, args.batches, args.models,
                                                        args.variants)
    command = "python benchmarks/deploy.py " + " ".join(a for a in sys.argv[1:])
    common = {"command": command.strip(), "revision": git_revision(), "quick": args.quick,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs seen, one thread per runtime",
              "versions": found_versions, "data": built["data"], "notes": [
                  CHANNELS_NOTE, "MobileNetV2 (alpha 0.35, weights=None) trained from scratch on Fashion-MNIST "
                  "resized to --mobilenet_size, grey repeated to 3 channels",
                  "latency on random normal inputs; cells: median / dense median in the same run (median in ms)",
                  "XNNPack sparse inference is a delegate flag tf.lite.Interpreter does not "
                  "expose; 'XNNPack latest' is experimental_default_delegate_latest_features=True"],
              "settings": {k: getattr(args, k) for k in SETTINGS}}
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
