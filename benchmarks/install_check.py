"""Installs tfimp into fresh virtual environments at the oldest and newest versions setup.py allows, runs tests there.

For each TensorFlow minor version given, a new venv gets ``tensorflow==V.*``,
``tf-keras==V.*`` (and, for the oldest, the oldest tensorflow-model-optimization
allowed), then ``pip install -e .[test]``, and runs a subset of the test suite
in it. Prints one line per version: what got installed, the test result and
the minutes it took. Slow (each venv downloads TensorFlow): a benchmark-style
script, not part of the test suite.

Run:  python benchmarks/install_check.py                      (2.16 with tfmot 0.8.0, and 2.21)
      python benchmarks/install_check.py --versions 2.18 --tests tests/test_api.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS3_SUITE = ("tests/keras3",)
DEFAULT_TESTS = ("tests/test_backend.py", "tests/test_private.py", "tests/test_api.py", "tests/test_wrap.py", "tests/test_imp.py",
                 "tests/test_cli.py::test_cli_end_to_end_then_resume_is_a_no_op")


def check(version: str, tests: list[str], oldest_tfmot: bool, keep: bool) -> dict:
    root = tempfile.mkdtemp(prefix=f"tfimp-venv-{version}-")
    venv = os.path.join(root, "venv")
    python = os.path.join(venv, "bin", "python")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pins = [f"tensorflow=={version}.*", f"tf-keras=={version}.*"]
    if oldest_tfmot:
        pins.append("tensorflow-model-optimization==0.8.0")
    install = subprocess.run([python, "-m", "pip", "install", "-q", *pins, "-e", f"{REPO}[test]"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        return {"version": f"TensorFlow {version}", "installed": "", "result": "install failed: " + install.stderr[-2000:],
                "minutes": (time.perf_counter() - start) / 60}
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.splitlines()
    installed = ", ".join(line for line in freeze if line.split("==")[0].lower() in (
        "tensorflow", "tf-keras", "tf_keras", "tensorflow-model-optimization", "keras-cv", "absl-py", "numpy"))
    result = subprocess.run([python, "-m", "pytest", "-q", "-x", *tests], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "TFIMP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    if not keep:
        subprocess.run(["rm", "-rf", root])
    return {"version": f"TensorFlow {version}", "installed": installed, "passed": result.returncode == 0, "result": summary,
            "tail": "" if result.returncode == 0 else result.stdout[-3000:] + result.stderr[-2000:],
            "minutes": (time.perf_counter() - start) / 60}


def check_torch(torch_version: str, tests: list[str], keep: bool) -> dict:
    """A venv with tfimp's test extra and ``torch==torch_version``; the Keras 3 suite on the torch backend."""
    root = tempfile.mkdtemp(prefix=f"tfimp-venv-torch-{torch_version}-")
    venv = os.path.join(root, "venv")
    python = os.path.join(venv, "bin", "python")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    install = subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={torch_version}", "-e", f"{REPO}[test]"],
                             capture_output=True, text=True)
    installed_s = time.perf_counter() - start
    if install.returncode != 0:
        return {"version": f"torch {torch_version}", "installed": "", "minutes": installed_s / 60,
                "result": "install failed: " + install.stderr[-2000:]}
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.splitlines()
    installed = ", ".join(line for line in freeze if line.split("==")[0].lower() in ("torch", "keras", "jax"))
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND")}
    result = subprocess.run([python, "-m", "pytest", "-q", *tests], cwd=REPO, capture_output=True, text=True,
                            env={**env, "TFIMP_TEST_KERAS": "3", "KERAS_BACKEND": "torch", "TFIMP_OFFLINE": "1",
                                 "TF_CPP_MIN_LOG_LEVEL": "2"})
    summary = next((line for line in reversed(result.stdout.strip().splitlines()) if " in " in line),
                   "(no output)")
    if not keep:
        subprocess.run(["rm", "-rf", root])
    return {"version": f"torch {torch_version}", "installed": f"{installed} (install {installed_s:.0f} s)",
            "passed": result.returncode == 0, "result": summary,
            "tail": "" if result.returncode == 0 else result.stdout[-3000:] + result.stderr[-2000:],
            "minutes": (time.perf_counter() - start) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="2.16,2.21", help="TensorFlow minor versions; the first is the oldest")
    parser.add_argument("--tests", nargs="*", default=list(DEFAULT_TESTS))
    parser.add_argument("--keep", action="store_true", help="keep the venvs (their paths are printed)")
    parser.add_argument("--torch", default="", help="a PyTorch version: run the Keras 3 suite on torch instead")
    args = parser.parse_args()
    versions = [v for v in args.versions.split(",") if v]
    failed = False
    if args.torch:
        tests = args.tests if args.tests != list(DEFAULT_TESTS) else list(KERAS3_SUITE)
        outcomes = [check_torch(args.torch, tests, args.keep)]
    else:
        outcomes = [check(version, args.tests, oldest_tfmot=index == 0 and len(versions) > 1, keep=args.keep)
                    for index, version in enumerate(versions)]
    for outcome in outcomes:
        print(f"{outcome['version']}: {outcome['installed']}\n  tests: {outcome['result']} "
              f"({outcome['minutes']:.1f} min)", flush=True)
        if not outcome.get("passed"):
            failed = True
            print(outcome.get("tail", ""), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
