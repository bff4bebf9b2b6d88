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
# # A keras-cv backbone, pruned inside your own `model.fit`
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/05_keras_cv_own_fit.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# Build a keras-cv ResNetV2 backbone (random weights, nothing downloaded), wrap it, and let the IMP callback prune and retrain it in a `fit` you call yourself, with TensorBoard.

# %%
# Install tfimp and its command-line extras (skipped where tfimp is installed already: in CI, or in a local venv made with
# `pip install -e ".[cli,keras-cv]"` in your clone).
# In Colab: tfimp is not on a package index. Build a wheel in your clone (`pip wheel --no-deps -w dist .`) and
# upload dist/tfimp-*.whl into this session's files (the folder icon on the left); this cell installs it. Or set
# TFIMP_SOURCE to the path of a clone the session can read (e.g. on your mounted Google Drive).
import glob, importlib.metadata, importlib.util, os, subprocess, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfimp's Keras 2 stack: set before TensorFlow is first imported
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
    loaded = ["numpy", "tensorflow", "keras", "tf-keras", "protobuf"]
    before = versions(loaded)
    wheels = sorted(glob.glob("tfimp-*.whl"))
    if wheels:
        source = f"{wheels[-1]}[cli,keras-cv]"
    elif TFIMP_SOURCE:
        source = f"{TFIMP_SOURCE}[cli,keras-cv]"
    else:
        raise RuntimeError("tfimp is not installed: upload a tfimp-*.whl built in your clone "
                           "(pip wheel --no-deps -w dist .), or set TFIMP_SOURCE to the path of a clone")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    changed = [name for name, version in versions(loaded).items()
               if version != before[name] and name.replace("-", "_") in sys.modules]
    if changed or "tensorflow" in sys.modules:
        # Packages this runtime has already imported changed on disk (or TensorFlow was imported before
        # TF_USE_LEGACY_KERAS was set): only a fresh process sees the new ones.
        print(f"Installed; restarting the runtime ({changed or ['tensorflow was already imported']}). "
              "Then run the notebook again from the next cell.")
        os.kill(os.getpid(), 9)  # Colab restarts a killed runtime by itself
print("tfimp", importlib.metadata.version("tfimp"))

# %%
import tfimp
from tfimp import keras
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)

# %% [markdown]
# A small ResNetV2 so that it trains on a CPU in a minute; `tfimp.models.build("kcv_resnet18_v2", ...)` is the full ResNet-18.

# %%
import keras_cv
keras.utils.set_random_seed(0)
backbone = keras_cv.models.ResNetV2Backbone(
    stackwise_filters=[16, 32, 64], stackwise_blocks=[2, 2, 2], stackwise_strides=[1, 2, 2],
    include_rescaling=False, input_shape=(28, 28, 1))
inputs = keras.Input((28, 28, 1))
features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
model = tfimp.wrap(keras.Model(inputs, keras.layers.Dense(10, name="logits")(features)))
print(len(tfimp.wrapping.prunable_kernels(model)), "kernels wrapped, e.g.",
      [k.name for k in tfimp.wrapping.prunable_kernels(model)][:3])

# %% [markdown]
# Your own `compile` and `fit`: the callback owns the learning rate (your compiled schedule is the original one that SLR is built from) and prunes at the start of each cycle. `fit` must run exactly `plan.total_epochs` epochs.

# %%
plan = tfimp.Plan(target_sparsity=0.8, cycles=2, dense_epochs=2, retrain_epochs=1, retrain_schedule="slr")
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
assert pruned == int(0.8 * sum(k.size for k in kernels) + 0.5) and imp.rows[-1]["sparsity"] == tfimp.sparsity(model)

# %% [markdown]
# TensorBoard: in Colab the next cell shows it inline; elsewhere it prints the per-epoch sparsity and learning rate that the callback logged.

# %%
import sys
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
    assert sorted(logged["epoch_sparsity"]) == list(range(plan.total_epochs))
