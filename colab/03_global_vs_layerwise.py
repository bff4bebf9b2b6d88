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
# # Global vs layer-wise allocation
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/03_global_vs_layerwise.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# Per-layer sparsity that global, uniform, uniform+, ERK and LAMP choose for a ResNet-20 at 90%, then accuracy after retraining a small CNN.

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
assert max(allocations["global"].values()) - min(allocations["global"].values()) > 0.1

# %%
import tfimp
from tfimp import keras
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)

# %%
from tfimp import keras
accuracy = {}
for criterion in criteria:
    keras.utils.set_random_seed(0)
    model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    rows = tfimp.IMP(target_sparsity=0.9, cycles=1, dense_epochs=2, retrain_epochs=1, criterion=criterion,
                     learning_rate=0.02).run(model, data.train, data.validation, data.test, verbose=0)
    accuracy[criterion] = round(rows[-1]["test_accuracy"], 4)
print(accuracy)
assert set(accuracy) == set(criteria) and all(0.1 < value <= 1.0 for value in accuracy.values())
