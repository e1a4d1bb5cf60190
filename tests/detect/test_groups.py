"""Which held-out events a refit takes back as a recurring mode (groups.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.detect.groups import GroupRule, recurring_groups, spread_logdet

D = 3
RULE = GroupRule(typical=0.0, ratio=5.0, shift=np.zeros(D))  # typical sd 1


def _take_back(H: np.ndarray, tenth: np.ndarray) -> np.ndarray:
    return recurring_groups(H, tenth, RULE, "full", 1e-6, seed=0)


def _spread_over_time(n: int, rng) -> np.ndarray:
    return rng.integers(0, 10, n)


def test_a_recurring_group_like_a_mode_is_taken_back():
    rng = np.random.default_rng(0)
    H = np.array([8.0, -3, 8]) + rng.normal(0, 0.5, (60, D))
    assert _take_back(H, _spread_over_time(60, rng)).all()


def test_a_mode_as_wide_as_the_typical_one_is_taken_back_despite_sampling_noise():
    # Its estimated spread falls either side of the typical one; a bound at
    # the typical spread itself refused it about half the time.
    taken = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        H = np.array([8.0, -3, 8]) + rng.normal(0, 1.0, (80, D))
        taken += _take_back(H, _spread_over_time(80, rng)).all()
    assert taken == 20


def test_the_held_out_tails_of_a_modelled_mode_are_not():
    # Events of a unit-sd mode beyond its 98th percentile of distance: a shell
    # wider than the mode, which a refit must leave out.
    rng = np.random.default_rng(6)
    Z = rng.normal(0, 1, (20_000, D))
    tails = Z[np.einsum("ij,ij->i", Z, Z) > 9.84][:120]  # chi2(3) 98th percentile
    assert not _take_back(tails, _spread_over_time(tails.shape[0], rng)).any()


def test_a_dense_cluster_of_near_identical_events_is_not():
    rng = np.random.default_rng(1)
    H = np.array([-4.0, 7, -3]) + rng.normal(0, 1e-3, (60, D))
    assert not _take_back(H, _spread_over_time(60, rng)).any()


def test_scattered_outliers_are_not():
    rng = np.random.default_rng(2)
    H = rng.uniform(-12, 16, (80, D))
    assert not _take_back(H, _spread_over_time(80, rng)).any()


def test_a_burst_bunched_in_time_is_not():
    rng = np.random.default_rng(3)
    H = np.array([8.0, -3, 8]) + rng.normal(0, 0.5, (60, D))
    assert not _take_back(H, rng.integers(4, 6, 60)).any()  # two tenths of the window


def test_too_few_events_for_a_component_are_not():
    rng = np.random.default_rng(4)
    H = np.array([8.0, -3, 8]) + rng.normal(0, 0.5, (40, D))  # 45 needed in 3 dimensions
    assert not _take_back(H, _spread_over_time(40, rng)).any()


def test_only_the_mode_like_group_of_a_mixed_set_is_taken_back():
    rng = np.random.default_rng(5)
    mode = np.array([8.0, -3, 8]) + rng.normal(0, 0.5, (60, D))
    attack = np.array([-4.0, 7, -3]) + rng.normal(0, 1e-3, (30, D))
    H = np.vstack([mode, attack])
    back = _take_back(H, _spread_over_time(H.shape[0], rng))
    assert back[:60].all()
    assert not back[60:].any()
    # Scattered outliers in the same set may join the group's component and widen
    # it past the typical spread: then nothing is taken back (the cautious side).


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_spread_is_the_log_determinant_without_the_shift(kind):
    shift = np.full(D, 0.5)
    var = np.array([2.0, 3.0, 4.0])
    cov = {"full": np.diag(var + shift)[None], "diag": (var + shift)[None],
           "spherical": np.array([3.0 + 0.5])}[kind]
    expect = np.log(var).sum() if kind != "spherical" else D * np.log(3.0)
    assert spread_logdet(cov, kind, shift)[0] == pytest.approx(expect)
    # Identical events in some direction: as tight as can be.
    flat = {"full": np.diag(shift)[None], "diag": shift[None], "spherical": np.array([0.5])}
    assert spread_logdet(flat[kind], kind, shift)[0] == -np.inf
