"""streamgmm.plot.mixture and covariance_types: what they draw, checked independently."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from figure_checks import by_gid, check_png
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streamgmm import GaussianMixture
from streamgmm.model.covariance import COVARIANCE_TYPES
from streamgmm.plot import covariance_types, mixture


def full(gm) -> np.ndarray:
    """The model's covariances as (k, d, d), written out per type."""
    k, d = gm.means_.shape
    cov = gm.covariances_
    return {"full": lambda: cov, "tied": lambda: np.stack([cov] * k),
            "diag": lambda: np.stack([np.diag(v) for v in cov]),
            "spherical": lambda: np.stack([v * np.eye(d) for v in cov])}[gm.covariance_type]()


def log_density(gm, X) -> np.ndarray:
    """log p(x) of the full model with scipy, not with streamgmm."""
    return logsumexp([np.log(w) + multivariate_normal(m, C).logpdf(X)
                      for w, m, C in zip(gm.weights_, gm.means_, full(gm), strict=True)], axis=0)


def expected_plane(X, features):
    """(A, origin): two columns, or sklearn's PCA of the standardised features."""
    d = X.shape[1]
    if features is not None:
        return np.eye(d)[:, list(features)], np.zeros(d)
    from sklearn.decomposition import PCA

    std = X.std(axis=0)
    pca = PCA(2).fit((X - X.mean(axis=0)) / std)
    return pca.components_.T / std[:, None], X.mean(axis=0)


