"""GaussianMixture against scikit-learn's: same fits, same likelihoods, same API."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from streamgmm import GaussianMixture
from streamgmm.model.covariance import COVARIANCE_TYPES

RTOL, ATOL = 1e-6, 1e-9
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def _fit_both(X, covariance_type, **kwargs):
    sk = SkGM(covariance_type=covariance_type, **kwargs)
    sg = GaussianMixture(covariance_type=covariance_type, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
        sg.fit(X)
    return sk, sg


def _atol(value: np.ndarray) -> float | np.ndarray:
    """ATOL, scaled for matrices by sqrt(|M_ii M_jj|) where that exceeds one.

    Round-off in entry (i, j) of a covariance or precision matrix grows with the
    scales of features i and j: a covariance of an off-diagonal pair whose true
    value is zero comes out near eps * sqrt(M_ii M_jj) (2e-9 beside a variance
    of 1e6, depending on the BLAS), which a bare atol of 1e-9 would call a
    mismatch.
    """
    if value.ndim < 2 or value.shape[-1] != value.shape[-2]:
        return ATOL
    diag = np.abs(np.diagonal(value, axis1=-2, axis2=-1))
    return ATOL * np.maximum(1.0, np.sqrt(diag[..., :, None] * diag[..., None, :]))


def _assert_same_fit(sk, sg, what: str) -> None:
    for name in FITTED:
        got, want = np.asarray(getattr(sg, name)), np.asarray(getattr(sk, name))
        bad = np.abs(got - want) > _atol(want) + RTOL * np.abs(want)
        assert not bad.any(), (f"{what}: {name} differs at {np.argwhere(bad)[:5].tolist()}: "
                               f"{got[bad][:5]} vs {want[bad][:5]}")
    np.testing.assert_allclose(sg.lower_bound_, sk.lower_bound_, rtol=RTOL, atol=ATOL,
                               err_msg=f"{what}: lower_bound_")
    assert sg.n_iter_ == sk.n_iter_, what
    assert sg.converged_ == sk.converged_, what


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_start_same_fit_synthetic(blobs, sk_start, covariance_type):
    init = sk_start(blobs, 4, covariance_type)
    sk, sg = _fit_both(blobs, covariance_type, n_components=4, tol=1e-6, max_iter=300, **init)
    assert sk.n_iter_ > 3  # the comparison covers a real EM run, not a single step
    _assert_same_fit(sk, sg, f"synthetic/{covariance_type}")
    if hasattr(sk, "lower_bounds_"):  # scikit-learn >= 1.7
        np.testing.assert_allclose(sg.lower_bounds_, sk.lower_bounds_, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_start_same_fit_adbench(adbench, sk_start, dataset, covariance_type):
    X = adbench(dataset)
    init = sk_start(X, 4, covariance_type)
    sk, sg = _fit_both(X, covariance_type, n_components=4, tol=1e-3, max_iter=100, **init)
    _assert_same_fit(sk, sg, f"{dataset}/{covariance_type}")


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_same_random_state_same_fit(blobs, init_params, covariance_type):
    # The initialisations draw the same random numbers as scikit-learn's, so a
    # random_state gives the same starting point, and so the same fit.
    sk, sg = _fit_both(blobs, covariance_type, n_components=4, n_init=2, random_state=3,
                       init_params=init_params)
    _assert_same_fit(sk, sg, f"{init_params}/{covariance_type}")


@pytest.mark.slow
def test_default_init_likelihood_not_worse(adbench, dataset):
    """Over random_state 0..4 with n_init=3, the mean score is within 0.01 nats of sklearn's."""
    X = adbench(dataset)
    sk_scores, sg_scores = [], []
    for seed in range(5):
        sk, sg = _fit_both(X, "full", n_components=4, n_init=3, random_state=seed)
        sk_scores.append(sk.score(X))
        sg_scores.append(sg.score(X))
    gap = np.mean(sk_scores) - np.mean(sg_scores)
    assert gap <= 0.01, (dataset, sk_scores, sg_scores)


def test_fixed_random_state_is_reproducible(adbench):
    X = adbench("38_thyroid")
    fits = [GaussianMixture(4, n_init=3, random_state=7).fit(X) for _ in range(2)]
    for name in FITTED:
        assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name)), name
    assert fits[0].lower_bound_ == fits[1].lower_bound_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_aic_equal_sklearn(blobs, sk_start, covariance_type):
    init = sk_start(blobs, 3, covariance_type)
    sk, sg = _fit_both(blobs, covariance_type, n_components=3, **init)
    assert sg.bic(blobs) == pytest.approx(sk.bic(blobs), rel=1e-9)
    assert sg.aic(blobs) == pytest.approx(sk.aic(blobs), rel=1e-9)
    assert sg.score(blobs) == pytest.approx(sk.score(blobs), rel=1e-9)
    np.testing.assert_allclose(sg.score_samples(blobs), sk.score_samples(blobs), rtol=1e-9)
    np.testing.assert_allclose(sg.predict_proba(blobs), sk.predict_proba(blobs), atol=1e-9)
    np.testing.assert_array_equal(sg.predict(blobs), sk.predict(blobs))


def test_clone_copies_parameters_not_state(blobs):
    gm = GaussianMixture(3, covariance_type="diag", reg_covar=1e-4, random_state=1).fit(blobs)
    twin = clone(gm)
    assert twin is not gm
    assert twin.get_params() == gm.get_params()
    assert not hasattr(twin, "means_")


def test_pipeline_fit_predict_score(blobs):
    pipe = Pipeline([("scale", StandardScaler()),
                     ("gmm", GaussianMixture(3, random_state=0))]).fit(blobs)
    labels = pipe.predict(blobs)
    assert labels.shape == (blobs.shape[0],)
    assert set(np.unique(labels)) == {0, 1, 2}
    scaled = StandardScaler().fit_transform(blobs)
    assert pipe.score(blobs) == pytest.approx(pipe["gmm"].score(scaled))


def test_grid_search_picks_by_default_score(blobs):
    grid = GridSearchCV(
        GaussianMixture(random_state=0),
        {"n_components": [1, 3], "covariance_type": ["full", "spherical"]},
        cv=3,
    ).fit(blobs)
    # Three well-separated clusters of random shapes: one component cannot win.
    assert grid.best_params_["n_components"] == 3
    assert grid.best_params_["covariance_type"] == "full"
    assert isinstance(grid.best_estimator_, GaussianMixture)


def test_streamgmm_does_not_import_sklearn():
    code = (
        "import sys, numpy as np\n"
        "import streamgmm\n"
        "X = np.random.default_rng(0).normal(size=(200, 2))\n"
        "gm = streamgmm.GaussianMixture(2, random_state=0).fit(X)\n"
        "gm.score_samples(X); gm.predict_proba(X); gm.sample(5); gm.bic(X)\n"
        # Raising and warning, which make scikit-learn's classes their bases
        # when it is loaded (model/base.py), must not load it.
        "import warnings\n"
        "from streamgmm.model.base import ConvergenceWarning, NotFittedError\n"
        "try:\n"
        "    streamgmm.GaussianMixture(2).predict(X)\n"
        "except NotFittedError as exc:\n"
        "    assert type(exc) is NotFittedError, type(exc).__mro__\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    streamgmm.GaussianMixture(3, max_iter=1, random_state=0).fit(X)\n"
        "assert seen and seen[0].category is ConvergenceWarning, seen\n"
        "assert 'sklearn' not in sys.modules, sorted(m for m in sys.modules if 'sklearn' in m)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
