"""The documentation site builds with ``mkdocs build --strict``, and its results tables come from the JSON in docs/."""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()
PAGES = sorted((ROOT / "docs").rglob("*.md"))
MARKERS = [(page, kind, argument) for page in PAGES
           for kind, argument in HOOKS.markers(page.read_text(encoding="utf-8"))]


def test_the_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    fidelity = (site / "results" / "fidelity" / "index.html").read_text(encoding="utf-8")
    assert "tfimp-table" not in fidelity and "<table>" in fidelity  # the markers became tables
    assert "tfimp.core.plan.Plan" in (site / "api" / "plan" / "index.html").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "colab").glob("*.ipynb")):  # the tutorials are pages
        assert (site / "colab" / notebook.stem / "index.html").is_file(), notebook.name


def test_every_marker_renders_a_table_or_a_source_sentence():
    assert len([m for m in MARKERS if m[1] == "table"]) >= 15
    for page, kind, argument in MARKERS:
        rendered = HOOKS.render(kind, argument)
        if kind == "table":
            lines = rendered.splitlines()
            assert len(lines) >= 3 and lines[1].startswith("|---"), (page.name, argument)
            cells = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
            assert len(cells) == 1, (page.name, argument)  # a rectangular table
        else:
            assert re.search(r"produced by `.+` (committed )?at revision `[0-9a-f]{7,}`", rendered), rendered


def test_every_table_on_a_page_names_its_source_there():
    for page in PAGES:
        found = HOOKS.markers(page.read_text(encoding="utf-8"))
        tables = {argument.split("#")[0].strip() for kind, argument in found if kind == "table"}
        sources = {argument.split(";")[0].strip() for kind, argument in found if kind == "source"}
        assert tables <= sources, (page.name, tables - sources)


def test_a_marker_naming_a_missing_file_view_or_key_stops_the_build(tmp_path, monkeypatch):
    with pytest.raises(HOOKS.MarkerError, match="does not exist"):
        HOOKS.expand("<!-- tfimp-table: no_such_file.json -->")
    with pytest.raises(HOOKS.MarkerError, match="unknown view"):
        HOOKS.expand("<!-- tfimp-table: speed_front_ends.json#no_such_view -->")
    (tmp_path / "bare.json").write_text(json.dumps({"columns": ["a"]}))
    (tmp_path / "runs.json").write_text(json.dumps({"results": [{"group": "a", "method": "dense"}]}))
    monkeypatch.setattr(HOOKS, "DOCS", tmp_path)
    with pytest.raises(HOOKS.MarkerError, match="no key 'rows'"):
        HOOKS.expand("<!-- tfimp-table: bare.json -->")
    with pytest.raises(HOOKS.MarkerError, match="does not hold what view"):
        HOOKS.expand("<!-- tfimp-table: runs.json#methods-a -->")
    with pytest.raises(HOOKS.MarkerError, match="names no command"):
        HOOKS.expand("<!-- tfimp-source: bare.json -->")


def test_numbers_are_rounded_as_printed():
    assert HOOKS.fixed(91.015) == "91.02" and HOOKS.fixed(-0.069997) == "\u22120.07"
    assert HOOKS.fixed(0.0401, sign=True) == "+0.04" and HOOKS.mean_std([86.0, 86.99]) == "86.50 ± 0.70"


def test_the_readme_summary_holds_for_the_fidelity_figures():
    """README: every fidelity row within 0.3 points of the authors' mean, on tf_keras and on Keras 3 + JAX."""
    for name in ("fidelity_fashion_mnist.json", "fidelity_fashion_mnist_keras3_jax.json"):
        summary = json.loads((ROOT / "docs" / name).read_text(encoding="utf-8"))["summary"]
        assert max(abs(row["difference"]) for row in summary) <= 0.3, name


def test_the_torch_methods_view_lists_the_reference_first_and_each_side_against_it():
    def run(side, accuracy):
        return {"side": side, "method": "lc", "seed": 0, "test_accuracy": accuracy, "sparsity": 0.9,
                "layer_sparsity": {"fc1": 0.95, "fc2": 0.5}}

    data = {"layers": ["fc1", "fc2"], "results": [run("tf_keras", 0.801), run("torch", 0.8)],
            "summary": [{"side": "tf_keras", "method": "lc", "mean_accuracy_difference": 0.1,
                         "mean_kept_differences": 12.0, "mean_kernel_relative_difference": 2.5e-8}]}
    lines = HOOKS.torch_methods(data, "x.json").splitlines()
    assert len(lines) == 4 and "seeds 0" in lines[0] and "fc1 / fc2" in lines[0]
    assert lines[2] == "| LC | PyTorch reference | 80.00 | 90.00% | 95.0% / 50.0% | (reference) |  |  |"
    assert lines[3] == "| LC | tfimp, tf_keras | 80.10 | 90.00% | 95.0% / 50.0% | +0.10 | 12 | 2.5e\u221208 |"
    consistent = json.loads((ROOT / "docs" / "fidelity_methods_steps.json").read_text(encoding="utf-8"))
    for row in consistent["summary"]:  # the 20-step check: LC and GSM step for step on every front end
        if row["method"] in ("lc", "gsm") and row["side"] != "torch64":
            assert row["mean_kept_differences"] == 0 and row["mean_kernel_relative_difference"] < 1e-6, row
