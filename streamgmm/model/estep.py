"""The E-step in log space, and batch sufficient statistics under responsibilities.

Every function here is vectorised over a batch of events: the Mahalanobis terms
of all components come from one matrix product, the scatter statistics of all
components from another.
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

    Second moments are taken about the batch mean, then re-centred on each
    component's mean, which keeps precision when the data sit far from the origin.
    """
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    n_k = resp.sum(axis=0)
    total = n_k.sum()
    centre = (resp.sum(axis=1) @ X) / total if total > 0 else np.zeros(X.shape[1])
    xc = X - centre
    first = resp.T @ xc
    safe = np.where(n_k > 0, n_k, 1.0)
    delta = first / safe[:, None]
    mean = centre + delta
    scatter = _raw_scatter(xc, resp, covariance_type)
    # Re-centre: M_k = S_k - n_k delta_k delta_k^T.
    if covariance_type == "full":
        scatter -= n_k[:, None, None] * delta[:, :, None] * delta[:, None, :]
    elif covariance_type == "tied":
        scatter -= (delta * n_k[:, None]).T @ delta
    elif covariance_type == "diag":
        scatter -= n_k[:, None] * delta**2
    else:
        scatter -= n_k * np.sum(delta**2, axis=1)
    return SuffStats(covariance_type, n_k, mean, scatter)


def _raw_scatter(xc: np.ndarray, resp: np.ndarray, covariance_type: str) -> np.ndarray:
    """Second moments about the batch centre, in the scatter's shape."""
    d = xc.shape[1]
    if covariance_type == "full":
        # Upper-triangle products of every event in one array, then one product
        # with the responsibilities gives all components' scatter at once.
        iu, ju = np.triu_indices(d)
        q = np.empty((xc.shape[0], iu.size))
        start = 0
        for i in range(d):
            np.multiply(xc[:, i : i + 1], xc[:, i:], out=q[:, start : start + d - i])
            start += d - i
        tri = resp.T @ q
        k = resp.shape[1]
        out = np.empty((k, d, d))
        out[:, iu, ju] = tri
        out[:, ju, iu] = tri
        return out
    if covariance_type == "tied":
        w = resp.sum(axis=1)
        return (xc * w[:, None]).T @ xc
    sq = xc * xc
    if covariance_type == "diag":
        return resp.T @ sq
    return resp.T @ sq.sum(axis=1)


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
