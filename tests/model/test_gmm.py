"""GaussianMixture on its own: validation messages, warm starts, sampling, the verbs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streamgmm import GaussianMixture, load
from streamgmm.model.base import ConvergenceWarning, NotFittedError
from streamgmm.model.covariance import COVARIANCE_TYPES

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


@pytest.fixture(scope="module")
def fitted(blobs) -> GaussianMixture:
    return GaussianMixture(3, random_state=0).fit(blobs)


# -- input validation -------------------------------------------------------
@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_value_is_named_by_row_and_column(blobs, bad, shown):
    X = blobs.copy()
    X[17, 2] = bad
    with pytest.raises(ValueError, match=rf"X: expected finite values, got {shown} at row 17, "
                                         r"column 2"):
        GaussianMixture(2).fit(X)


def test_a_value_too_large_to_square_is_named_by_row_and_column(blobs):
    X = blobs.copy()
    X[4, 1] = 1e200
    with pytest.raises(ValueError, match=r"X: expected values within ±1e\+100, got 1e\+200 at "
                                         r"row 4, column 1"):
        GaussianMixture(2).fit(X)
    X[4, 1] = -1e100  # the bound itself is a value
    assert np.isfinite(GaussianMixture(1, reg_covar=1.0).fit(X).score(X))


def test_non_finite_value_refused_after_fit_too(fitted, blobs):
    X = blobs[:5].copy()
    X[3, 0] = np.nan
    for verb in (fitted.score_samples, fitted.predict, fitted.predict_proba, fitted.score):
        with pytest.raises(ValueError, match="got nan at row 3, column 0"):
            verb(X)


def test_wrong_number_of_features_after_fit(fitted, blobs):
    with pytest.raises(ValueError, match="X: has 2 features, but the model was fitted with "
                                         "3 features"):
        fitted.score_samples(blobs[:, :2])


def test_warm_start_refuses_other_feature_count(blobs):
    gm = GaussianMixture(2, warm_start=True, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="has 4 features, but the model was fitted with 3"):
        gm.fit(np.hstack([blobs, blobs[:, :1]]))


def test_fewer_samples_than_components(blobs):
    with pytest.raises(ValueError, match="Expected n_samples >= n_components but got "
                                         "n_components = 5, n_samples = 4"):
        GaussianMixture(5).fit(blobs[:4])


def test_one_sample_and_one_dimensional_input():
    with pytest.raises(ValueError, match="X: expected at least 2 samples, got 1"):
        GaussianMixture(1).fit([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"got a 1-D array of shape \(5,\); use reshape"):
        GaussianMixture(1).fit(np.arange(5.0))


def test_non_numeric_input():
    with pytest.raises(ValueError, match="X: expected a 2-D array of numbers"):
        GaussianMixture(1).fit([["a", "b"], ["c", "d"]])


def test_precisions_init_not_positive_definite(blobs):
    bad = np.array([np.eye(3), np.diag([1.0, -1.0, 1.0])])
    with pytest.raises(ValueError, match=r"precisions_init\[1\]: the precision matrix is not "
                                         "positive definite"):
        GaussianMixture(2, precisions_init=bad).fit(blobs)


def test_precisions_init_not_symmetric_or_not_positive(blobs):
    skew = np.array([np.eye(3), np.eye(3) + np.triu(np.ones((3, 3)), 1)])
    with pytest.raises(ValueError, match=r"precisions_init\[1\]: the precision matrix is not "
                                         "symmetric"):
        GaussianMixture(2, precisions_init=skew).fit(blobs)
    with pytest.raises(ValueError, match="precisions_init: expected positive precisions, got "
                                         r"-2.0 at index 3"):
        GaussianMixture(2, covariance_type="diag",
                        precisions_init=np.array([[1.0, 1, 1], [-2.0, 1, 1]])).fit(blobs)


def test_init_shapes_are_checked(blobs):
    with pytest.raises(ValueError, match=r"precisions_init: expected shape \(2, 3\) for "
                                         "covariance_type 'diag', got"):
        GaussianMixture(2, covariance_type="diag", precisions_init=np.ones((2, 3, 3))).fit(blobs)
    with pytest.raises(ValueError, match=r"means_init: expected shape \(2, 3\), got \(3, 3\)"):
        GaussianMixture(2, means_init=np.zeros((3, 3))).fit(blobs)
    with pytest.raises(ValueError, match="weights_init: expected 2 non-negative weights summing "
                                         "to 1, got shape .* summing to 0.9"):
        GaussianMixture(2, weights_init=[0.5, 0.4]).fit(blobs)


def test_unknown_covariance_type(blobs):
    with pytest.raises(ValueError, match="covariance_type: expected one of full, tied, diag, "
                                         "spherical, got 'fulll'"):
        GaussianMixture(2, covariance_type="fulll").fit(blobs)


def test_unknown_init_params(blobs):
    with pytest.raises(ValueError, match="init_params: expected one of kmeans, k-means\\+\\+, "
                                         "random, random_from_data, got 'kmedoids'"):
        GaussianMixture(2, init_params="kmedoids").fit(blobs)


@pytest.mark.parametrize("name, value, expected", [
    ("n_components", 0, "n_components: expected an integer >= 1, got 0"),
    ("n_init", 1.5, "n_init: expected an integer >= 1, got 1.5"),
    ("max_iter", -1, "max_iter: expected an integer >= 0, got -1"),
    ("tol", -1e-3, "tol: expected a number >= 0, got -0.001"),
    ("reg_covar", "big",
     "reg_covar: expected a number >= 0 or 3 non-negative per-feature values, got 'big'"),
])
def test_bad_hyperparameters_are_named(blobs, name, value, expected):
    with pytest.raises(ValueError, match=expected):
        GaussianMixture(**{"n_components": 2, name: value}).fit(blobs)


def test_bad_sample_weight(blobs):
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(1500,\), got \(3,\)"):
        GaussianMixture(2).fit(blobs, sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="sample_weight: expected finite, non-negative"):
        GaussianMixture(2).fit(blobs, sample_weight=-np.ones(len(blobs)))


@pytest.mark.parametrize("verb", ["score_samples", "score", "predict", "predict_proba", "bic",
                                  "aic"])
def test_called_before_fit(blobs, verb):
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted yet"):
        getattr(GaussianMixture(2), verb)(blobs)


def test_sample_and_save_before_fit(tmp_path):
    with pytest.raises(NotFittedError, match="GaussianMixture instance is not fitted"):
        GaussianMixture(2).sample(3)
    with pytest.raises(NotFittedError, match="GaussianMixture instance is not fitted"):
        GaussianMixture(2).save(tmp_path / "m.npz")
    # Like scikit-learn's, the error is both a ValueError and an AttributeError.
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_convergence_warning_when_max_iter_too_small(blobs):
    with pytest.warns(ConvergenceWarning, match="did not converge.*increase max_iter"):
        gm = GaussianMixture(3, max_iter=1, tol=1e-12, random_state=0).fit(blobs)
    assert not gm.converged_ and gm.n_iter_ == 1


def test_no_warning_when_converged(fitted):
    assert fitted.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianMixture(3, random_state=0).fit(fitted.sample(300)[0])


def test_singular_data_give_the_regularisation_hint():
    X = np.tile([[1.0, 2.0]], (10, 1))
    with pytest.raises(ValueError, match="ill-defined empirical covariance.*increase reg_covar"):
        GaussianMixture(1, reg_covar=0.0).fit(X)
    # With the default reg_covar a constant feature is fitted, not refused.
    assert np.isfinite(GaussianMixture(1).fit(X).score(X))


# -- behaviour ---------------------------------------------------------------
@pytest.mark.parametrize("init_params", INIT_METHODS)
def test_every_init_method_fits_and_is_reproducible(blobs, init_params):
    fits = [GaussianMixture(3, init_params=init_params, random_state=11, max_iter=200)
            .fit(blobs) for _ in range(2)]
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name)), name
    assert fits[0].converged_
    other = GaussianMixture(3, init_params=init_params, random_state=12, max_iter=1,
                            tol=1e-12)
    with pytest.warns(ConvergenceWarning):
        other.fit(blobs)
    # A different seed starts elsewhere.
    first = GaussianMixture(3, init_params=init_params, random_state=11, max_iter=1,
                            tol=1e-12)
    with pytest.warns(ConvergenceWarning):
        first.fit(blobs)
    assert not np.array_equal(first.means_, other.means_)


def test_warm_start_continues_from_previous_solution(blobs):
    gm = GaussianMixture(3, warm_start=True, random_state=0, max_iter=300, tol=1e-8).fit(blobs)
    first_iters, first_bound = gm.n_iter_, gm.lower_bound_
    assert first_iters > 5
    gm.fit(blobs)
    assert gm.n_iter_ <= 2
    assert gm.lower_bound_ == pytest.approx(first_bound, abs=1e-7)


def test_warm_start_resumes_an_interrupted_fit(blobs):
    cold = GaussianMixture(3, random_state=0, tol=1e-8, max_iter=300).fit(blobs)
    warm = GaussianMixture(3, random_state=0, tol=1e-8, max_iter=2, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(200):
            warm.fit(blobs)
            if warm.converged_:
                break
    assert warm.converged_
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_shapes_and_labels(blobs, covariance_type):
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(blobs)
    X, labels = gm.sample(4000)
    assert X.shape == (4000, 3)
    assert labels.shape == (4000,) and labels.dtype.kind == "i"
    assert set(np.unique(labels)) <= {0, 1, 2}
    # Each component's share and centre come back from its samples.
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 4000, gm.weights_, atol=0.03)
    for c in range(3):
        spread = np.sqrt(np.max(gm.covariances_)) if covariance_type != "spherical" else 1.0
        np.testing.assert_allclose(X[labels == c].mean(axis=0), gm.means_[c],
                                   atol=0.2 * max(spread, 1.0))
    with pytest.raises(ValueError, match="n_samples: expected at least 1, got 0"):
        gm.sample(0)


def test_fit_predict_equals_fit_then_predict(blobs):
    labels = GaussianMixture(3, random_state=4).fit_predict(blobs)
    np.testing.assert_array_equal(labels, GaussianMixture(3, random_state=4).fit(blobs)
                                  .predict(blobs))


def test_n_init_keeps_the_best_lower_bound(blobs, monkeypatch):
    from streamgmm.model import gmm as gmm_module

    runs = []

    def recording_run_em(*args, **kwargs):
        result = real_run_em(*args, **kwargs)
        runs.append(result)
        return result

    real_run_em = gmm_module.run_em
    monkeypatch.setattr(gmm_module, "run_em", recording_run_em)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best = GaussianMixture(4, init_params="random_from_data", n_init=6, random_state=0,
                               max_iter=5).fit(blobs)
    bounds = [r.lower_bound for r in runs]
    assert len(bounds) == 6 and len(set(bounds)) > 1
    assert best.lower_bound_ == max(bounds)
    winner = runs[int(np.argmax(bounds))]
    np.testing.assert_array_equal(best.means_, winner.params.means)
    assert best.lower_bounds_ == winner.lower_bounds


def test_sample_weight_equals_repeated_rows(blobs):
    X = blobs[:300]
    counts = np.random.default_rng(0).integers(0, 3, 300)
    start = GaussianMixture(3, random_state=0).fit(X)
    init = dict(weights_init=start.weights_, means_init=start.means_ + 0.3,
                precisions_init=start.precisions_, tol=0.0, max_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = GaussianMixture(3, **init).fit(X, sample_weight=counts.astype(float))
        repeated = GaussianMixture(3, **init).fit(np.repeat(X, counts, axis=0))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name),
                                   rtol=1e-9, atol=1e-12, err_msg=name)
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-12)


def test_params_round_trip_and_repr():
    gm = GaussianMixture(3, covariance_type="diag", tol=1e-4)
    params = gm.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag"
    assert GaussianMixture(**params).get_params() == params
    assert gm.set_params(n_init=4) is gm and gm.n_init == 4
    assert repr(gm) == "GaussianMixture(n_components=3, covariance_type='diag', tol=0.0001, " \
                       "n_init=4)"
    with pytest.raises(ValueError, match="Invalid parameter 'n_component' for estimator "
                                         "GaussianMixture"):
        gm.set_params(n_component=2)


def test_verbose_reports_progress(blobs, capsys):
    GaussianMixture(3, random_state=0, verbose=1, verbose_interval=1).fit(blobs)
    out = capsys.readouterr().out
    assert "Initialization 0" in out
    assert "Iteration 1\t change:" in out


def test_per_feature_reg_covar_floors_each_variance(tmp_path):
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.normal(size=600), rng.integers(0, 2, 600).astype(float)])
    scalar = GaussianMixture(2, reg_covar=1e-3, random_state=0).fit(X)
    same = GaussianMixture(2, reg_covar=[1e-3, 1e-3], random_state=0).fit(X)
    np.testing.assert_allclose(same.covariances_, scalar.covariances_, rtol=1e-12)
    floored = GaussianMixture(2, reg_covar=[1e-6, 1 / 12], random_state=0).fit(X)
    assert np.all(floored.covariances_[:, 1, 1] >= 1 / 12)
    path = tmp_path / "m.npz"
    floored.save(path)
    np.testing.assert_allclose(load(path).score_samples(X), floored.score_samples(X),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="2 non-negative per-feature values"):
        GaussianMixture(2, reg_covar=[1e-3, -1.0]).fit(X)
