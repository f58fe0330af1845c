"""Each LR schedule's values at chosen steps."""

import math

import pytest

from tfclf.training.schedules import SCHEDULES, ScheduleConfig, cycle_ends, schedule_values

SPE = 10  # steps per epoch


def values(**kw):
    kw.setdefault("warmup_epochs", 0.0)  # the library default warms up for 1 epoch
    return schedule_values(ScheduleConfig(**kw), SPE)


def test_constant():
    assert values(kind="constant", lr=0.3, epochs=3) == [pytest.approx(0.3)] * 30


def test_step_decays_every_n_epochs():
    v = values(kind="step", lr=1.0, epochs=7, step_epochs=3, gamma=0.1)
    assert v[0] == v[29] == pytest.approx(1.0)
    assert v[30] == v[59] == pytest.approx(0.1)
    assert v[60] == pytest.approx(0.01)


def test_multistep_at_milestones():
    v = values(kind="multistep", lr=0.1, epochs=100, milestones=(60, 90))
    assert v[599] == pytest.approx(0.1) and v[600] == pytest.approx(0.01)
    assert v[899] == pytest.approx(0.01) and v[900] == pytest.approx(0.001)


def test_exponential_per_epoch_report001():
    v = values(kind="exponential", lr=0.1, epochs=4, gamma=0.7)
    assert v[0] == v[9] == pytest.approx(0.1)
    assert v[10] == pytest.approx(0.07) and v[39] == pytest.approx(0.1 * 0.7**3)


def test_cosine_ends_at_min_lr():
    v = values(kind="cosine", lr=0.2, epochs=10, min_lr=0.002)
    assert v[0] == pytest.approx(0.2)
    assert v[50] == pytest.approx(0.002 + 0.5 * (0.2 - 0.002), rel=1e-3)
    assert v[-1] == pytest.approx(0.002, rel=0.05)


def test_linear_falls_straight_to_min_lr():
    v = values(kind="linear", lr=0.1, epochs=10, min_lr=0.01, warmup_epochs=1)
    assert v[9] == pytest.approx(0.1) and v[10] == pytest.approx(0.1)
    assert v[55] == pytest.approx(0.055, rel=1e-3)  # halfway through the 9 decay epochs
    assert v[-1] == pytest.approx(0.01 + 0.09 / 90, rel=1e-3)  # one step before the end


def test_cosine_restarts_report000():
    # start 1e-3, first cycle 20 epochs, each cycle twice as long: restarts at 20 and 60
    v = values(kind="cosine_restarts", lr=1e-3, epochs=70, restart_epochs=20, t_mul=2.0)
    assert v[0] == pytest.approx(1e-3)
    assert v[199] < 1e-5 and v[200] == pytest.approx(1e-3)
    assert v[400] == pytest.approx(0.5e-3, rel=1e-3)  # middle of the 40-epoch cycle
    assert v[599] < 1e-5 and v[600] == pytest.approx(1e-3)


def test_cyclic_triangular():
    v = values(kind="cyclic", lr=1.0, min_lr=0.0, epochs=4, cycle_epochs=2)
    assert (
        v[0] == pytest.approx(0.0) and v[10] == pytest.approx(1.0) and v[15] == pytest.approx(0.5)
    )
    assert v[20] == pytest.approx(0.0)


def test_warmup_is_linear_then_hands_over():
    v = values(kind="cosine", lr=0.4, epochs=12, warmup_epochs=2)
    assert v[0] == pytest.approx(0.4 / 20) and v[9] == pytest.approx(0.2)
    assert v[19] == pytest.approx(0.4) and v[20] == pytest.approx(0.4)
    assert v[70] == pytest.approx(0.2, rel=1e-3)  # halfway through the 10 cosine epochs


@pytest.mark.parametrize("kind", SCHEDULES)
def test_every_schedule_is_positive_and_finite(kind):
    v = values(kind=kind, lr=0.1, epochs=5, min_lr=1e-4)
    assert all(math.isfinite(x) and x >= 0 for x in v) and max(v) <= 0.1 + 1e-6


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"kind": "nope"}, "unknown schedule"),
        ({"lr": -1}, "positive"),
        ({"warmup_epochs": 40, "epochs": 30}, "warm-up"),
    ],
)
def test_bad_schedules(kw, match):
    with pytest.raises(ValueError, match=match):
        ScheduleConfig(**kw).validate()


@pytest.mark.parametrize(
    "kw, ends",
    [
        (dict(kind="cosine_restarts", epochs=6, restart_epochs=2, t_mul=1.0), [2, 4, 6]),
        (dict(kind="cosine_restarts", epochs=8, restart_epochs=1, t_mul=2.0), [1, 3, 7, 8]),
        (dict(kind="cosine_restarts", epochs=7, restart_epochs=2, warmup_epochs=1), [3, 7]),
        (dict(kind="cyclic", epochs=6, cycle_epochs=2), [2, 4, 6]),
        (dict(kind="cosine", epochs=6), [6]),
        (dict(kind="constant", epochs=3), [3]),
    ],
)
def test_cycle_ends_are_the_learning_rates_low_points_and_the_last_epoch(kw, ends):
    kw.setdefault("warmup_epochs", 0.0)
    cfg = ScheduleConfig(lr=0.1, min_lr=0.001, **kw)
    assert cycle_ends(cfg, SPE) == ends
