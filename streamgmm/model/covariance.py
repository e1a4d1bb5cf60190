"""Per-covariance-type helpers: shapes, precision Cholesky factors, log-determinants.

Shapes by covariance type, for k components and d features:

=========== ================= ==================
type        covariances       precisions_cholesky
=========== ================= ==================
full        (k, d, d)         (k, d, d)
tied        (d, d)            (d, d)
diag        (k, d)            (k, d)
spherical   (k,)              (k,)
=========== ================= ==================

The precision Cholesky factor ``P`` is upper triangular with ``P @ P.T`` equal to
the precision matrix, so the squared Mahalanobis distance of ``x`` is
``|(x - mu) @ P|^2``, the convention scikit-learn uses.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from streamgmm.model import COVARIANCE_TYPES

SINGULAR_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the input data."
)


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` or raise a ValueError naming the valid choices."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type: expected one of {', '.join(COVARIANCE_TYPES)}, "
            f"got {covariance_type!r}"
        )
    return covariance_type


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper-triangular precision factors of ``covariances`` (shapes in the module doc)."""
    if covariance_type in ("full", "tied"):
        return _inverse_cholesky_t(covariances)
    if np.any(~(covariances > 0.0)):
        raise ValueError(SINGULAR_MESSAGE)
    return 1.0 / np.sqrt(covariances)


def _inverse_cholesky_t(cov: np.ndarray) -> np.ndarray:
    """``inv(cholesky(cov)).T`` for one matrix or a stack, batched in one LAPACK sweep."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(SINGULAR_MESSAGE) from None
    if not np.all(np.isfinite(chol)):
        raise ValueError(SINGULAR_MESSAGE)
    eye = np.broadcast_to(np.eye(cov.shape[-1]), cov.shape)
    # Contiguous, as a loaded model's arrays are: the E-step's products sum in an
    # order that depends on memory layout, and a saved model must score the same.
    return np.ascontiguousarray(np.swapaxes(np.tril(np.linalg.solve(chol, eye)), -1, -2))


def precision_cholesky_from_precisions(
    precisions: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Upper-triangular factors ``P`` with ``P @ P.T == precisions``.

    Raises ValueError naming the component when a precision is not positive definite.
    """
    if covariance_type in ("full", "tied"):
        mats = precisions if covariance_type == "full" else precisions[None]
        out = np.empty_like(mats)
        for c, prec in enumerate(mats):
            if not np.allclose(prec, prec.T):
                raise ValueError(f"precisions_init[{c}]: the precision matrix is not symmetric")
            try:
                low = linalg.cholesky(prec[::-1, ::-1], lower=True, check_finite=False)
            except linalg.LinAlgError:
                raise ValueError(
                    f"precisions_init[{c}]: the precision matrix is not positive definite"
                ) from None
            out[c] = low[::-1, ::-1]
        return out if covariance_type == "full" else out[0]
    if np.any(~(precisions > 0.0)):
        flat = np.ravel(precisions)
        bad = int(np.flatnonzero(~(flat > 0.0))[0])
        raise ValueError(
            f"precisions_init: expected positive precisions, got {float(flat[bad])!r} "
            f"at index {bad}"
        )
    return np.sqrt(precisions)


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices (or vectors, or scalars) from their Cholesky factors."""
    if covariance_type == "full":
        return np.matmul(prec_chol, np.swapaxes(prec_chol, 1, 2))
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def covariances_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariances from precision Cholesky factors (used when only precisions are known)."""
    if covariance_type in ("full", "tied"):
        mats = prec_chol if covariance_type == "full" else prec_chol[None]
        inv = np.empty_like(mats)
        eye = np.eye(mats.shape[-1])
        for c, p in enumerate(mats):
            pinv = linalg.solve_triangular(p, eye, lower=False, check_finite=False)
            inv[c] = pinv.T @ pinv
        return inv if covariance_type == "full" else inv[0]
    return 1.0 / prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int) -> np.ndarray:
    """log det of each precision Cholesky factor: shape (k,) or a scalar for tied."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(prec_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Number of free parameters of a mixture (used by BIC and AIC)."""
    k, d = n_components, n_features
    cov = {
        "full": k * d * (d + 1) / 2.0,
        "tied": d * (d + 1) / 2.0,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return int(cov + k * d + k - 1)


def component_parameters(covariance_type: str, n_features: int) -> int:
    """Free parameters of one component's mean and covariance: what one more
    component costs besides its weight (a tied covariance is shared, so it
    costs a component only its mean)."""
    return (n_parameters(covariance_type, 2, n_features)
            - n_parameters(covariance_type, 1, n_features) - 1)


def expected_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of covariances (and precisions) for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
