"""Learning-rate schedules against their formulas (docs/algorithms.md), written out here."""

import math

import numpy as np
import pytest

from tfimp import keras, lr
from tfimp.core import retraining

M = 400  # original schedule length in steps


def step_original():
    # warm-up 20 steps, x0.1 at 200 and 300
    return lr.StepDecay(0.1, [200, 300], factor=0.1, warmup_steps=20)


def cosine_original():
    return lr.Cosine(0.2, decay_steps=M, final_learning_rate=0.002)


def _orig_values(schedule):
    return np.array([float(schedule(t)) for t in range(M)])


def _expected(name, schedule, n, eta0=None):
    values = _orig_values(schedule)
    warm = lr.warmup_steps_of(schedule)
    eta_max = values.max()
    eta_min = values[warm:].min()
    w = math.floor(0.1 * n)
    out = []
    for t in range(n):
        if name == "ft":
            out.append(eta_min)
            continue
        if name == "lrw":
            out.append(values[max(M - n + t, 0)])
            continue
        start = eta0 if name == "allr" and eta0 is not None else eta_max
        if t < w:
            out.append(start * (1 - math.cos(math.pi * t / w)) / 2)
            continue
        j, span = t - w, n - w
        if name == "slr":
            index = math.floor(j * M / span)
            out.append(eta_max if index < warm else values[index])
        elif name == "clr":
            out.append(eta_min + (eta_max - eta_min) * (1 + math.cos(math.pi * j / span)) / 2)
        elif name in ("llr", "allr"):
            out.append(start * (1 - j / span))
    return np.array(out)


@pytest.mark.parametrize("original", [step_original, cosine_original], ids=["step", "cosine"])
@pytest.mark.parametrize("name", ["ft", "lrw", "slr", "clr", "llr", "allr"])
@pytest.mark.parametrize("n", [50, 137])
def test_retraining_schedules_follow_the_formulas(name, original, n):
    options = {"initial_lr": 0.037} if name == "allr" else {}
    schedule = lr.retrain_schedule(name, original=original(), original_steps=M, retrain_steps=n, **options)
    got = np.array([float(schedule(t)) for t in range(n)])
    want = _expected(name, original(), n, eta0=options.get("initial_lr"))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)
    assert float(schedule(n + 10)) == pytest.approx(want[-1])  # holds the last value


def test_slr_keeps_relative_milestones_of_a_step_schedule():
    n = 110  # W = 11, span 99
    values = lr.retrain_schedule("slr", original=step_original(), original_steps=M, retrain_steps=n).values
    after = np.array(values[11:])
    # drops at 50% and 75% of the span, like the original
    assert np.flatnonzero(np.diff(after) < 0).tolist() == [math.ceil(99 * 0.5) - 1, math.ceil(99 * 0.75) - 1]


def test_schedules_accept_plain_callables_and_constants():
    def fn(step):  # not vectorisable: evaluated per step
        return 0.1 if step < 200 else 0.01

    values = lr.retrain_schedule("lrw", original=fn, original_steps=M, retrain_steps=300).values
    assert values[0] == 0.1 and values[-1] == 0.01
    ft = lr.retrain_schedule("ft", original=0.05, original_steps=M, retrain_steps=10).values
    assert ft == [0.05] * 10


def test_dense_schedules_values_and_config_round_trip():
    step = lr.StepDecay(0.1, [10, 20], 0.1, warmup_steps=4)
    assert [round(float(step(t)), 6) for t in (0, 3, 4, 9, 10, 25)] == [0.025, 0.1, 0.1, 0.1, 0.01, 0.001]
    cosine = lr.Cosine(1.0, decay_steps=10)
    assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(5)) == pytest.approx(0.5)
    assert float(cosine(10)) == pytest.approx(0.0, abs=1e-7)
    linear = lr.LinearToZero(1.0, decay_steps=10, warmup_steps=5)
    assert float(linear(4)) == pytest.approx(1.0) and float(linear(10)) == pytest.approx(0.5)
    tab = lr.Tabulated([0.3, 0.2, 0.1], name="t")
    for schedule in (step, cosine, linear, tab):
        copy = type(schedule).from_config(schedule.get_config())
        assert [float(copy(t)) for t in range(30)] == [float(schedule(t)) for t in range(30)]
        restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
        assert float(restored(7)) == float(schedule(7))


def test_unknown_and_custom_retraining_schedules():
    with pytest.raises(ValueError, match=r"unknown retraining schedule 'cosine_restart'.*'allr', 'clr', 'ft'"):
        lr.retrain_schedule("cosine_restart", original=0.1, original_steps=10, retrain_steps=10)

    @lr.register("test_half")
    def half(original, steps):
        return np.full(steps, original.eta_max / 2)

    try:
        assert lr.retrain_schedule("test_half", original=0.1, original_steps=10, retrain_steps=3).values == [0.05] * 3
    finally:
        retraining._RETRAIN.unregister("test_half")


def test_allr_initial_lr_formula_and_clipping():
    # unclipped: 0.1 * 0.2 / sqrt(0.25) = 0.04, floor 0.1 * 2/100
    assert lr.allr_initial_lr(0.1, 0.2, 0.25, 2, 100) == pytest.approx(0.04)
    assert lr.allr_initial_lr(0.1, 0.01, 0.25, 10, 100) == pytest.approx(0.01)  # floor T_rt/T * eta_max
    assert lr.allr_initial_lr(0.1, 0.9, 0.25, 2, 100) == pytest.approx(0.1)  # capped at eta_max
    assert lr.allr_initial_lr(0.1, 0.0, 0.5, 300, 100) == pytest.approx(0.1)  # floor min(T_rt/T, 1) = 1
    with pytest.raises(ValueError, match="pruned_fraction"):
        lr.allr_initial_lr(0.1, 0.2, 0.0, 2, 100)
