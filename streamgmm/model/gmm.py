"""GaussianMixture: batch EM with scikit-learn's API, built on sufficient statistics."""

from __future__ import annotations

import warnings

import numpy as np

from streamgmm.model.base import ConvergenceWarning, EstimatorMixin, check_array
from streamgmm.model.covariance import (
    COVARIANCE_TYPES,
    check_covariance_type,
    expected_shape,
    precision_cholesky_from_precisions,
)
from streamgmm.model.em import initial_params, run_em
from streamgmm.model.init import INIT_METHODS, check_random_state
from streamgmm.model.reading import FittedMixtureMixin


class GaussianMixture(FittedMixtureMixin, EstimatorMixin):
    """Gaussian mixture fitted by batch EM; a drop-in for scikit-learn's GaussianMixture.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float or array-like of shape (n_features,), default=1e-6
        Added to the diagonal of every covariance (one value per feature is a
        streamgmm extension).
    max_iter : int, default=100
    n_init : int, default=1
        Initialisations tried; the best lower bound wins.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Shape (n_components, d, d) for full, (d, d) for tied, (n_components, d)
        for diag, (n_components,) for spherical.
    random_state : int, RandomState or None, default=None
    warm_start : bool, default=False
        Start each ``fit`` from the previous solution (one initialisation).
    verbose : int, default=0
    verbose_interval : int, default=10

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes as ``precisions_init``.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood of the best initialisation.
    lower_bounds_ : list of float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from streamgmm import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(6, 1, (200, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0]).round(1)
    array([-0.1,  6. ])
    >>> gm.predict([[0.0, 0.0], [6.0, 6.0]]).tolist() == gm.means_[:, 0].argsort().tolist()
    True
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # -- validation ---------------------------------------------------------
    def _check_parameters(self, X: np.ndarray) -> None:
        k, d = self.n_components, X.shape[1]
        _check_positive_int("n_components", k)
        _check_positive_int("n_init", self.n_init)
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 0:
            raise ValueError(f"max_iter: expected an integer >= 0, got {self.max_iter!r}")
        if not isinstance(self.tol, (int, float, np.floating)) or self.tol < 0:
            raise ValueError(f"tol: expected a number >= 0, got {self.tol!r}")
        _check_reg_covar(self.reg_covar, d)
        check_covariance_type(self.covariance_type)
        if self.init_params not in INIT_METHODS:
            raise ValueError(
                f"init_params: expected one of {', '.join(INIT_METHODS)}, "
                f"got {self.init_params!r}"
            )
        if X.shape[0] < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {X.shape[0]}"
            )
        self._weights_init = self._means_init = self._precisions_init = None
        if self.weights_init is not None:
            w = check_array(np.reshape(self.weights_init, (1, -1)), "weights_init")[0]
            if w.shape != (k,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError(
                    f"weights_init: expected {k} non-negative weights summing to 1, got "
                    f"shape {w.shape} summing to {w.sum():.6g}"
                )
            self._weights_init = w
        if self.means_init is not None:
            m = check_array(self.means_init, "means_init")
            if m.shape != (k, d):
                raise ValueError(f"means_init: expected shape {(k, d)}, got {m.shape}")
            self._means_init = m
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            shape = expected_shape(self.covariance_type, k, d)
            if p.shape != shape:
                raise ValueError(
                    f"precisions_init: expected shape {shape} for covariance_type "
                    f"{self.covariance_type!r}, got {p.shape}"
                )
            if not np.all(np.isfinite(p)):
                raise ValueError("precisions_init: expected finite values")
            precision_cholesky_from_precisions(p, self.covariance_type)
            self._precisions_init = p

    # -- fitting ------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture by EM, keeping the best of ``n_init`` initialisations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative event weights (streamgmm extension).
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit the mixture and return the most probable component of each sample."""
        X = check_array(X)
        if X.shape[0] < 2:
            raise ValueError(f"X: expected at least 2 samples, got {X.shape[0]}")
        self._check_parameters(X)
        if self.warm_start and hasattr(self, "converged_") and X.shape[1] != self.n_features_in_:
            check_array(X, n_features=self.n_features_in_)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        rng = check_random_state(self.random_state)
        best = None
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if do_init:
                start = initial_params(
                    X, self.n_components, self.covariance_type, self.reg_covar,
                    self.init_params, rng, self._weights_init, self._means_init,
                    self._precisions_init, sw,
                )
                lower = -np.inf
            else:
                start, lower = self._get_params(), self.lower_bound_
            result = run_em(X, start, self.reg_covar, self.tol, self.max_iter, lower, sw,
                            self._iteration_hook(init))
            if self.max_iter == 0:
                result.n_iter = 0
            if best is None or result.lower_bound > best.lower_bound:
                best = result
        if not best.converged and self.max_iter > 0:
            # An instance, so that with scikit-learn loaded the category is
            # also scikit-learn's ConvergenceWarning (base.py).
            warnings.warn(ConvergenceWarning(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data."),
                stacklevel=2,
            )
        self._set_params(best.params)
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = best.lower_bounds
        return self.predict(X)

    def _iteration_hook(self, init: int):
        # ``_progress`` (init, n_iter, change) is set by the CLI for its progress line.
        progress = getattr(self, "_progress", None)
        if not self.verbose and progress is None:
            return None

        def hook(n_iter: int, change: float) -> None:
            if self.verbose and n_iter % self.verbose_interval == 0:
                print(f"  Iteration {n_iter}\t change: {change:.6g}")
            if progress is not None:
                progress(init, n_iter, change)

        return hook


def _check_reg_covar(reg_covar, n_features: int) -> None:
    """A number >= 0, or (a streamgmm extension) one variance floor per feature."""
    if isinstance(reg_covar, (int, float, np.floating)) and not isinstance(reg_covar, bool):
        if reg_covar >= 0:
            return
    else:
        arr = np.asarray(reg_covar, dtype=np.float64) if np.ndim(reg_covar) == 1 else None
        if arr is not None and arr.shape == (n_features,) and np.all(np.isfinite(arr)) \
                and np.all(arr >= 0):
            return
    raise ValueError(
        f"reg_covar: expected a number >= 0 or {n_features} non-negative per-feature "
        f"values, got {reg_covar!r}"
    )


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


def _check_sample_weight(sample_weight, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0) or sw.sum() <= 0:
        raise ValueError("sample_weight: expected finite, non-negative weights with a positive sum")
    return sw


__all__ = ["GaussianMixture", "COVARIANCE_TYPES"]
