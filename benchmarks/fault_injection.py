"""Kills and damages a small IMP run at random moments and checks what tfimp promises about resuming.

    python benchmarks/fault_injection.py [--kills 20] [--truncations 10] [--seed 0] [--keras 2|3]

1. An uninterrupted reference run (small CNN on generated data, 3 cycles,
   per-epoch checkpoints) gives the reference rows.
2. **Kills**: one run is killed with SIGKILL at ``--kills`` random moments
   (each restart resumes from its workdir), then resumed to the end. Its
   final rows must equal the reference's bit for bit.
3. **Truncations**: ``--truncations`` times, a fresh run is killed at a random
   moment, one random file of its workdir is cut to half its size, and the
   run is resumed. It must either finish with the reference's rows (the
   damaged file redone from a good checkpoint) or refuse with an error that
   names the damaged file; finishing with other rows (a damaged file used)
   or a bare traceback is a failure.

Prints each fault's outcome and the counts; exits 1 on any failure. The
runs are subprocesses (``--keras 3`` runs with ``KERAS_BACKEND`` as set,
default jax).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
import numpy as np
keras_version, workdir = int(sys.argv[1]), sys.argv[2]
import tfimp
keras = tfimp.use_keras(keras_version)
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 8, 8, 3)).astype("float32")
y = (x.reshape(512, -1)[:, :5].argmax(1)).astype("int32")
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 3))
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
h = keras.layers.Flatten()(h)
h = keras.layers.Dense(32, activation="relu", name="fc1")(h)
model = keras.Model(inputs, keras.layers.Dense(5, name="fc2")(h))
print("TRAINING", flush=True)  # the parent times its kills from here, past the imports
rows = tfimp.IMP(target_sparsity=0.875, cycles=3, dense_epochs=2, retrain_epochs=2, batch_size=32,
                 learning_rate=0.05, chance_guard=False).run(model, (x, y), test=(x[:128], y[:128]),
                                                             workdir=workdir, verbose=0)
print("ROWS " + json.dumps([{k: v for k, v in r.items() if "wall" not in k} for r in rows]), flush=True)
"""


def _start(workdir: str, keras_version: int, errors=subprocess.PIPE) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if keras_version == 3:
        env.setdefault("KERAS_BACKEND", "jax")
    return subprocess.Popen([sys.executable, "-c", _WORKER, str(keras_version), workdir, REPO], env=env,
                            stdout=subprocess.PIPE, stderr=errors, text=True)


def _training_started(process: subprocess.Popen) -> float:
    """Reads the worker's output up to its "TRAINING" line; returns when that was (``perf_counter``)."""
    for line in process.stdout:
        if line.startswith("TRAINING"):
            break
    return time.perf_counter()


def _finish(process: subprocess.Popen) -> tuple[int, object, str]:
    out, err = process.communicate(timeout=1800)
    rows = next((json.loads(line[5:]) for line in out.splitlines() if line.startswith("ROWS ")), None)
    return process.returncode, rows, err


def _run_to_end(workdir: str, keras_version: int) -> tuple[int, object, str]:
    return _finish(_start(workdir, keras_version))


def _kill_after(workdir: str, keras_version: int, delay: float) -> bool:
    """Starts a run, SIGKILLs it ``delay`` seconds into its training; ``False`` when it finished before."""
    process = _start(workdir, keras_version, errors=subprocess.DEVNULL)  # killed: nothing of it is read
    _training_started(process)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def last_line(text: str) -> str:
    """The last line of a process's standard error: the error it stopped with."""
    return text.strip().splitlines()[-1] if text.strip() else ""


def _files(workdir: str) -> list[str]:
    found = []
    for root, _, names in os.walk(workdir):
        found += [os.path.join(root, name) for name in names if name != "run.lock" and not name.endswith(".tmp")]
    return sorted(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--truncations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keras", type=int, choices=(2, 3), default=2)
    parser.add_argument("--scratch", default=None, help="where the workdirs go (default: a temporary directory)")
    args = parser.parse_args(argv)
    chooser = random.Random(args.seed)
    scratch = args.scratch or tempfile.mkdtemp(prefix="tfimp-faults-")
    os.makedirs(scratch, exist_ok=True)

    process = _start(os.path.join(scratch, "reference"), args.keras)
    started = _training_started(process)
    code, reference, err = _finish(process)
    duration = time.perf_counter() - started  # training, evaluations and saves: where kills and cuts land
    if code != 0 or reference is None:
        print(f"the reference run failed:\n{err[-3000:]}", file=sys.stderr)
        return 1
    print(f"reference run: {len(reference)} rows, {duration:.1f} s from the start of training", flush=True)

    failures = 0
    killed_dir = os.path.join(scratch, "killed")
    kills = 0
    for index in range(args.kills):
        delay = chooser.uniform(0.0, duration)
        kills += _kill_after(killed_dir, args.keras, delay)
        print(f"kill {index + 1}/{args.kills} at {delay:.1f} s", flush=True)
    code, rows, err = _run_to_end(killed_dir, args.keras)
    kills_ok = code == 0 and rows == reference
    failures += not kills_ok
    print(f"kills: {kills} of {args.kills} landed before the end; resumed run "
          f"{'equals the reference bit for bit' if kills_ok else 'DIFFERS from the reference: ' + err[-2000:]}",
          flush=True)

    outcomes = {"redone": 0, "refused": 0, "used": 0, "crashed": 0}
    for index in range(args.truncations):
        workdir = os.path.join(scratch, f"truncated_{index}")
        shutil.rmtree(workdir, ignore_errors=True)
        _kill_after(workdir, args.keras, chooser.uniform(0.0, duration * 1.1))
        files = _files(workdir)
        if not files:
            print(f"truncation {index + 1}: nothing written yet", flush=True)
            continue
        victim = chooser.choice(files)
        with open(victim, "rb") as handle:
            data = handle.read()
        with open(victim, "wb") as handle:
            handle.write(data[: len(data) // 2])
        code, rows, err = _run_to_end(workdir, args.keras)
        name = os.path.relpath(victim, workdir)
        if code == 0 and rows == reference:
            outcome = "redone"
        elif code != 0 and "is damaged" in last_line(err) and os.path.basename(victim) in last_line(err):
            outcome = "refused"  # one error that names the damaged file
        elif code == 0:
            outcome = "used"
        else:
            outcome = "crashed"
        outcomes[outcome] += 1
        failures += outcome in ("used", "crashed")
        last_error = last_line(err)
        print(f"truncation {index + 1}/{args.truncations}: {name} cut to {len(data) // 2} of {len(data)} bytes -> "
              f"{outcome}" + (f" ({last_error[:200]})" if outcome != "redone" else ""), flush=True)

    print(json.dumps({"keras": args.keras, "kills": args.kills, "kills_landed": kills, "kills_bit_identical": kills_ok,
                      "truncations": args.truncations, **outcomes, "failures": failures}), flush=True)
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
