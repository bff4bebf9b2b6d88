"""The DPF diagnosis' printed tables (benchmarks/diagnose_dpf.py), read back for both suites' tests."""


def tables(stdout: str) -> dict:
    """title -> rows of (epoch, sparsity, revived, updates), for the seed-0 runs at 95%."""
    found, title = {}, None
    for line in stdout.splitlines():
        if " at 95%, seed 0" in line:
            title = line.split(" at ")[0]
            found[title] = []
        elif title and line.split() and line.split()[0].isdigit():
            cells = line.split()
            found[title].append((int(cells[0]), float(cells[2]), float(cells[6]), int(cells[7])))
    return found


def check_two_epochs_of_512(result) -> None:
    """What a ``--seeds 0 --epochs 2 --train_subset 512`` diagnosis must show, on either front end."""
    assert result.returncode == 0, result.stderr[-3000:]
    traced = tables(result.stdout)
    assert list(traced) == ["DPF (reference: mask every 16 steps)", "DPF, mask every step", "global GMP"]
    for title, rows in traced.items():
        assert [row[0] for row in rows] == [1, 2], title
        assert rows[-1][1] == 0.95, title  # every method trains its last epoch at the target
    # DPF's mask every step: at most one change per step (4 steps an epoch: 512 / 128) once the ramp has begun.
    assert 1 <= traced["DPF, mask every step"][-1][3] <= 4
    assert all(row[2] == 0.0 for row in traced["global GMP"])  # GMP's masks only grow: nothing revived
