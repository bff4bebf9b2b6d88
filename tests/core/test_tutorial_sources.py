"""Each tutorial's jupytext source (colab/NN_name.py) and its notebook (colab/NN_name.ipynb) hold the same cells."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "colab").glob("*.py"))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_every_notebook_has_its_source_and_nothing_generates_them():
    assert [p.stem for p in SOURCES] == [p.stem for p in sorted((ROOT / "colab").glob("*.ipynb"))]
    assert len(SOURCES) == 6 and not (ROOT / "colab" / "_build_notebooks.py").exists()


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_the_notebook_holds_the_cells_of_its_source(source):
    import jupytext
    import nbformat

    script = jupytext.read(source)
    assert script.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert _cells(notebook) == _cells(script), f"run: jupytext --to ipynb colab/{source.name}"
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.cells[0].cell_type == "markdown" and "pip" in notebook.cells[1].source
