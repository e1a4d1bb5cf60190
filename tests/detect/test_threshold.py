"""RollingThreshold: the exact percentile of the last W scores, as numpy.percentile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.detect.threshold import RollingThreshold

finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)


def _feed(rt: RollingThreshold, seq: np.ndarray, batch: int):
    """Push seq in batches, yielding after each the window numpy would see."""
    for i in range(0, seq.size, batch):
        rt.push(seq[i:i + batch])
        yield seq[: i + batch][-rt.window:]


def _check(rt: RollingThreshold, window: np.ndarray) -> None:
    assert np.array_equal(rt.values(), window)
    expected = np.percentile(window, 100 * rt.contamination)
    got = rt.threshold()
    # numpy's interpolation rounds differently in the last bits (it computes the
    # virtual index and the lerp in another order); allow that much and no more.
    scale = float(np.max(np.abs(window)))
    assert abs(got - expected) <= 1e-14 * scale, (got, expected, window)
    assert window.min() <= got <= window.max()


@settings(max_examples=150, deadline=None)
@given(
    seq=st.lists(finite, min_size=1, max_size=300),
    window=st.integers(1, 60),
    batch=st.integers(1, 100),
    contamination=st.floats(0.001, 0.999),
)
def test_threshold_equals_numpy_percentile_on_random_sequences(seq, window, batch,
                                                               contamination):
    rt = RollingThreshold(window, contamination)
    seq = np.array(seq)
    for win in _feed(rt, seq, batch):
        _check(rt, win)


ADVERSARIAL = {
    "ties": np.repeat([3.0, 1.0, 2.0], 40),
    "constant": np.full(100, -7.5),
    "sorted": np.arange(200.0),
    "reverse": np.arange(200.0)[::-1],
    "huge": np.array([1e300, -1e300, 1e299, -1e299, 0.0] * 20),
    "tiny": np.array([1e-300, -1e-300, 5e-324, 0.0, -5e-324] * 20),
    "mixed": np.array([1e300, 1e-300, -1e-300, -1e300] * 25),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
@pytest.mark.parametrize("window,batch", [(7, 3), (16, 16), (25, 60), (50, 1), (1, 5)])
def test_threshold_equals_numpy_percentile_on_adversarial_sequences(name, window, batch):
    rt = RollingThreshold(window, 0.02)
    for win in _feed(rt, ADVERSARIAL[name], batch):
        _check(rt, win)


def test_window_wraps_around_many_times():
    rng = np.random.default_rng(1)
    rt = RollingThreshold(100, 0.05)
    for n_seen, win in enumerate(_feed(rt, rng.normal(size=10_000), 37)):
        if n_seen % 50 == 0:
            _check(rt, win)
    _check(rt, win)
    assert len(rt) == 100


def test_batch_larger_than_window_keeps_the_newest():
    rt = RollingThreshold(10, 0.3)
    rt.push(np.arange(5.0))
    rt.push(np.arange(100.0, 125.0))
    assert rt.values().tolist() == list(np.arange(115.0, 125.0))
    _check(rt, np.arange(115.0, 125.0))


def test_nan_and_inf_scores_are_skipped():
    rt = RollingThreshold(5, 0.5)
    rt.push(np.array([np.nan, 1.0, np.inf, 2.0, -np.inf, np.nan, 3.0]))
    assert rt.values().tolist() == [1.0, 2.0, 3.0]
    assert rt.threshold() == 2.0
    rt.push(np.array([np.nan]))
    assert len(rt) == 3


def test_empty_window_gives_nan():
    rt = RollingThreshold(5, 0.1)
    assert np.isnan(rt.threshold())
    assert np.isnan(rt.percentile_rank(np.array([1.0]))).all()
    assert np.isnan(rt.mean())


@settings(max_examples=100, deadline=None)
@given(
    seq=st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=80),
    queries=st.lists(st.integers(-7, 7).map(float), min_size=1, max_size=10),
    window=st.integers(1, 30),
)
def test_percentile_rank_is_the_fraction_strictly_below(seq, queries, window):
    rt = RollingThreshold(window, 0.1)
    rt.push(np.array(seq))
    win = np.array(seq)[-window:]
    q = np.array(queries)
    expected = (win[None, :] < q[:, None]).mean(axis=1)
    assert np.array_equal(rt.percentile_rank(q), expected)


def test_replace_resets_the_window():
    rt = RollingThreshold(4, 0.5)
    rt.push(np.arange(10.0))
    rt.replace(np.array([5.0, 1.0]))
    assert rt.values().tolist() == [5.0, 1.0]
    _check(rt, np.array([5.0, 1.0]))
    rt.replace(np.arange(6.0))
    assert rt.values().tolist() == [2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("window,contamination", [(0, 0.1), (5, 0.0), (5, 1.0), (5, -0.1)])
def test_bad_parameters_are_named(window, contamination):
    with pytest.raises(ValueError, match="window|contamination"):
        RollingThreshold(window, contamination)
