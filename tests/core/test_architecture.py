"""The house's rules: the package layout and the import contracts of ``.importlinter``, checked on the source."""

import os
import pathlib
import shutil
import subprocess
import sys

import grimp
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "tfimp"
SUBPACKAGES = {"core", "tf_keras", "keras3", "tfdata", "cli"}


def _lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts, on the ``tfimp`` package found under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--config", str(REPO / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_package_is_the_core_two_front_ends_the_pipelines_and_the_cli():
    modules = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules == {"__init__.py", "__main__.py"}, modules
    assert packages == SUBPACKAGES, packages


def test_every_import_contract_is_kept():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 7 kept, 0 broken." in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("module, line, broken", [
    ("core/plan.py", "import tensorflow", "tfimp.core imports only tfimp.core and no framework"),
    ("keras3/lr.py", "from tfimp.tf_keras import lr as _other", "the two front ends never import each other"),
    ("tf_keras/guards.py", "from tfimp.cli import config as _config", "no library module imports the CLI"),
    ("keras3/wrapper.py", "from tfimp.keras3 import masks as _masks",
     "no import cycles between the modules of a package"),
])
def test_a_broken_rule_is_caught(tmp_path, module, line, broken):
    copy = tmp_path / "tfimp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # the test's violation\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in " ".join(result.stdout.split()), result.stdout[-3000:]


def test_no_library_module_imports_the_routing_package_root():
    graph = grimp.build_graph("tfimp", cache_dir=None)
    importers = {m for m in graph.find_modules_that_directly_import("tfimp")
                 if m.split(".")[1] in SUBPACKAGES - {"cli"}}
    assert importers == set(), importers


def test_ruff_finds_nothing_in_the_repository():
    """``ruff check`` with ``ruff.toml`` (pycodestyle and pyflakes) is clean, and it does catch a planted error."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    planted = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(REPO / "ruff.toml"),
                              "--stdin-filename", "tfimp/core/planted.py", "-"], input="import os\n", cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert planted.returncode == 1 and "F401" in planted.stdout, planted.stdout