def drawn_ellipses(ax) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, boundary points in data coordinates) of each ellipse drawn."""
    out = []
    for patch in by_gid(ax, "ellipse"):
        # The ends of the path's Bezier pieces lie on the curve (its control points do not).
        ends = np.array([curve.control_points[-1] for curve, _ in patch.get_path().iter_bezier()])
        out.append((np.asarray(patch.center), patch.get_patch_transform().transform(ends)))
    return out


def check_ellipses(ax, gm, X, features) -> None:
    """Every (component, radius 1/2/3) drawn once, its boundary at that Mahalanobis radius
    under A^T Sigma A (up to the sign of each principal axis)."""
    A, origin = expected_plane(X, features)
    means2 = (gm.means_ - origin) @ A
    covs2 = np.einsum("di,kde,ej->kij", A, full(gm), A)
    ellipses = drawn_ellipses(ax)
    assert len(ellipses) == 3 * gm.means_.shape[0]
    centres = np.array([c for c, _ in ellipses])
    signs = next(s for s in itertools.product([1, -1], repeat=2)
                 if all(np.min(np.abs(centres - m * s).sum(axis=1)) < 1e-6 for m in means2))
    s = np.array(signs, dtype=float)
    found = set()
    for centre, boundary in ellipses:
        c = int(np.argmin(np.abs(means2 * s - centre).sum(axis=1)))
        prec = np.linalg.inv(covs2[c] * np.outer(s, s))
        rel = boundary - centre
        radius = np.sqrt(np.einsum("ni,ij,nj->n", rel, prec, rel))
        np.testing.assert_allclose(radius, radius[0], rtol=1e-6)
        found.add((c, round(float(radius[0]), 6)))
    assert found == {(c, r) for c in range(gm.means_.shape[0]) for r in (1.0, 2.0, 3.0)}


@pytest.mark.parametrize("kind", COVARIANCE_TYPES)
@pytest.mark.parametrize("features", [None, (0, 2)])
def test_ellipses_are_each_component_projected_at_1_2_3_sigma(two_blobs, kind, features):
    gm = GaussianMixture(3, covariance_type=kind, random_state=0).fit(two_blobs)
    fig = mixture(gm, two_blobs, features=features)
    check_ellipses(fig.axes[0], gm, two_blobs, features)


def test_highlighted_points_are_exactly_those_below_the_threshold(two_blobs):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    scores = log_density(gm, two_blobs)
    threshold = float(np.percentile(scores, 3))
    fig = mixture(gm, two_blobs, features=("x1", "x2"), threshold=threshold)
    [flagged] = by_gid(fig.axes[0], "flagged")
    got = np.asarray(flagged.get_offsets())
    want = two_blobs[scores < threshold][:, [1, 2]]
    assert len(got) == len(want) == int(np.sum(scores < threshold)) > 0
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want, axis=0))
    assert f"{threshold:.2f}" in flagged.get_label()


def test_no_threshold_marks_nothing(two_blobs):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    assert not by_gid(mixture(gm, two_blobs).axes[0], "flagged")


def test_contours_are_the_planes_marginal_log_density(two_blobs):
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(two_blobs)
    fig = mixture(gm, two_blobs, features=(0, 1))
    [contours] = by_gid(fig.axes[0], "contours")
    assert len(contours.levels) >= 3
    idx = [0, 1]
    for level, segments in zip(contours.levels, contours.allsegs, strict=True):
        pts = np.vstack(segments)
        assert len(pts) > 10
        dens = sum(w * multivariate_normal(m[idx], C[np.ix_(idx, idx)]).pdf(pts)
                   for w, m, C in zip(gm.weights_, gm.means_, full(gm), strict=True))
        np.testing.assert_allclose(np.log(dens), level, atol=0.02)


def test_legend_gives_the_weights(two_blobs):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    texts = [t.get_text() for t in mixture(gm, two_blobs).axes[0].get_legend().get_texts()]
    for c, w in enumerate(gm.weights_):
        assert f"component {c + 1}: weight {w:.2f}" in texts


def test_large_data_draws_a_subset_but_every_marked_point(two_blobs):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    threshold = float(np.percentile(gm.score_samples(two_blobs), 5))
    ax = mixture(gm, two_blobs, threshold=threshold, max_points=100).axes[0]
    [points], [flagged] = by_gid(ax, "points"), by_gid(ax, "flagged")
    assert len(points.get_offsets()) == 100
    n_flag = int(np.sum(gm.score_samples(two_blobs) < threshold))
    assert len(flagged.get_offsets()) == n_flag
    label = f"data: 100 of {912 - n_flag} points (a random subset)"
    assert label in [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_scikit_learn_mixture_draws_too(two_blobs):
    from sklearn.mixture import GaussianMixture as SkGM

    sk = SkGM(2, covariance_type="tied", random_state=0).fit(two_blobs)
    fig = mixture(sk, two_blobs, features=(0, 1))
    check_ellipses(fig.axes[0], sk, two_blobs, (0, 1))


def test_covariance_types_draws_four_fits_on_the_same_plane(two_blobs, tmp_path):
    fig = covariance_types(two_blobs, 2, contamination=0.05)
    panels = [ax for ax in fig.axes if by_gid(ax, "ellipse")]
    assert [ax.get_title().split(":")[0] for ax in panels] == list(COVARIANCE_TYPES)
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in panels}) == 1
    for ax, kind in zip(panels, COVARIANCE_TYPES, strict=True):
        gm = GaussianMixture(2, covariance_type=kind, random_state=0).fit(two_blobs)
        check_ellipses(ax, gm, two_blobs, None)
        scores = log_density(gm, two_blobs)
        [flagged] = by_gid(ax, "flagged")
        assert len(flagged.get_offsets()) == int(np.sum(scores < np.percentile(scores, 5)))
    fig.savefig(tmp_path / "four.png", dpi=50)
    check_png(tmp_path / "four.png", 650, 575)


def test_a_figure_saves_as_a_png_of_its_size_and_shows_in_a_notebook(two_blobs, tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    fig = mixture(gm, two_blobs, threshold=-9.0)
    fig.savefig(tmp_path / "m.png", dpi=40)
    check_png(tmp_path / "m.png", 360, 260)
    assert fig._repr_png_().startswith(b"\x89PNG")


@pytest.mark.parametrize(("call", "message"), [
    (lambda gm, X: mixture(gm, X[:, :2]), "X: has 2 features, but the model was fitted on 3"),
    (lambda gm, X: mixture(gm, X, features="x0,nope"), "unknown feature 'nope'"),
    (lambda gm, X: mixture(gm, X, features=(1, 1)), "the two features are the same"),
    (lambda gm, X: mixture(gm, X, feature_names=["a"]), "feature_names: expected 3 names"),
    (lambda gm, X: covariance_types(X[:, :1]), "X: has 1 feature; a plane needs at least two"),
    (lambda gm, X: covariance_types(X, feature_names=["a", "b"]),
     "feature_names: expected 3 names, got 2"),
])
def test_bad_input_is_named(two_blobs, call, message):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs)
    with pytest.raises(ValueError, match=message):
        call(gm, two_blobs)


def test_a_one_feature_model_is_refused(two_blobs):
    gm = GaussianMixture(2, random_state=0).fit(two_blobs[:, :1])
    with pytest.raises(ValueError, match="the model has 1 feature; a plane needs at least two"):
        mixture(gm, two_blobs[:, :1])
