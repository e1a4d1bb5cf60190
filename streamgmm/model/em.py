"""Batch EM on sufficient statistics: parameters, initialisation and the EM loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamgmm.model.covariance import (
    covariances_from_cholesky,
    precision_cholesky,
    precision_cholesky_from_precisions,
)
from streamgmm.model.estep import batch_stats, e_step, em_pass
from streamgmm.model.init import initial_responsibilities
from streamgmm.model.stats import SuffStats, mstep


@dataclass
class MixtureParams:
    """Parameters of a Gaussian mixture (shapes in ``streamgmm.model.covariance``)."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @classmethod
    def from_stats(cls, stats: SuffStats, reg_covar: float) -> MixtureParams:
        """The M-step: parameters read off sufficient statistics."""
        weights, means, cov = mstep(stats, reg_covar)
        return cls(stats.covariance_type, weights, means, cov,
                   precision_cholesky(cov, stats.covariance_type))

    def e_step(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-event log-density (n,) and responsibilities (n, k)."""
        return e_step(X, self.weights, self.means, self.precisions_cholesky,
                      self.covariance_type)

    def copy(self) -> MixtureParams:
        return MixtureParams(self.covariance_type, self.weights.copy(), self.means.copy(),
                             self.covariances.copy(), self.precisions_cholesky.copy())


@dataclass
class EMResult:
    """Outcome of one EM run from one initialisation."""

    params: MixtureParams
    lower_bound: float
    n_iter: int
    converged: bool
    lower_bounds: list[float] = field(default_factory=list)


def initial_params(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    init_params: str,
    rng: np.random.RandomState,
    weights_init: np.ndarray | None = None,
    means_init: np.ndarray | None = None,
    precisions_init: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> MixtureParams:
    """Starting parameters: from responsibilities by ``init_params``, then user overrides."""
    if weights_init is not None and means_init is not None and precisions_init is not None:
        chol = precision_cholesky_from_precisions(precisions_init, covariance_type)
        return MixtureParams(covariance_type, np.array(weights_init, dtype=float),
                             np.array(means_init, dtype=float),
                             covariances_from_cholesky(chol, covariance_type), chol)
    resp = initial_responsibilities(X, n_components, init_params, rng)
    stats = batch_stats(X, resp, covariance_type, sample_weight)
    weights, means, cov = mstep(stats, reg_covar)
    if weights_init is not None:
        weights = np.array(weights_init, dtype=float)
    if means_init is not None:
        means = np.array(means_init, dtype=float)
    if precisions_init is not None:
        chol = precision_cholesky_from_precisions(precisions_init, covariance_type)
        cov = covariances_from_cholesky(chol, covariance_type)
    else:
        chol = precision_cholesky(cov, covariance_type)
    return MixtureParams(covariance_type, weights, means, cov, chol)


def run_em(
    X: np.ndarray,
    params: MixtureParams,
    reg_covar: float,
    tol: float,
    max_iter: int,
    lower_bound: float = -np.inf,
    sample_weight: np.ndarray | None = None,
    on_iter: Callable[[int, float], None] | None = None,
) -> EMResult:
    """EM from ``params`` until the mean log-likelihood changes by less than ``tol``.

    As in scikit-learn, the lower bound of an iteration is the mean log-density
    under the parameters before its M-step, and the parameters returned are
    those after the last M-step.
    """
    total_weight = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    bounds: list[float] = []
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        prev = lower_bound
        stats, total_log = em_pass(X, params.weights, params.means,
                                   params.precisions_cholesky, params.covariance_type,
                                   sample_weight)
        params = MixtureParams.from_stats(stats, reg_covar)
        lower_bound = total_log / total_weight
        bounds.append(lower_bound)
        change = lower_bound - prev
        if on_iter is not None:
            on_iter(n_iter, change)
        if abs(change) < tol:
            converged = True
            break
    return EMResult(params, lower_bound, n_iter, converged, bounds)


def final_stats(X: np.ndarray, params: MixtureParams,
                sample_weight: np.ndarray | None = None) -> SuffStats:
    """Statistics of X under a fitted model (the state an online model starts from)."""
    stats, _ = em_pass(X, params.weights, params.means, params.precisions_cholesky,
                       params.covariance_type, sample_weight)
    return stats
