"""The E-step in log space, and batch sufficient statistics under responsibilities.

Every function here is vectorised over a batch of events: the Mahalanobis terms
of all components come from one matrix product, and each component's scatter
from one symmetric product over the batch.
"""

from __future__ import annotations

import numpy as np

from streamgmm.model.covariance import log_det_cholesky
from streamgmm.model.stats import SuffStats

LOG_2PI = np.log(2.0 * np.pi)

# Rows per chunk: bounds the (rows, k * d) temporaries of the E-step.
CHUNK_ROWS = 8192


def mahalanobis_sq(
    X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Squared Mahalanobis distance of each row of X to each component: (n, k)."""
    n, d = X.shape
    k = means.shape[0]
    if covariance_type == "full":
        # All components' whitened coordinates in one product: (n, k*d).
        pcat = np.ascontiguousarray(np.transpose(prec_chol, (1, 0, 2)).reshape(d, k * d))
        shift = np.einsum("kd,kde->ke", means, prec_chol).reshape(k * d)
        y = X @ pcat
        y -= shift
        y3 = y.reshape(n, k, d)
        return np.einsum("nkd,nkd->nk", y3, y3)
    if covariance_type == "tied":
        y = X @ prec_chol
        b = means @ prec_chol
        out = -2.0 * (y @ b.T)
        out += np.einsum("ij,ij->i", y, y)[:, None]
        out += np.einsum("ij,ij->i", b, b)[None, :]
        return np.maximum(out, 0.0)
    if covariance_type == "diag":
        prec = prec_chol**2
        out = (X * X) @ prec.T
        out -= 2.0 * (X @ (means * prec).T)
        out += np.sum(means**2 * prec, axis=1)
        return np.maximum(out, 0.0)
    prec = prec_chol**2
    out = np.einsum("ij,ij->i", X, X)[:, None] * prec
    out -= 2.0 * (X @ means.T) * prec
    out += np.sum(means**2, axis=1) * prec
    return np.maximum(out, 0.0)


def log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """log N(x | mu_k, Sigma_k) for each row and component: (n, k)."""
    d = X.shape[1]
    maha = mahalanobis_sq(X, means, prec_chol, covariance_type)
    log_det = log_det_cholesky(prec_chol, covariance_type, d)
    maha *= -0.5
    maha += log_det - 0.5 * d * LOG_2PI
    return maha


def _row_max(a: np.ndarray) -> np.ndarray:
    # A reduction across k columns: faster than a.max(axis=1) on short rows.
    m = np.maximum.reduce([a[:, j] for j in range(a.shape[1])])
    m[~np.isfinite(m)] = 0.0
    return m


def _softmax_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite ``a`` with its row-wise softmax; return it and each row's log-sum-exp."""
    m = _row_max(a)
    a -= m[:, None]
    np.exp(a, out=a)
    s = a @ np.ones(a.shape[1])
    a /= s[:, None]
    with np.errstate(divide="ignore"):
        return a, np.log(s) + m


def logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=1)) for an (n, k) array, without overflow."""
    return _softmax_rows(a.copy())[1]


def e_step(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-event log-density (n,) and responsibilities (n, k) under a mixture."""
    wlp = log_gaussian_prob(X, means, prec_chol, covariance_type)
    with np.errstate(divide="ignore"):
        wlp += np.log(weights)
    resp, log_norm = _softmax_rows(wlp)
    return log_norm, resp


def batch_stats(
    X: np.ndarray,
    resp: np.ndarray,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
) -> SuffStats:
    """Centred sufficient statistics of X under responsibilities ``resp`` (n, k).

    Full scatters are taken about each component's own mean (two passes, as
    scikit-learn does): a component that has collapsed onto a few distinct
    values, far from the data's centre, keeps a variance of exactly what it is
    instead of the rounding error of a difference of large moments. The other
    types take second moments about the batch mean and re-centre them on each
    component's mean, which keeps precision when the data sit far from the origin.
    """
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    n_k = resp.sum(axis=0)
    safe = np.where(n_k > 0, n_k, 1.0)
    if covariance_type == "full":
        mean = (resp.T @ X) / safe[:, None]
        return SuffStats(covariance_type, n_k, mean, _full_scatter(X, resp, mean))
    total = n_k.sum()
    centre = (resp.sum(axis=1) @ X) / total if total > 0 else np.zeros(X.shape[1])
    xc = X - centre
    delta = (resp.T @ xc) / safe[:, None]
    mean = centre + delta
    # Re-centre: M_k = S_k - n_k delta_k delta_k^T.
    if covariance_type == "tied":
        scatter = (xc * resp.sum(axis=1)[:, None]).T @ xc
        scatter -= (delta * n_k[:, None]).T @ delta
    elif covariance_type == "diag":
        scatter = resp.T @ (xc * xc)
        scatter -= n_k[:, None] * delta**2
    else:
        scatter = resp.T @ np.einsum("ij,ij->i", xc, xc)
        scatter -= n_k * np.sum(delta**2, axis=1)
    return SuffStats(covariance_type, n_k, mean, scatter)


def _full_scatter(X: np.ndarray, resp: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Scatter of each component about its own mean: (k, d, d)."""
    k, d = mean.shape
    out = np.empty((k, d, d))
    root = np.sqrt(resp)
    y = np.empty_like(X)
    for c in range(k):
        # Weighting the centred rows by sqrt(r) makes the product y.T @ y, which
        # numpy hands to a symmetric rank-k update (half the work of a general product).
        np.subtract(X, mean[c], out=y)
        y *= root[:, c : c + 1]
        out[c] = y.T @ y
    return out


def chunks(n: int, size: int = CHUNK_ROWS):
    """Row slices of at most ``size`` rows covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def em_pass(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
) -> tuple[SuffStats, float]:
    """One E-step over X: the statistics under the responsibilities and the summed log-density.

    The data are processed in chunks whose statistics merge exactly, so memory
    does not grow with the number of rows.
    """
    k, d = means.shape
    stats = SuffStats.zeros(covariance_type, k, d)
    total_log = 0.0
    for sl in chunks(X.shape[0]):
        log_norm, resp = e_step(X[sl], weights, means, prec_chol, covariance_type)
        sw = None if sample_weight is None else sample_weight[sl]
        total_log += float(log_norm.sum() if sw is None else log_norm @ sw)
        stats = stats.merge(batch_stats(X[sl], resp, covariance_type, sw))
    return stats, total_log
