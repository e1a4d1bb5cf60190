"""The E-step: log-densities against scipy, responsibilities, chunked statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streamgmm import GaussianMixture
from streamgmm.model import estep
from streamgmm.model.covariance import COVARIANCE_TYPES, precision_cholesky
from streamgmm.model.estep import batch_stats, e_step, em_pass, logsumexp_rows, mahalanobis_sq


@st.composite
def mixtures(draw):
    """(covariance_type, weights, means, covariances, X) of a random mixture."""
    covariance_type = draw(st.sampled_from(COVARIANCE_TYPES))
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(0, 3 * scale, (k, d))
    A = rng.normal(0, scale, (k, d, d))
    full = A @ np.swapaxes(A, 1, 2) + 0.05 * scale**2 * np.eye(d)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.trace(full, axis1=1, axis2=2) / d,
    }[covariance_type]
    X = rng.normal(0, 4 * scale, (draw(st.integers(1, 30)), d))
    return covariance_type, weights, means, cov, X


def dense_covariances(cov: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """(k, d, d) covariance matrices of any covariance type."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def fitted(covariance_type, weights, means, cov) -> GaussianMixture:
    """A GaussianMixture holding the given parameters, without fitting."""
    from streamgmm.model.em import MixtureParams

    gm = GaussianMixture(len(weights), covariance_type=covariance_type)
    gm._set_params(MixtureParams(covariance_type, weights, means, cov,
                                 precision_cholesky(cov, covariance_type)))
    return gm


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_score_samples_equals_scipy_mixture_density(mix):
    covariance_type, weights, means, cov, X = mix
    k, d = means.shape
    dense = dense_covariances(cov, covariance_type, k, d)
    per_component = np.column_stack([
        multivariate_normal(means[c], dense[c]).logpdf(X).reshape(-1) for c in range(k)
    ])
    want = logsumexp(per_component + np.log(weights), axis=1)
    got = fitted(covariance_type, weights, means, cov).score_samples(X)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_predict_proba_rows_sum_to_one(mix):
    covariance_type, weights, means, cov, X = mix
    gm = fitted(covariance_type, weights, means, cov)
    proba = gm.predict_proba(X)
    assert proba.shape == (X.shape[0], len(weights))
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), np.argmax(proba, axis=1))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mahalanobis_matches_solve(covariance_type):
    rng = np.random.default_rng(3)
    k, d = 3, 4
    A = rng.normal(size=(k, d, d))
    full = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
    cov = {"full": full, "tied": full[0],
           "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
           "spherical": np.trace(full, axis1=1, axis2=2) / d}[covariance_type]
    means = rng.normal(size=(k, d))
    X = rng.normal(size=(20, d))
    dense = dense_covariances(cov, covariance_type, k, d)
    want = np.column_stack([
        np.einsum("nd,nd->n", X - means[c], np.linalg.solve(dense[c], (X - means[c]).T).T)
        for c in range(k)
    ])
    got = mahalanobis_sq(X, means, precision_cholesky(cov, covariance_type), covariance_type)
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_logsumexp_rows_survives_extremes():
    # A component of weight zero contributes log 0 = -inf to its column.
    a = np.array([[-1e4, -1e4 - 1.0], [1e3, 1e3], [-np.inf, 0.0], [-800.0, -np.inf]])
    np.testing.assert_allclose(logsumexp_rows(a), logsumexp(a, axis=1))
    np.testing.assert_allclose(logsumexp_rows(a), [-1e4 + np.log1p(np.exp(-1.0)),
                                                   1e3 + np.log(2.0), 0.0, -800.0])


def test_e_step_keeps_far_events_finite():
    # An event 1e4 standard deviations away has density exp(-5e7): the log
    # stays finite and the responsibilities still sum to one.
    means = np.array([[0.0], [1.0]])
    chol = precision_cholesky(np.array([1.0, 1.0]), "spherical")
    log_norm, resp = e_step(np.array([[1e4]]), np.array([0.5, 0.5]), means, chol, "spherical")
    assert np.isfinite(log_norm[0]) and log_norm[0] < -4e7
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    assert resp[0, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_pass_in_chunks_equals_one_batch(monkeypatch, covariance_type):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1000, 3)) + 50.0
    sw = rng.uniform(0.0, 2.0, 1000)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    args = (X, gm.weights_, gm.means_, gm.precisions_cholesky_, covariance_type, sw)
    whole, total_whole = em_pass(*args)
    monkeypatch.setattr(estep, "CHUNK_ROWS", 128)
    monkeypatch.setattr(estep.chunks, "__defaults__", (128,))
    assert len(list(estep.chunks(1000))) == 8
    parts, total_parts = em_pass(*args)
    assert total_parts == pytest.approx(total_whole, rel=1e-12)
    np.testing.assert_allclose(parts.n, whole.n, rtol=1e-12)
    np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(parts.scatter, whole.scatter, rtol=1e-8, atol=1e-10)
    log_norm, resp = e_step(X, gm.weights_, gm.means_, gm.precisions_cholesky_, covariance_type)
    assert total_whole == pytest.approx(log_norm @ sw, rel=1e-12)
    direct = batch_stats(X, resp, covariance_type, sw)
    np.testing.assert_allclose(whole.scatter, direct.scatter, rtol=1e-9, atol=1e-10)


def test_full_scatter_of_a_collapsed_component_is_exact():
    # A component sitting on one repeated value, far from the data's centre,
    # has a scatter of exactly zero, not the rounding error of a difference of
    # large moments (the case that made precisions differ from scikit-learn's).
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(500, 2)), np.tile([[7.3, -4.1]], (200, 1))])
    resp = np.zeros((700, 2))
    resp[:500, 0] = 1.0
    resp[500:, 1] = 1.0
    stats = batch_stats(X, resp, "full")
    assert np.all(np.abs(stats.scatter[1]) < 1e-24)
