"""Writes the Colab tutorials in colab/ (outputs stripped). Run after editing the cell texts.

    python colab/_build_notebooks.py
"""

import json
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

#: Where the project is published on GitHub: the "Open in Colab" links and the default install source.
REPOSITORY = "tfimp/tfimp"

def install_cell(what: str, environment: str, extras: str, loaded: list[str], imported_too_early: str,
                 too_early_reason: str) -> str:
    """The first code cell: installs tfimp with ``extras`` where it is missing, restarting the runtime when needed.

    ``environment`` sets what must be set before the first import;
    ``imported_too_early`` is the module whose earlier import makes it too late.
    """
    return f'''# Install {what} (skipped where tfimp is installed already, e.g. in CI).
# TFIMP_SOURCE: a pip source for tfimp, e.g. a git URL or a wheel you uploaded (a tfimp-*.whl in the working
# directory is picked up by itself).
import glob, importlib.metadata, importlib.util, os, subprocess, sys
{environment}
TFIMP_SOURCE = "git+https://github.com/{REPOSITORY}"  # @param {{type:"string"}}
if importlib.util.find_spec("tfimp") is None:
    def versions(names):
        found = {{}}
        for name in names:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
        return found
    loaded = {json.dumps(loaded)}
    before = versions(loaded)
    wheels = sorted(glob.glob("tfimp-*.whl"))
    source = f"{{wheels[-1]}}[{extras}]" if wheels else f"tfimp[{extras}] @ {{TFIMP_SOURCE}}"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    changed = [name for name, version in versions(loaded).items()
               if version != before[name] and name.replace("-", "_") in sys.modules]
    if changed or "{imported_too_early}" in sys.modules:
        # Packages this runtime has already imported changed on disk (or {too_early_reason}): only a fresh process sees the new ones.
        print(f"Installed; restarting the runtime ({{changed or ['{imported_too_early} was already imported']}}). "
              "Then run the notebook again from the next cell.")
        os.kill(os.getpid(), 9)  # Colab restarts a killed runtime by itself
print("tfimp", importlib.metadata.version("tfimp"))'''


INSTALL = install_cell(
    "tfimp and its command-line extras",
    'os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfimp\'s Keras 2 stack: set before TensorFlow is first imported',
    "cli,keras-cv", ["numpy", "tensorflow", "keras", "tf-keras", "protobuf"], "tensorflow",
    "TensorFlow was imported before\n        # TF_USE_LEGACY_KERAS was set")
KERAS3_INSTALL = install_cell(
    "tfimp for Keras 3 on JAX, with keras-hub",
    'os.environ["KERAS_BACKEND"] = "jax"  # before Keras is first imported\n'
    'os.environ.pop("TF_USE_LEGACY_KERAS", None)  # it would make Keras here Keras 2',
    "jax,cli,hub", ["numpy", "jax", "keras", "keras-hub", "tensorflow"], "keras",
    "Keras was imported before\n        # KERAS_BACKEND was set")


