# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Keras 3 on JAX: a keras-hub model pruned inside your own `model.fit`
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/06_keras3_jax_own_fit.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# The same tfimp names on Keras 3 with the JAX backend (no `TF_USE_LEGACY_KERAS`, no tfmot): build a keras-hub ResNet image classifier from a config (random weights, nothing downloaded), wrap it, let the IMP callback prune and retrain it in a `fit` you call yourself, then read the table, the plot and TensorBoard, and strip it back into a keras-hub model.

# %%
# Install tfimp for Keras 3 on JAX, with keras-hub (skipped where tfimp is installed already: in CI, or in a local venv made with
# `pip install -e ".[jax,cli,hub]"` in your clone).
# In Colab: tfimp is not on a package index. Build a wheel in your clone (`pip wheel --no-deps -w dist .`) and
# upload dist/tfimp-*.whl into this session's files (the folder icon on the left); this cell installs it. Or set
# TFIMP_SOURCE to the path of a clone the session can read (e.g. on your mounted Google Drive).
import glob, importlib.metadata, importlib.util, os, subprocess, sys
os.environ["KERAS_BACKEND"] = "jax"  # before Keras is first imported
os.environ.pop("TF_USE_LEGACY_KERAS", None)  # it would make Keras here Keras 2
TFIMP_SOURCE = ""  # @param {type:"string"}
if importlib.util.find_spec("tfimp") is None:
    def versions(names):
        found = {}
        for name in names:
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
        return found
    loaded = ["numpy", "jax", "keras", "keras-hub", "tensorflow"]
    before = versions(loaded)
    wheels = sorted(glob.glob("tfimp-*.whl"))
    if wheels:
        source = f"{wheels[-1]}[jax,cli,hub]"
    elif TFIMP_SOURCE:
        source = f"{TFIMP_SOURCE}[jax,cli,hub]"
    else:
        raise RuntimeError("tfimp is not installed: upload a tfimp-*.whl built in your clone "
                           "(pip wheel --no-deps -w dist .), or set TFIMP_SOURCE to the path of a clone")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    changed = [name for name, version in versions(loaded).items()
               if version != before[name] and name.replace("-", "_") in sys.modules]
    if changed or "keras" in sys.modules:
        # Packages this runtime has already imported changed on disk (or Keras was imported before
        # KERAS_BACKEND was set): only a fresh process sees the new ones.
        print(f"Installed; restarting the runtime ({changed or ['keras was already imported']}). "
              "Then run the notebook again from the next cell.")
        os.kill(os.getpid(), 9)  # Colab restarts a killed runtime by itself
print("tfimp", importlib.metadata.version("tfimp"))

# %%
import keras
import numpy as np
import tfimp
print("Keras", keras.__version__, "on", keras.backend.backend())
assert keras.backend.backend() == "jax"
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)

# %% [markdown]
# A small keras-hub ResNet (keras-hub asks for 64 filters in the first stage). `tfimp.wrap` copies it; the summary says how much of it is under masks.

# %%
import keras_hub
keras.utils.set_random_seed(0)
backbone = keras_hub.models.ResNetBackbone(
    input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 128],
    stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    use_pre_activation=False, image_shape=(28, 28, 1))
classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=10, preprocessor=None)
model = tfimp.wrap(classifier, verbose=1)
coverage = tfimp.coverage.describe(model)
# What the summary shows: every convolution and the classifier head under masks, BatchNorm left dense.
assert coverage.prunable_share > 0.99 and coverage.dense_matrix_parameters == 0

# %% [markdown]
# Your own `compile` and `fit`: the callback owns the learning rate (your compiled schedule is the original one that SLR is built from), prunes at the start of each cycle and re-estimates BatchNorm right after. `fit` runs exactly `plan.total_epochs`.

# %%
plan = tfimp.Plan(target_sparsity=0.9, cycles=2, dense_epochs=3, retrain_epochs=1, retrain_schedule="slr")
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
assert rows[-1]["test_accuracy"] > 0.5, rows[-1]

# %%
from IPython.display import Image
path = tfimp.plots.accuracy_vs_sparsity(rows, "keras3_imp.png", title="keras-hub ResNet on Keras 3 + JAX")
with open(path, "rb") as handle:
    assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
Image(path)

# %% [markdown]
# TensorBoard: in Colab the next cell shows it inline; elsewhere it reads back the per-epoch sparsity and learning rate the callback logged (Keras' TensorBoard callback writes with TensorFlow's summary writer, also on JAX).

# %%
import sys
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
    assert abs(logged["epoch_sparsity"][plan.total_epochs - 1] - rows[-1]["sparsity"]) < 1e-6

# %% [markdown]
# Strip: the masks go, the zeros stay, and the model is a keras-hub `ImageClassifier` again (rebuilt from its config), which saves and loads without tfimp.

# %%
stripped = tfimp.strip(model)
stripped.save("fashion_resnet_sparse.keras")
reloaded = keras.saving.load_model("fashion_resnet_sparse.keras")
images = data.test[0][:64]
difference = np.abs(reloaded.predict(images, verbose=0) - model.predict(images, verbose=0)).max()
print(type(reloaded).__name__, "max |difference| against the wrapped model:", difference)
assert type(reloaded) is keras_hub.models.ImageClassifier and difference < 1e-5
