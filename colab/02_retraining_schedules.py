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
# # Retraining schedules
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/02_retraining_schedules.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# FT, LRW, SLR, CLR, LLR and ALLR for one original schedule, then FT against SLR on a small task.

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
import matplotlib.pyplot as plt
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
plt.show()

# %%
import tfimp
from tfimp import keras
# Fashion-MNIST: Debian's package or a data_dir with idx files; in Colab tensorflow-datasets downloads it.
# Small subsets keep the tutorial quick; drop them for the real numbers.
data = tfimp.data.load("fashion_mnist", batch_size=128, train_subset=3000, test_subset=2000, seed=0)
print(data.train_examples, "training examples from", data.source)

# %%
results = {}
for name in ["ft", "slr"]:
    keras.utils.set_random_seed(0)
    model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
    rows = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=2, retrain_epochs=1, retrain_schedule=name,
                     learning_rate=0.02).run(model, data.train, data.validation, data.test, verbose=0)
    results[name] = rows[-1]["test_accuracy"]
print({name: round(accuracy, 4) for name, accuracy in results.items()})
assert all(0.1 < accuracy <= 1.0 for accuracy in results.values())  # both learned something
