"""streamgmm's NotFittedError and ConvergenceWarning are scikit-learn's too, when
scikit-learn is loaded (that streamgmm never loads it, raising and warning
included, is test_gmm_sklearn.py's); and scikit-learn's own GaussianMixture
tests pass against streamgmm's."""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pytest
import sklearn.exceptions

import streamgmm
from streamgmm.model.base import ConvergenceWarning, NotFittedError

X = np.random.default_rng(0).normal(size=(300, 2))


@pytest.mark.parametrize("model", [streamgmm.GaussianMixture(2),
                                   streamgmm.OnlineGaussianMixture(2)])
def test_except_sklearn_not_fitted_error_catches_streamgmm_s(model):
    with pytest.raises(sklearn.exceptions.NotFittedError, match="is not fitted yet") as caught:
        model.score_samples(X)
    assert isinstance(caught.value, NotFittedError)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, AttributeError)
    assert type(caught.value).__name__ == "NotFittedError"
    assert type(caught.value).__module__ == "streamgmm.model.base"


def test_a_twin_pickles_and_comes_back_a_twin():
    with pytest.raises(NotFittedError) as caught:
        streamgmm.GaussianMixture(2).predict(X)
    back = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(back, sklearn.exceptions.NotFittedError)
    assert isinstance(back, NotFittedError) and back.args == caught.value.args


def test_sklearn_convergence_warning_filters_and_catches_streamgmm_s():
    fit = streamgmm.GaussianMixture(3, max_iter=1, random_state=0).fit
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="did not converge"):
        fit(X)
    with pytest.warns(ConvergenceWarning):
        fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sklearn.exceptions.ConvergenceWarning)
        with pytest.raises(sklearn.exceptions.ConvergenceWarning):
            fit(X)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        fit(X)
    assert not seen


# scikit-learn's tests (sklearn/mixture/tests/test_gaussian_mixture.py) of what
# streamgmm offers alike: fitting, scores, BIC/AIC, warm starts, and the
# exception and warning classes. Left out: its checks of argument messages
# (streamgmm's name the field and value) and of its private helpers.
SKLEARN_TESTS = (
    "test_gaussian_mixture_predict_predict_proba", "test_gaussian_mixture_fit_convergence_warning",
    "test_score", "test_score_samples", "test_monotonic_likelihood", "test_multiple_init",
    "test_gaussian_mixture_fit", "test_gaussian_mixture_fit_best_params",
    "test_gaussian_mixture_aic_bic", "test_bic_1d_1component", "test_gaussian_mixture_n_parameters",
    "test_warm_start", "test_convergence_detected_with_warm_start", "test_regularisation",
    "test_max_iter_zero",
)


@pytest.mark.parametrize("name", SKLEARN_TESTS)
def test_scikit_learn_s_own_test_passes_against_streamgmm(name, monkeypatch):
    from sklearn.mixture.tests import test_gaussian_mixture as theirs

    monkeypatch.setattr(theirs, "GaussianMixture", streamgmm.GaussianMixture)
    test = getattr(theirs, name)
    fixtures = {"global_dtype": np.float64, "global_random_seed": 0}
    params = inspect.signature(test).parameters
    marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    cases = [dict(zip([a.strip() for a in m.args[0].split(",")],
                      case if isinstance(case, tuple) else (case,), strict=True))
             for m in marks for case in m.args[1]] or [{}]
    for case in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            test(**{**{k: v for k, v in fixtures.items() if k in params}, **case})
