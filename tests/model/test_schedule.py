"""Step schedule of stepwise EM and the Page-Hinkley drift monitor."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.model.schedule import DriftMonitor, StepSchedule


def schedule(**kw) -> StepSchedule:
    args = dict(alpha=0.6, t0=2.0, step_unit=500, forget_horizon=20000.0)
    args.update(kw)
    return StepSchedule(**args)


def test_step_grows_with_batch_size_and_small_polls_move_little():
    s = schedule()
    t = 50_000.0
    steps = [s.step(t, n) for n in (1, 3, 50, 500, 5000)]
    assert steps == sorted(steps)
    # Three events move the model about 3/500 as far as five hundred.
    assert steps[1] / steps[3] == pytest.approx(3 / 500, rel=0.1)


def test_split_batch_takes_nearly_the_same_step_as_whole():
    s = schedule()
    t = 10_000.0
    whole = s.step(t, 500)
    keep = (1 - s.step(t, 250)) * (1 - s.step(t + 250, 250))
    assert 1 - keep == pytest.approx(whole, rel=0.01)


def test_schedule_decays_as_a_power_of_time():
    s = schedule(forget_horizon=None)
    eta = [s.step(t, 500) for t in (0.0, 500.0 * 98, 500.0 * 998)]
    assert eta[0] == pytest.approx(2.0**-0.6)
    assert eta[1] == pytest.approx(100.0**-0.6)
    assert eta[2] == pytest.approx(1000.0**-0.6)


def test_floor_is_a_forgetting_horizon_in_events():
    s = schedule(forget_horizon=10_000.0)
    late = s.step(1e12, 1000)
    assert late == pytest.approx(1 - (1 - 1e-4) ** 1000)
    # Without a floor the step keeps shrinking.
    assert schedule(forget_horizon=None).step(1e12, 1000) < late / 100


@pytest.mark.parametrize("kw, field", [
    (dict(alpha=0.5), "alpha"), (dict(alpha=1.2), "alpha"), (dict(t0=0.5), "t0"),
    (dict(step_unit=0), "step_unit"), (dict(forget_horizon=0.5), "forget_horizon"),
])
def test_invalid_schedule_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        schedule(**kw)


def feed(mon: DriftMonitor, rng, n_batches: int, size: int, mean: float = -15.0) -> int:
    alarms = 0
    for _ in range(n_batches):
        # Log-likelihoods of a 10-d Gaussian: -d/2 log 2pi - chi2_10 / 2, skewed left.
        ll = mean - rng.chisquare(10, size) / 2.0
        alarms += mon.update(ll)
    return alarms


@pytest.mark.parametrize("size", [1, 3, 50, 500])
def test_no_alarm_on_a_stationary_stream_whatever_the_poll_size(size):
    rng = np.random.default_rng(size)
    mon = DriftMonitor(8.0)
    n_events = 400_000
    alarms = feed(mon, rng, n_events // size, size)
    assert alarms == 0, f"{alarms} false alarms in {n_events} events in polls of {size}"


def test_alarm_soon_after_a_fall_even_in_small_polls():
    rng = np.random.default_rng(1)
    for size in (3, 500):
        mon = DriftMonitor(8.0)
        feed(mon, rng, 20_000 // size, size)
        events = 0
        while not mon.update(-20.0 - rng.chisquare(10, size) / 2.0):
            events += size
            assert events < 2000, f"no alarm {events} events after a fall of 5 nats"


def test_one_outlier_in_a_small_poll_does_not_alarm():
    rng = np.random.default_rng(2)
    mon = DriftMonitor(8.0)
    feed(mon, rng, 4000, 1)
    for _ in range(600):
        assert not mon.update(np.array([-1e6]))
        feed(mon, rng, 10, 1)


def test_zero_weights_are_ignored_and_none_threshold_never_alarms():
    rng = np.random.default_rng(3)
    mon = DriftMonitor(8.0)
    feed(mon, rng, 20, 500)
    for _ in range(20):
        assert not mon.update(np.full(500, -1e3), np.zeros(500))
    off = DriftMonitor(None)
    assert not any(off.update(np.full(500, v)) for v in (-15.0, -1e3, -1e3, -1e3))


def test_state_round_trips_mid_block():
    rng = np.random.default_rng(4)
    a = DriftMonitor(8.0)
    feed(a, rng, 30, 100)
    b = DriftMonitor.from_array(8.0, a.to_array())
    for _ in range(50):
        ll = -18.0 - rng.chisquare(10, 70) / 2.0
        assert a.update(ll) == b.update(ll)
    np.testing.assert_array_equal(a.to_array(), b.to_array())
