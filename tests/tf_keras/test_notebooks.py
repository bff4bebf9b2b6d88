"""The Colab tutorials execute top to bottom (outputs are stripped in the repository)."""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The tf_keras tutorials (the Keras 3 ones, ``*keras3*``, run in tests/keras3/test_notebooks.py).
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(REPO, "colab")) if f.endswith(".ipynb") and "keras3" not in f)


def test_there_are_five_tf_keras_tutorials_each_saying_how_to_open_it_in_colab_and_an_install_cell():
    import nbformat

    assert NOTEBOOKS == ["01_quickstart.ipynb", "02_retraining_schedules.ipynb", "03_global_vs_layerwise.ipynb",
                         "04_export.ipynb", "05_keras_cv_own_fit.ipynb"]
    for name in NOTEBOOKS:
        cells = nbformat.read(os.path.join(REPO, "colab", name), as_version=4).cells
        # No public repository: the first cell says how to upload the notebook to Colab, and links nowhere else.
        assert "File → Upload notebook" in cells[0].source and f"`colab/{name}`" in cells[0].source
        assert "github.com" not in cells[0].source
        install = cells[1].source
        assert 'os.environ["TF_USE_LEGACY_KERAS"] = "1"' in install and "os.kill(os.getpid(), 9)" in install
        assert 'f"{wheels[-1]}[cli,keras-cv]"' in install and 'f"{TFIMP_SOURCE}[cli,keras-cv]"' in install
        assert "git+" not in install and "pip wheel --no-deps -w dist ." in install


@pytest.mark.parametrize("numpy_changes", [False, True, None])
def test_the_install_cell_installs_and_restarts_only_when_needed(tmp_path, numpy_changes):
    """The install cell where tfimp is missing: pip gets the uploaded wheel; the runtime restarts only when a
    package it has already imported (here NumPy) changed on disk. Without a wheel (``None``) it says what to do."""
    import json
    import subprocess
    import sys

    import nbformat

    install = nbformat.read(os.path.join(REPO, "colab", NOTEBOOKS[0]), as_version=4).cells[1].source
    if numpy_changes is not None:
        (tmp_path / "tfimp-9.9.9-py3-none-any.whl").write_text("not really a wheel")
    driver = f"""
import importlib.metadata as metadata, importlib.util, json, os, subprocess, sys
import numpy
calls, kills = [], []
real_find_spec, real_version = importlib.util.find_spec, metadata.version
importlib.util.find_spec = lambda name, *a: None if name == "tfimp" else real_find_spec(name, *a)
subprocess.check_call = lambda args: calls.append(args)
def version(name):
    if name == "tfimp":
        return "9.9.9"
    if name == "numpy" and {numpy_changes!r} and calls:  # after the pip call: another NumPy on disk
        return "0.0.1"
    return real_version(name)
metadata.version = version
os.kill = lambda pid, signal: kills.append(signal)
exec(compile({install!r}, "install", "exec"))
print(json.dumps([calls, kills]))
"""
    result = subprocess.run([sys.executable, "-c", driver], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    if numpy_changes is None:
        assert result.returncode != 0 and "upload a tfimp-*.whl built in your clone" in result.stderr
        return
    assert result.returncode == 0, result.stderr[-2000:]
    calls, kills = json.loads(result.stdout.strip().splitlines()[-1])
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "tfimp-9.9.9-py3-none-any.whl[cli,keras-cv]"]]
    assert kills == ([9] if numpy_changes else [])
    assert ("restarting the runtime (['numpy'])" in result.stdout) == numpy_changes


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_is_stored_without_outputs(name, tmp_path, fashion_dir, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(REPO, "colab", name)
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    assert "pip" in notebook.cells[1].source  # the install cell comes first
    # The fixture's idx files (a subset of the real data, or generated files without Debian's package).
    loads = [cell for cell in notebook.cells if 'test_subset=2000, seed=0)' in cell.source]
    assert loads, f"{name} no longer loads its data as this test expects"
    for cell in loads:
        cell.source = cell.source.replace('test_subset=2000, seed=0)', f'test_subset=2000, seed=0, data_dir={fashion_dir!r})')
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("TFIMP_OFFLINE", "1")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
