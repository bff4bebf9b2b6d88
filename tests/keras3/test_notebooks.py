"""The Keras 3 + JAX Colab tutorial executes top to bottom in a Keras 3 kernel (its cells assert what they show)."""

import os

import keras
import pytest

from tfimp.core import datasets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "colab", "06_keras3_jax_own_fit.ipynb")


def test_the_keras3_tutorial_sets_jax_before_keras_and_never_legacy_keras():
    import nbformat

    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    assert "File → Upload notebook" in cells[0].source and "`colab/06_keras3_jax_own_fit.ipynb`" in cells[0].source
    assert "github.com" not in cells[0].source
    install = cells[1].source
    assert 'os.environ["KERAS_BACKEND"] = "jax"' in install and 'os.environ.pop("TF_USE_LEGACY_KERAS", None)' in install
    assert 'os.environ["TF_USE_LEGACY_KERAS"] = "1"' not in install
    assert 'f"{wheels[-1]}[jax,cli,hub]"' in install and "os.kill(os.getpid(), 9)" in install and "git+" not in install
    assert all(not cell.get("outputs") for cell in cells if cell.cell_type == "code")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the tutorial is the JAX one")
@pytest.mark.skipif(not os.path.isdir(datasets.DEBIAN_FASHION_MNIST),
                    reason="needs Debian's dataset-fashion-mnist (its cells assert accuracy above chance)")
def test_the_keras3_jax_tutorial_runs(tmp_path, monkeypatch):
    pytest.importorskip("keras_hub")
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("TFIMP_OFFLINE", "1")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert "on jax" in outputs and "ImageClassifier max |difference|" in outputs
    assert (tmp_path / "keras3_imp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert keras.saving.load_model(str(tmp_path / "fashion_resnet_sparse.keras")).count_params() > 0
