"""Sufficient statistics: exact merge and scale, the M-step and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamgmm.model.covariance import COVARIANCE_TYPES
from streamgmm.model.estep import batch_stats
from streamgmm.model.stats import SuffStats, mstep, stats_from_params

cov_types = st.sampled_from(COVARIANCE_TYPES)


@st.composite
def data_and_resp(draw, min_rows: int = 2, positive: bool = False):
    """(X, resp): rows of data, optionally far from the origin, and responsibilities."""
    n = draw(st.integers(min_rows, 24))
    d = draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    z = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-10, 10)))
    # A large offset with a small spread is where raw moments lose every digit.
    offset, spread = draw(st.sampled_from([(0.0, 1.0), (1e6, 1e-3), (-3e5, 0.1)]))
    low = 1e-3 if positive else 0.0
    r = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(low, 1.0)))
    sums = r.sum(axis=1, keepdims=True)
    r = np.where(sums > 0, r / np.where(sums > 0, sums, 1.0), 1.0 / k)
    return offset + spread * z, r


def reference_stats(X: np.ndarray, resp: np.ndarray, covariance_type: str) -> SuffStats:
    """Two-pass statistics straight from the definitions, one component at a time."""
    n_k = resp.sum(axis=0)
    k, d = resp.shape[1], X.shape[1]
    mean = np.zeros((k, d))
    full = np.zeros((k, d, d))
    for c in range(k):
        if n_k[c] > 0:
            mean[c] = resp[:, c] @ X / n_k[c]
        diff = X - mean[c]
        full[c] = (resp[:, c, None] * diff).T @ diff
    scatter = {
        "full": full,
        "tied": full.sum(axis=0),
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.trace(full, axis1=1, axis2=2),
    }[covariance_type]
    return SuffStats(covariance_type, n_k, mean, scatter)


def assert_stats_close(got: SuffStats, want: SuffStats, X: np.ndarray) -> None:
    """Equal up to the rounding that X itself carries.

    Means are stored in the data's own coordinates, so they are known to
    ``spacing(max |x|)``; relative to the spread of the data that is the
    precision any scatter can have (1e-7 for 1e6 + 1e-3 z), while raw moments
    would lose everything (errors of eps * 1e12, a thousand times the scatter).
    """
    assert got.covariance_type == want.covariance_type
    spread = float(np.ptp(X)) or 1.0
    tol = 1e-9 + 100 * float(np.spacing(np.max(np.abs(X)))) / spread
    np.testing.assert_allclose(got.n, want.n, rtol=1e-12, atol=1e-12)
    live = want.n > 1e-9
    # Means of components with mass; an empty component's mean is arbitrary.
    np.testing.assert_allclose(got.mean[live], want.mean[live], rtol=1e-12,
                               atol=tol * spread)
    # Each centred difference is off by up to a spacing of X, so each product by
    # about spacing * spread, summed over the mass.
    floor = 100 * float(np.spacing(np.max(np.abs(X)))) * spread * (want.total + 1.0)
    # Below float64's normal range (products of values near 1e-160) only the
    # absolute spacing of subnormals is left.
    floor += float(np.finfo(np.float64).tiny)
    scale = float(np.max(np.abs(want.scatter), initial=0.0))
    np.testing.assert_allclose(got.scatter, want.scatter, rtol=tol, atol=tol * scale + floor)


@settings(max_examples=80, deadline=None)
@given(data_and_resp(), cov_types)
def test_batch_stats_match_the_definition(xr, covariance_type):
    X, r = xr
    assert_stats_close(batch_stats(X, r, covariance_type),
                       reference_stats(X, r, covariance_type), X)


@settings(max_examples=80, deadline=None)
@given(data_and_resp(min_rows=3), cov_types, st.data())
def test_merge_of_halves_equals_whole(xr, covariance_type, data):
    X, r = xr
    cut = data.draw(st.integers(1, X.shape[0] - 1))
    a = batch_stats(X[:cut], r[:cut], covariance_type)
    b = batch_stats(X[cut:], r[cut:], covariance_type)
    whole = batch_stats(X, r, covariance_type)
    assert_stats_close(a.merge(b), whole, X)
    assert_stats_close(b.merge(a), whole, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_centred_form_keeps_precision_far_from_origin(covariance_type):
    rng = np.random.default_rng(1)
    Z = rng.normal(0.0, 1e-3, (400, 3))
    r = rng.dirichlet(np.ones(2), 400)
    near = batch_stats(Z, r, covariance_type)
    parts = [batch_stats(Z[s] + 1e6, r[s], covariance_type)
             for s in (slice(0, 150), slice(150, 310), slice(310, 400))]
    far = parts[0].merge(parts[1]).merge(parts[2])
    # Translation leaves the scatter unchanged, up to the rounding of Z + 1e6
    # (spacing 1.2e-10 against a spread of 1e-3).
    scale = float(np.max(np.abs(near.scatter)))
    np.testing.assert_allclose(far.scatter, near.scatter, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(far.mean - 1e6, near.mean, atol=1e-9)
    # The same statistics from raw sums of x x^T miss by far more than that.
    raw = reference_stats(Z + 1e6, r, "full")
    for c in range(2):
        x = Z + 1e6
        raw.scatter[c] = (r[:, c, None] * x).T @ x - raw.n[c] * np.outer(raw.mean[c], raw.mean[c])
    want = reference_stats(Z, r, "full").scatter
    assert np.max(np.abs(raw.scatter - want)) > 100 * 1e-6 * scale


@settings(max_examples=60, deadline=None)
@given(data_and_resp(min_rows=3, positive=True), cov_types, st.data())
def test_merge_is_associative_with_zeros_as_identity(xr, covariance_type, data):
    X, r = xr
    n = X.shape[0]
    i, j = sorted(data.draw(st.lists(st.integers(1, n - 1), min_size=2, max_size=2)))
    a, b, c = (batch_stats(X[s], r[s], covariance_type)
               for s in (slice(0, i), slice(i, j), slice(j, n)))
    assert_stats_close(a.merge(b).merge(c), a.merge(b.merge(c)), X)
    zero = SuffStats.zeros(covariance_type, a.n_components, a.n_features)
    for merged in (zero.merge(a), a.merge(zero)):
        assert np.array_equal(merged.n, a.n)
        assert np.array_equal(merged.mean, a.mean)
        assert np.array_equal(merged.scatter, a.scatter)


@settings(max_examples=60, deadline=None)
@given(data_and_resp(min_rows=3), cov_types, st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_scale_then_merge_is_consistent(xr, covariance_type, c1, c2):
    X, r = xr
    cut = X.shape[0] // 2
    a = batch_stats(X[:cut], r[:cut], covariance_type)
    b = batch_stats(X[cut:], r[cut:], covariance_type)
    # Scaling commutes with merging and composes by multiplication.
    assert_stats_close(a.scale(c1).merge(b.scale(c1)), a.merge(b).scale(c1), X)
    assert_stats_close(a.scale(c1).scale(c2), a.scale(c1 * c2), X)
    # Scaling is weighting every event by the same factor.
    weighted = batch_stats(X[:cut], r[:cut], covariance_type, np.full(cut, c1))
    assert_stats_close(a.scale(c1), weighted, X)


@st.composite
def mixture_params(draw):
    covariance_type = draw(cov_types)
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(0, 10, (k, d))
    A = rng.normal(size=(k, d, d))
    full = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(d)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.trace(full, axis1=1, axis2=2) / d,
    }[covariance_type]
    return covariance_type, weights, means, cov


@settings(max_examples=80, deadline=None)
@given(mixture_params(), st.floats(1.0, 1e6), st.sampled_from([0.0, 1e-6, 1e-3]))
def test_mstep_inverts_stats_from_params(params, total, reg_covar):
    covariance_type, weights, means, cov = params
    stats = stats_from_params(weights, means, cov, covariance_type, total, reg_covar)
    assert stats.total == pytest.approx(total)
    w, m, c = mstep(stats, reg_covar)
    np.testing.assert_allclose(w, weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(m, means)
    np.testing.assert_allclose(c, cov, rtol=1e-9, atol=1e-12)


def test_mstep_adds_reg_covar_and_guards_empty_components():
    stats = SuffStats("diag", np.array([4.0, 0.0]), np.array([[1.0, 2.0], [0.0, 0.0]]),
                      np.array([[8.0, 4.0], [0.0, 0.0]]))
    weights, means, cov = mstep(stats, reg_covar=0.5)
    np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-14)
    np.testing.assert_allclose(cov, [[2.5, 1.5], [0.5, 0.5]])
    assert np.all(np.isfinite(cov))


def test_merge_refuses_mismatched_statistics():
    full = SuffStats.zeros("full", 2, 3)
    with pytest.raises(ValueError, match="covariance type or shape: full .* vs diag"):
        full.merge(SuffStats.zeros("diag", 2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\) vs full \(2, 4\)"):
        full.merge(SuffStats.zeros("full", 2, 4))


def test_zeros_refuses_unknown_covariance_type():
    with pytest.raises(ValueError, match="covariance_type: expected one of full, tied, diag, "
                                         "spherical, got 'ful'"):
        SuffStats.zeros("ful", 2, 3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_arrays_round_trip_and_select(covariance_type):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    stats = batch_stats(X, rng.dirichlet(np.ones(3), 50), covariance_type)
    back = SuffStats.from_arrays(stats.to_arrays("s_"), covariance_type, "s_")
    for name in ("n", "mean", "scatter"):
        assert np.array_equal(getattr(back, name), getattr(stats, name))
    part = stats.select(np.array([2, 0]))
    assert np.array_equal(part.n, stats.n[[2, 0]])
    assert np.array_equal(part.mean, stats.mean[[2, 0]])
    want = stats.scatter if covariance_type == "tied" else stats.scatter[[2, 0]]
    assert np.array_equal(part.scatter, want)
