"""A process that holds a workdir's lock until killed (framework-free: every suite uses it)."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from tfimp.core import workdir
workdir.acquire(sys.argv[1], verbose=0)
print("held", flush=True)
time.sleep(300)
"""


def hold(run: str) -> subprocess.Popen:
    """Starts a process that takes the lock of workdir ``run``; returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run), str(REPO)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
