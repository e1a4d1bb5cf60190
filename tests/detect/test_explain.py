"""Explanations: per-feature shares of the squared Mahalanobis distance."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.detect.explain import mahalanobis_shares, top_features
from streamgmm.model.gmm import GaussianMixture

TYPES = ("full", "tied", "diag", "spherical")


def _data(rng: np.random.Generator, n: int = 600) -> np.ndarray:
    a = rng.multivariate_normal([0, 0, 0, 0], [[1, .8, 0, 0], [.8, 1, 0, 0],
                                                [0, 0, 2, 0], [0, 0, 0, .5]], n)
    b = rng.normal(5, 0.7, (n, 4))
    return np.vstack([a, b])


def _full_covariances(gm: GaussianMixture) -> np.ndarray:
    """Each component's d x d covariance, read from covariances_ (not the precision path)."""
    k, d = gm.means_.shape
    cov = gm.covariances_
    if gm.covariance_type == "full":
        return cov
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_shares_match_a_direct_computation_and_sum_to_one(covariance_type):
    rng = np.random.default_rng(0)
    X = _data(rng)
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    Q = rng.normal(2, 3, (200, 4))
    comp = rng.integers(0, 2, Q.shape[0])
    shares = mahalanobis_shares(Q, comp, gm.means_, gm.precisions_cholesky_, covariance_type)
    covs = _full_covariances(gm)
    for i in range(Q.shape[0]):
        diff = Q[i] - gm.means_[comp[i]]
        lam = np.linalg.inv(covs[comp[i]])
        d2 = diff @ lam @ diff
        expected = diff * (lam @ diff) / d2
        np.testing.assert_allclose(shares[i], expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-10)


def test_a_share_is_negative_under_correlation():
    # Strongly correlated x0, x1: an event high on x0 and a little high on x1 is
    # *less* surprising for its x1 than x0 alone would make it.
    mean = np.zeros((1, 2))
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    chol = np.linalg.cholesky(np.linalg.inv(cov))[None]  # lower L with L L^T = Lambda
    x = np.array([[3.0, 0.5]])
    shares = mahalanobis_shares(x, np.array([0]), mean, chol, "full")
    lam = np.linalg.inv(cov)
    diff = x[0]
    expected = diff * (lam @ diff) / (diff @ lam @ diff)
    np.testing.assert_allclose(shares[0], expected)
    assert shares[0, 1] < 0 < shares[0, 0]
    assert shares[0].sum() == pytest.approx(1.0)


def test_diagonal_shares_are_nonnegative():
    rng = np.random.default_rng(1)
    X = _data(rng)
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    Q = rng.normal(0, 4, (100, 4))
    shares = mahalanobis_shares(Q, np.zeros(100, int), gm.means_, gm.precisions_cholesky_,
                                "diag")
    assert (shares >= 0).all()


def test_an_event_at_the_mean_gets_equal_shares():
    shares = mahalanobis_shares(np.zeros((1, 3)), np.array([0]), np.zeros((1, 3)),
                                np.ones((1, 3)), "diag")
    np.testing.assert_allclose(shares, [[1 / 3] * 3])


def test_top_features_are_the_largest_shares_in_order():
    shares = np.array([[0.1, 0.6, -0.2, 0.5], [0.24, 0.26, 0.3, 0.2]])
    idx, top = top_features(shares, 3)
    assert idx.tolist() == [[1, 3, 0], [2, 1, 0]]
    np.testing.assert_allclose(top, np.take_along_axis(shares, idx, axis=1))
    assert (np.diff(top, axis=1) <= 0).all()
    idx5, _ = top_features(shares, 10)
    assert idx5.shape == (2, 4)


def test_detector_explains_an_alert_by_feature_name():
    rng = np.random.default_rng(2)
    names = ["amount", "hour", "distance_km"]
    det = AnomalyDetector(n_components=2, warmup=400, window=1000, top_features=2,
                          feature_names=names, refit_enabled=False, random_state=0)
    det.process(rng.normal(0, 1, (1000, 3)))
    out = det.process(np.array([[0.0, 0.1, 0.0], [0.2, 0.0, 9.0]]), learn=False)
    assert out.is_anomaly.tolist() == [False, True]
    why = det.explain(out, 1)
    assert [n for n, _ in why][0] == "distance_km"
    assert why[0][1] > 0.9
    assert len(why) == 2 and why[0][1] >= why[1][1]
    # The shares the detector reports are those of its reported component.
    m = det.model
    direct = mahalanobis_shares(det._scaled(np.array([[0.2, 0.0, 9.0]])), out.component[1:],
                                m.means_,
                                m.precisions_cholesky_, m.covariance_type)
    np.testing.assert_allclose(out.top_shares[1], np.sort(direct[0])[::-1][:2])
