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
# # Export
#
# **Run it in Colab:** open <https://colab.research.google.com>, choose *File → Upload notebook* and upload `colab/04_export.ipynb` from your clone; the install cell below says how to bring tfimp along. Or run it locally in a Jupyter kernel where tfimp is installed.
#
# Strip, convert to TFLite with sparsity, compare sizes, check predictions.

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

# %%
keras.utils.set_random_seed(0)
model = tfimp.models.build("small_cnn", num_classes=10, input_shape=(28, 28, 1))
imp = tfimp.IMP(target_sparsity=0.9, cycles=2, dense_epochs=1, retrain_epochs=1, learning_rate=0.02)
rows = imp.run(model, data.train, data.validation, data.test, verbose=0)
print(tfimp.report.model_report(imp.model).table())

# %% [markdown]
# Each export is reloaded and its predictions are compared with the Keras model's on a test batch; the size table compares raw and gzip bytes with a dense reference.

# %%
batch = next(iter(data.test))[0].numpy()
files = tfimp.export.export(imp.model, "export", formats=["keras", "tflite", "tflite_dynamic"], check_inputs=batch)
print(tfimp.export.size_table(files))
for f in files:
    print(f"{f.format:15s} max |error| {f.max_abs_error:.2g} (tolerance {f.tolerance:.2g})")
# What the table shows: the sparse files are smaller than a dense model's.
assert all(f.gzip_bytes < f.dense_gzip_bytes for f in files)

# %% [markdown]
# Read the files back yourself, with plain Keras and TFLite's interpreter: the zeros are there and the predictions match the pruned model's.

# %%
import numpy as np
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
np.testing.assert_allclose(tflite, expected, rtol=1e-4, atol=1e-4)
