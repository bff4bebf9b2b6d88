"""What is required and what is optional: the core API without the extras, keras-cv models, plots in notebooks."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tfimp
from tfimp import keras

import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_WITHOUT_EXTRAS = r"""
import importlib.abc, sys

BLOCKED = ("ml_collections", "matplotlib", "tensorflow_datasets", "keras_cv")

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, Blocker())
import numpy as np
import tfimp
from tfimp import keras

rng = np.random.default_rng(0)
x, y = rng.normal(size=(48, 8, 8, 3)).astype("float32"), rng.integers(0, 5, size=48)
inputs = keras.Input((8, 8, 3))
hidden = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
model = keras.Model(inputs, keras.layers.Dense(5, name="logits")(hidden))
rows = tfimp.IMP(target_sparsity=0.5, cycles=1, dense_epochs=1, retrain_epochs=1, batch_size=16).run(
    model, (x, y), test=(x, y), verbose=0, workdir=sys.argv[1])
files = tfimp.export.export(rows and tfimp.load_cycle(sys.argv[1], 1), sys.argv[1] + "/export",
                            formats=["keras", "tflite"], compare_dense=False)
print("core ok", rows[-1]["sparsity"], [f.format for f in files])
print("loaded:", sorted(m for m in BLOCKED if m in sys.modules))
for what, call in [("plot", lambda: tfimp.plots.accuracy_vs_sparsity(rows, sys.argv[1] + "/plot.png")),
                   ("kcv", lambda: tfimp.models.build("kcv_resnet18_v2", num_classes=5, input_shape=(8, 8, 3))),
                   ("tfds", lambda: tfimp.data.load("cifar10", data_dir=sys.argv[1])),
                   ("cli", lambda: __import__("tfimp.cli.main"))]:
    try:
        call()
        print(what, "no error")
    except ImportError as error:
        print(what, "->", error)
"""


def test_the_core_api_needs_none_of_the_extras(tmp_path):
    result = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, str(tmp_path / "run")], capture_output=True,
                            text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFIMP_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "core ok 0.5 ['keras', 'tflite']" in lines
    assert "loaded: []" in lines
    said = {line.split(" -> ")[0]: line.split(" -> ")[1] for line in lines if " -> " in line}
    assert said["plot"].startswith("the accuracy-vs-sparsity plot needs matplotlib: pip install 'tfimp[cli]'")
    assert said["kcv"].startswith("model 'kcv_resnet18_v2' needs keras-cv: pip install 'tfimp[keras-cv]'")
    assert said["tfds"].startswith("loading datasets through tensorflow-datasets needs tensorflow-datasets: "
                                   "pip install 'tfimp[cli]'")
    assert said["cli"].startswith("the tfimp command line needs ml-collections: pip install 'tfimp[cli]'")


def test_a_keras_cv_backbone_from_the_registry_is_wrapped_pruned_and_trained():
    import keras_cv

    model = tfimp.models.build("kcv_resnet18_v2", num_classes=10, input_shape=(32, 32, 3))
    backbone = model.layers[1]
    assert isinstance(backbone, keras_cv.models.ResNetV2Backbone)
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert model.count_params() == pytest.approx(11.19e6, rel=0.01)  # ResNet-18's size
    wrapped = tfimp.wrap(model)
    assert len(tfimp.wrapping.prunable_kernels(wrapped)) == len(convs) + 1  # every convolution and the head
    tfimp.prune(wrapped, 0.9)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.9)
    wrapped.compile(tfimp.optimizers.make("torch_sgd", 0.01), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = helpers.random_data(8, input_shape=(32, 32, 3), classes=10)
    wrapped.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert tfimp.sparsity(wrapped) == helpers.exact_sparsity(wrapped, 0.9)
    stripped = tfimp.strip(wrapped)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), wrapped.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_writing_a_plot_leaves_the_notebooks_matplotlib_alone(tmp_path):
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # any backend the user chose (a notebook's inline one, say)
    try:
        modules_before = "matplotlib.pyplot" in sys.modules
        path = tfimp.plots.accuracy_vs_sparsity(
            [{"cycle": 0, "sparsity": 0.0, "test_accuracy": 0.9}, {"cycle": 1, "sparsity": 0.5, "test_accuracy": 0.8}],
            str(tmp_path / "plot.png"))
        assert matplotlib.get_backend() == "svg"
        assert ("matplotlib.pyplot" in sys.modules) == modules_before  # no pyplot state touched
        with open(path, "rb") as handle:
            assert handle.read(4) == b"\x89PNG"
    finally:
        matplotlib.use(previous)
