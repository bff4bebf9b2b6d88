"""Where a benchmark's figures came from: the commit of this checkout, for the JSON each script writes."""

from __future__ import annotations

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_revision() -> str:
    """The short commit of this checkout; ``-dirty`` when tfimp/ or benchmarks/ differ from it (outputs under
    docs/ do not count); ``unknown`` outside a git checkout."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                               timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "tfimp", "benchmarks"],
                               cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if not found:
        return "unknown"
    return f"{found}-dirty" if dirty else found
