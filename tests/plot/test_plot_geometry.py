"""The plane's geometry: projected components, ellipses, the marginal density."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from streamgmm import GaussianMixture
from streamgmm.model.covariance import COVARIANCE_TYPES
from streamgmm.plot.geometry import (
    ellipse,
    feature_plane,
    full_covariances,
    marginal_log_density,
    principal_plane,
    resolve_features,
)


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
def test_projected_covariances_are_those_of_projected_samples(two_blobs, kind):
    """A^T Sigma A for every covariance type, checked against samples the model draws."""
    gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(two_blobs)
    plane = principal_plane(two_blobs, ["a", "b", "c"])
    full = full_covariances(kind, gm.covariances_, 2, 3)
    covs2 = plane.covariances(full)
    means2 = plane.points(gm.means_)
    gm.random_state = 1
    S, labels = gm.sample(200_000)
    Z = plane.points(S)
    for c in range(2):
        np.testing.assert_allclose(Z[labels == c].mean(axis=0), means2[c], atol=0.02)
        np.testing.assert_allclose(np.cov(Z[labels == c].T), covs2[c], atol=0.03, rtol=0.03)


def test_principal_plane_is_pca_of_standardised_features(two_blobs):
    from sklearn.decomposition import PCA

    X = two_blobs * [1.0, 1000.0, 0.01]  # units apart: standardising matters
    plane = principal_plane(X, ["a", "b", "c"])
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    want = PCA(2).fit_transform(Xs)
    got = plane.points(X)
    for j in range(2):  # each axis up to its sign
        sign = np.sign(got[:, j] @ want[:, j])
        np.testing.assert_allclose(got[:, j], sign * want[:, j], atol=1e-9)
    assert "% of the variance" in plane.labels[0]


def test_marginal_of_a_feature_plane_is_the_mixture_of_marginals(two_blobs):
    gm = GaussianMixture(3, random_state=0).fit(two_blobs)
    plane = feature_plane(3, (0, 2), ["a", "b", "c"])
    Z = plane.points(two_blobs[:50])
    got = marginal_log_density(Z, gm.weights_, plane.points(gm.means_),
                               plane.covariances(gm.covariances_))
    dens = sum(w * multivariate_normal(m[[0, 2]], C[np.ix_([0, 2], [0, 2])]).pdf(Z)
               for w, m, C in zip(gm.weights_, gm.means_, gm.covariances_, strict=True))
    np.testing.assert_allclose(got, np.log(dens), rtol=1e-10)


def test_ellipse_boundary_is_at_the_mahalanobis_radius():
    cov = np.array([[3.0, 1.2], [1.2, 1.0]])
    w, h, angle = ellipse(cov, 2.0)
    t = np.linspace(0, 2 * np.pi, 50)
    a = np.radians(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (rot @ np.vstack([w / 2 * np.cos(t), h / 2 * np.sin(t)])).T
    d2 = np.einsum("ni,ij,nj->n", pts, np.linalg.inv(cov), pts)
    np.testing.assert_allclose(d2, 4.0, rtol=1e-10)


@pytest.mark.parametrize(("spec", "message"), [
    ("a", "expected two features, got 1"),
    ("a,b,c", "expected two features, got 3"),
    ("a,zz", "unknown feature 'zz' \\(the features are a, b, c\\)"),
    ("a,a", "the two features are the same \\('a'\\)"),
    ("0,7", "feature index 7 is out of range"),
])
def test_bad_feature_choices_are_named(spec, message):
    with pytest.raises(ValueError, match=f"--features: {message}"):
        resolve_features(spec, ["a", "b", "c"], "--features")
