"""The project's documents are its own: no pointers outside the repository, and the algorithms page is linked."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".json"} and path.exists():
            yield name, path.read_text(encoding="utf-8", errors="replace")


def test_nothing_points_outside_the_repository():
    offenders = [name for name, text in _tracked_text_files()
                 if re.search(r"\.\./shared|shared/reference|ALGORITHMS\.md", text) and name != "tests/test_docs.py"]
    assert offenders == []


def test_algorithms_page_defines_every_schedule_and_criterion_and_is_linked():
    page = (ROOT / "docs" / "algorithms.md").read_text(encoding="utf-8")
    from tfimp import criteria, lr

    for name in criteria.known():
        assert f"`{name}`" in page, name
    for name in lr.known():
        assert re.search(rf"\b{name.upper()}\b", page), name
    for source in ("README.md", "tfimp/lr.py", "tfimp/criteria.py"):
        assert "docs/algorithms.md" in (ROOT / source).read_text(encoding="utf-8"), source
