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
# # tfimp quickstart
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/01_quickstart.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# Wrap your own Keras model, run IMP with SLR retraining in five lines, and read the per-cycle table and plot. Runs on a CPU in about a minute.

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
# Any tf_keras model works: build it with `tfimp.keras`.

# %%
inputs = keras.Input((28, 28, 1))
x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
x = keras.layers.MaxPooling2D()(x)
x = keras.layers.Flatten()(x)
outputs = keras.layers.Dense(10)(x)
model = keras.Model(inputs, outputs)

# %% [markdown]
# IMP in five lines: a plan, one call.

# %%
imp = tfimp.IMP(target_sparsity=0.9, cycles=3, dense_epochs=2, retrain_epochs=1,
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
assert pruned == int(0.9 * total + 0.5) and rows[-1]["sparsity"] == pruned / total

# %%
from IPython.display import Image
tfimp.plots.accuracy_vs_sparsity(rows, "quickstart.png")
Image("quickstart.png")
