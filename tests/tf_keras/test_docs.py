"""The project's documents are its own: no pointers outside the repository, and the algorithms page is linked."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".json"} and path.exists():
            yield name, path.read_text(encoding="utf-8", errors="replace")


def test_nothing_points_outside_the_repository():
    offenders = [name for name, text in _tracked_text_files()
                 if re.search(r"\.\./shared|shared/reference|ALGORITHMS\.md", text) and name != "tests/tf_keras/test_docs.py"]
    assert offenders == []


def test_algorithms_page_defines_every_schedule_and_criterion_and_is_linked():
    page = (ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8")
    from tfimp import criteria, lr

    for name in criteria.known():
        assert f"`{name}`" in page, name
    for name in lr.known():
        assert re.search(rf"\b{name.upper()}\b", page), name
    for source in ("README.md", "tfimp/tf_keras/lr.py", "tfimp/core/retraining.py", "tfimp/core/criteria.py"):
        assert "docs/algorithms.md" in (ROOT / source).read_text(encoding="utf-8"), source


def _quickstart_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command_and_both_make_a_venv():
    install_and_run, test = _quickstart_commands()
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").count(test) == 1
    for command in (install_and_run, test):
        assert command.startswith("{ python3 -m venv .venv") and ". .venv/bin/activate && pip install -e" in command
    assert 'pip install -e ".[cli]"' in install_and_run and 'pip install -e ".[test]"' in test


def test_the_core_requirements_leave_the_extras_out():
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    arguments = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    core = " ".join(arguments["install_requires"])
    for optional in ("ml-collections", "tensorflow-datasets", "matplotlib", "keras-cv"):
        assert optional not in core
    assert {"cli", "keras-cv", "test"} <= set(arguments["extras_require"])
    assert any(r.startswith("tensorflow>=2.16,<2.22") for r in arguments["install_requires"])