def colab_link(name: str) -> str:
    """The "Open in Colab" badge of notebook ``name``, as Markdown."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPOSITORY}/blob/main/colab/{name})")


DATA = '''import tfimp
from tfimp import keras
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)'''

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        new_markdown_cell("# tfimp quickstart\nWrap your own Keras model, run IMP with SLR retraining in five "
                          "lines, and read the per-cycle table and plot. Runs on a CPU in about a minute."),
        new_code_cell(INSTALL),
        new_code_cell(DATA),
        new_markdown_cell("Any tf_keras model works: build it with `tfimp.keras`."),
        new_code_cell('''inputs = keras.Input((28, 28, 1))
x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
x = keras.layers.MaxPooling2D()(x)
x = keras.layers.Flatten()(x)
outputs = keras.layers.Dense(10)(x)
model = keras.Model(inputs, outputs)'''),
        new_markdown_cell("IMP in five lines: a plan, one call."),
        new_code_cell('''imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=2, retrain_epochs=1,
                retrain_schedule="slr", criterion="global", learning_rate=0.02)
rows = imp.run(model, data.train, data.validation, data.test, verbose=0)
print(tfimp.results.format_table(rows))
# What the table shows: a dense phase, then three cycles of rising sparsity ending at exactly 90%.
kernels = tfimp.wrapping.prunable_kernels(imp.model)
total = sum(k.size for k in kernels)
pruned = sum(int((k.mask.numpy() == 0).sum()) for k in kernels)
print(f"{pruned:,} of {total:,} weights pruned")
assert [row["cycle"] for row in rows] == [0, 1, 2, 3]
assert rows[1]["sparsity"] < rows[2]["sparsity"] < rows[3]["sparsity"]
assert pruned == int(0.9 * total + 0.5) and rows[-1]["sparsity"] == pruned / total'''),
        new_code_cell('''from IPython.display import Image
tfimp.plots.accuracy_vs_sparsity(rows, "quickstart.png")
Image("quickstart.png")'''),
    ],
    "02_retraining_schedules.ipynb": [
        new_markdown_cell("# Retraining schedules\nFT, LRW, SLR, CLR, LLR and ALLR for one original schedule, "
                          "then FT against SLR on a small task."),
        new_code_cell(INSTALL),
        new_code_cell('''import matplotlib.pyplot as plt
import tfimp
original = tfimp.lr.StepDecay(0.1, [500, 750], factor=0.1)   # 1000 steps, x0.1 at 50% and 75%
figure, axis = plt.subplots(figsize=(7, 4))
for name in ["ft", "lrw", "slr", "clr", "llr", "allr"]:
    options = {"initial_lr": 0.04} if name == "allr" else {}
    schedule = tfimp.lr.retrain_schedule(name, original=original, original_steps=1000, retrain_steps=200, **options)
    axis.plot(schedule.values, label=name)
    # What the plot shows: FT and LRW start at the original's last rate, the restarts warm up from 0.
    assert len(schedule.values) == 200
    assert abs(schedule.values[0] - (0.001 if name in ("ft", "lrw") else 0.0)) < 1e-7
axis.set_xlabel("retraining step"); axis.set_ylabel("learning rate"); axis.legend()
plt.show()'''),
        new_code_cell(DATA),
        new_code_cell('''results = {}
for name in ["ft", "slr"]:
    keras.utils.set_random_seed(0)
    model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    rows = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=2, retrain_epochs=1, retrain_schedule=name,
                     learning_rate=0.02).run(model, data.train, data.validation, data.test, verbose=0)
    results[name] = rows[-1]["test_accuracy"]
print({name: round(accuracy, 4) for name, accuracy in results.items()})
assert all(0.1 < accuracy <= 1.0 for accuracy in results.values())  # both learned something'''),
    ],
    "03_global_vs_layerwise.ipynb": [
        new_markdown_cell("# Global vs layer-wise allocation\nPer-layer sparsity that global, uniform, uniform+, "
                          "ERK and LAMP choose for a ResNet-20 at 90%, then accuracy after retraining a small CNN."),
        new_code_cell(INSTALL),
        new_code_cell('''import tfimp
criteria = ["global", "uniform", "uniform_plus", "erk", "lamp"]
allocations = {}
for criterion in criteria:
    model = tfimp.wrap(tfimp.models.build("resnet20", num_classes=10, input_shape=(32, 32, 3)))
    allocations[criterion] = tfimp.prune(model, 0.9, criterion=criterion)
layers = list(allocations["global"])
print(f"{'layer':28s}" + "".join(f"{c:>13s}" for c in criteria))
for layer in layers[:6] + ["..."] + layers[-3:]:
    if layer == "...":
        print("..."); continue
    print(f"{layer:28s}" + "".join(f"{allocations[c][layer]:>13.1%}" for c in criteria))
# What the table shows: uniform prunes every layer to 90%, uniform+ keeps the first convolution dense,
# global and LAMP spread the same total unevenly.
sizes = {kernel.name: kernel.size for kernel in tfimp.wrapping.prunable_kernels(model)}
assert all(allocations["uniform"][name] == int(0.9 * size + 0.5) / size for name, size in sizes.items())
assert allocations["uniform_plus"][layers[0]] == 0.0
assert max(allocations["global"].values()) - min(allocations["global"].values()) > 0.1'''),
        new_code_cell(DATA),
        new_code_cell('''from tfimp import keras
accuracy = {}
for criterion in criteria:
    keras.utils.set_random_seed(0)
    model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    rows = tfimp.IMP(target_sparsity=0.9, cycles=1, dense_epochs=2, retrain_epochs=1, criterion=criterion,
                     learning_rate=0.02).run(model, data.train, data.validation, data.test, verbose=0)
    accuracy[criterion] = round(rows[-1]["test_accuracy"], 4)
print(accuracy)
assert set(accuracy) == set(criteria) and all(0.1 < value <= 1.0 for value in accuracy.values())'''),
    ],
    "04_export.ipynb": [
        new_markdown_cell("# Export\nStrip, convert to TFLite with sparsity, compare sizes, check predictions."),
        new_code_cell(INSTALL),
        new_code_cell(DATA),
        new_code_cell('''keras.utils.set_random_seed(0)
model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1, learning_rate=0.02)
rows = imp.run(model, data.train, data.validation, data.test, verbose=0)
print(tfimp.report.model_report(imp.model).table())'''),
        new_markdown_cell("Each export is reloaded and its predictions are compared with the Keras model's on a "
                          "test batch; the size table compares raw and gzip bytes with a dense reference."),
        new_code_cell('''batch = next(iter(data.test))[0].numpy()
files = tfimp.export.export(imp.model, "export", formats=["keras", "tflite", "tflite_dynamic"], check_inputs=batch)
print(tfimp.export.size_table(files))
for f in files:
    print(f"{f.format:15s} max |error| {f.max_abs_error:.2g} (tolerance {f.tolerance:.2g})")
# What the table shows: the sparse files are smaller than a dense model's.
assert all(f.gzip_bytes < f.dense_gzip_bytes for f in files)'''),
        new_markdown_cell("Read the files back yourself, with plain Keras and TFLite's interpreter: the zeros are "
                          "there and the predictions match the pruned model's."),
        new_code_cell('''import numpy as np
from tfimp import tf
expected = imp.model.predict(batch, verbose=0)
by_format = {f.format: f for f in files}
reloaded = keras.models.load_model(by_format["keras"].path)  # no tfimp object inside
kernels = [w for w in reloaded.weights if "kernel" in w.name]
zeros = sum(int((w.numpy() == 0).sum()) for w in kernels)
total = sum(int(np.prod(w.shape)) for w in kernels)
print(f"{zeros:,} of {total:,} kernel weights are zero in the reloaded file")
assert zeros == int(0.9 * total + 0.5)  # tfimp rounds half up
np.testing.assert_allclose(reloaded.predict(batch, verbose=0), expected, rtol=1e-5, atol=1e-5)
interpreter = tf.lite.Interpreter(model_path=by_format["tflite"].path)
interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], batch.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch.astype(np.float32))
interpreter.invoke()
tflite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
print("TFLite: largest difference from Keras", float(np.abs(tflite - expected).max()))
np.testing.assert_allclose(tflite, expected, rtol=1e-4, atol=1e-4)'''),
    ],
    "05_keras_cv_own_fit.ipynb": [
        new_markdown_cell("# A keras-cv backbone, pruned inside your own `model.fit`\nBuild a keras-cv "
                          "ResNetV2 backbone (random weights, nothing downloaded), wrap it, and let the IMP "
                          "callback prune and retrain it in a `fit` you call yourself, with TensorBoard."),
        new_code_cell(INSTALL),
        new_code_cell(DATA),
        new_markdown_cell("A small ResNetV2 so that it trains on a CPU in a minute; "
                          "`tfimp.models.build(\"kcv_resnet18_v2\", ...)` is the full ResNet-18."),
        new_code_cell('''import keras_cv
keras.utils.set_random_seed(0)
backbone = keras_cv.models.ResNetV2Backbone(
    stackwise_filters=[16, 32, 64], stackwise_blocks=[2, 2, 2], stackwise_strides=[1, 2, 2],
    include_rescaling=False, input_shape=(28, 28, 1))
inputs = keras.Input((28, 28, 1))
features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
model = tfimp.wrap(keras.Model(inputs, keras.layers.Dense(10, name="logits")(features)))
print(len(tfimp.wrapping.prunable_kernels(model)), "kernels wrapped, e.g.",
      [k.name for k in tfimp.wrapping.prunable_kernels(model)][:3])'''),
        new_markdown_cell("Your own `compile` and `fit`: the callback owns the learning rate (your compiled "
                          "schedule is the original one that SLR is built from) and prunes at the start of each "
                          "cycle. `fit` must run exactly `plan.total_epochs` epochs."),
        new_code_cell('''plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=2, retrain_epochs=1, retrain_schedule="slr")
steps = data.train_epochs.steps_per_epoch
model.compile(optimizer=tfimp.optimizers.TorchSGD(keras.optimizers.schedules.CosineDecay(0.05, plan.dense_epochs * steps),
                                                 momentum=0.9, weight_decay=5e-4),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
imp = tfimp.callbacks.IMP(plan, test_data=data.test, recalibration_data=data.train_epochs.epoch(0), verbose=0)
board = keras.callbacks.TensorBoard("logs/keras_cv_imp")
model.fit(data.train_epochs.epochs(0, plan.total_epochs), epochs=plan.total_epochs, steps_per_epoch=steps,
          validation_data=data.validation, callbacks=[imp, board], verbose=2)
print(tfimp.results.format_table(imp.rows))
# What the table shows: the dense phase, then two cycles ending at exactly 80% sparsity.
kernels = tfimp.wrapping.prunable_kernels(model)
pruned = sum(int((k.mask.numpy() == 0).sum()) for k in kernels)
assert [row["cycle"] for row in imp.rows] == [0, 1, 2]
assert pruned == int(0.8 * sum(k.size for k in kernels) + 0.5) and imp.rows[-1]["sparsity"] == tfimp.sparsity(model)'''),
        new_markdown_cell("TensorBoard: in Colab the next cell shows it inline; elsewhere it prints the "
                          "per-epoch sparsity and learning rate that the callback logged."),
        new_code_cell('''import sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("load_ext", "tensorboard")
    get_ipython().run_line_magic("tensorboard", "--logdir logs/keras_cv_imp")
else:
    import glob
    from tfimp import tf
    logged = {}
    for path in glob.glob("logs/keras_cv_imp/train/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("epoch_"):  # the file also holds the model's graph
                    logged.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    print("sparsity per epoch:", logged["epoch_sparsity"])
    print("learning rate at epoch ends:", logged["epoch_learning_rate"])
    # TensorBoard holds float32: the last epoch's sparsity is the final row's to float32 precision.
    assert abs(logged["epoch_sparsity"][plan.total_epochs - 1] - imp.rows[-1]["sparsity"]) < 1e-6
    assert sorted(logged["epoch_sparsity"]) == list(range(plan.total_epochs))'''),
    ],
    "06_keras3_jax_own_fit.ipynb": [
        new_markdown_cell("# Keras 3 on JAX: a keras-hub model pruned inside your own `model.fit`\nThe same tfimp "
                          "names on Keras 3 with the JAX backend (no `TF_USE_LEGACY_KERAS`, no tfmot): build a "
                          "keras-hub ResNet image classifier from a config (random weights, nothing downloaded), "
                          "wrap it, let the IMP callback prune and retrain it in a `fit` you call yourself, then "
                          "read the table, the plot and TensorBoard, and strip it back into a keras-hub model."),
        new_code_cell(KERAS3_INSTALL),
        new_code_cell('''import keras
import numpy as np
import tfimp
print("Keras", keras.__version__, "on", keras.backend.backend())
assert keras.backend.backend() == "jax"
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)'''),
        new_markdown_cell("A small keras-hub ResNet (keras-hub asks for 64 filters in the first stage). "
                          "`tfimp.wrap` copies it; the summary says how much of it is under masks."),
        new_code_cell('''import keras_hub
keras.utils.set_random_seed(0)
backbone = keras_hub.models.ResNetBackbone(
    input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 128],
    stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    use_pre_activation=False, image_shape=(28, 28, 1))
classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10, preprocessor=None)
model = tfimp.wrap(classifier, verbose=1)
coverage = tfimp.coverage.describe(model)
# What the summary shows: every convolution and the classifier head under masks, BatchNorm left dense.
assert coverage.prunable_share > 0.99 and coverage.dense_matrix_parameters == 0'''),
        new_markdown_cell("Your own `compile` and `fit`: the callback owns the learning rate (your compiled "
                          "schedule is the original one that SLR is built from), prunes at the start of each "
                          "cycle and re-estimates BatchNorm right after. `fit` runs exactly `plan.total_epochs`."),
        new_code_cell('''plan = tfimp.Plan(target_sparsity=0.9, cycles=2, dense_epochs=3, retrain_epochs=1, retrain_schedule="slr")
steps = data.steps_per_epoch
model.compile(optimizer=tfimp.optimizers.TorchSGD(keras.optimizers.schedules.CosineDecay(0.05, plan.dense_epochs * steps),
                                                 momentum=0.9, weight_decay=5e-4),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
imp = tfimp.callbacks.IMP(plan, test_data=data.test, recalibration_data=data.train, verbose=0)
board = keras.callbacks.TensorBoard("logs/keras3_imp")
model.fit(data.train, epochs=plan.total_epochs, validation_data=data.validation, callbacks=[imp, board], verbose=2)
rows = imp.rows
print(tfimp.results.format_table(rows))
# What the table shows: the dense phase, then two cycles ending at exactly 90% sparsity, well above chance.
kernels = tfimp.keras3.masks.prunable_kernels(model)
pruned = sum(int((keras.ops.convert_to_numpy(k.mask.value) == 0).sum()) for k in kernels)
total = sum(int(np.prod(k.weight.shape)) for k in kernels)
assert [row["cycle"] for row in rows] == [0, 1, 2]
assert pruned == int(0.9 * total + 0.5) and rows[-1]["sparsity"] == pruned / total == tfimp.sparsity(model)
assert rows[-1]["test_accuracy"] > 0.5, rows[-1]'''),
        new_code_cell('''from IPython.display import Image
path = tfimp.plots.accuracy_vs_sparsity(rows, "keras3_imp.png", title="keras-hub ResNet on Keras 3 + JAX")
with open(path, "rb") as handle:
    assert handle.read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
Image(path)'''),
        new_markdown_cell("TensorBoard: in Colab the next cell shows it inline; elsewhere it reads back the "
                          "per-epoch sparsity and learning rate the callback logged (Keras' TensorBoard callback "
                          "writes with TensorFlow's summary writer, also on JAX)."),
        new_code_cell('''import sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("load_ext", "tensorboard")
    get_ipython().run_line_magic("tensorboard", "--logdir logs/keras3_imp")
else:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray
    events = EventAccumulator("logs/keras3_imp/train", size_guidance={"tensors": 0})
    events.Reload()
    logged = {tag: {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
              for tag in ("epoch_sparsity", "epoch_learning_rate")}
    print("sparsity per epoch:", logged["epoch_sparsity"])
    print("learning rate at epoch ends:", logged["epoch_learning_rate"])
    # TensorBoard holds float32: the last epoch's sparsity is the final row's to float32 precision.
    assert sorted(logged["epoch_sparsity"]) == list(range(plan.total_epochs))
    assert abs(logged["epoch_sparsity"][plan.total_epochs - 1] - rows[-1]["sparsity"]) < 1e-6'''),
        new_markdown_cell("Strip: the masks go, the zeros stay, and the model is a keras-hub `ImageClassifier` "
                          "again (rebuilt from its config), which saves and loads without tfimp."),
        new_code_cell('''stripped = tfimp.strip(model)
stripped.save("fashion_resnet_sparse.keras")
reloaded = keras.saving.load_model("fashion_resnet_sparse.keras")
images = data.test[0][:64]
difference = np.abs(reloaded.predict(images, verbose=0) - model.predict(images, verbose=0)).max()
print(type(reloaded).__name__, "max |difference| against the wrapped model:", difference)
assert type(reloaded) is keras_hub.models.ImageClassifier and difference < 1e-5'''),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        title = cells[0]
        if "colab.research.google.com" not in title.source:
            title.source = f"{colab_link(name)}\n\n{title.source}"
        notebook = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "colab": {"provenance": []}})
        nbformat.write(notebook, os.path.join(HERE, name))
        print("wrote", name)


if __name__ == "__main__":
    main()
