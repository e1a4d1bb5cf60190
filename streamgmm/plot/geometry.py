"""A Gaussian mixture seen in a plane: the map onto two axes, the projected
components, their ellipses and the plane's marginal density. No matplotlib here.

A plane is an affine map ``z = (x - origin) @ A`` with ``A`` of shape (d, 2):
two chosen features (``A`` selects two columns) or the first two principal
axes of the data. The image of a Gaussian N(mu, Sigma) under it is exactly
N((mu - origin) @ A, A^T Sigma A), so the image of the mixture is the mixture
of the images with the same weights: the plane's marginal density is exact,
not an approximation, whatever the number of features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from streamgmm.model.covariance import COVARIANCE_TYPES

__all__ = [
    "Plane",
    "ellipse",
    "feature_plane",
    "full_covariances",
    "marginal_log_density",
    "principal_plane",
    "resolve_features",
]


@dataclass(frozen=True)
class Plane:
    """The affine map ``z = (x - origin) @ A`` onto two axes.

    Attributes
    ----------
    A : ndarray of shape (n_features, 2)
    origin : ndarray of shape (n_features,)
    labels : tuple of two str
        What each axis shows.
    """

    A: np.ndarray
    origin: np.ndarray
    labels: tuple[str, str]

    def points(self, X: np.ndarray) -> np.ndarray:
        """Points (or means) of shape (n, n_features) in the plane, shape (n, 2)."""
        return (np.asarray(X, dtype=np.float64) - self.origin) @ self.A

    def covariances(self, covariances: np.ndarray) -> np.ndarray:
        """Full covariances (k, d, d) mapped to the plane: ``A^T Sigma A``, shape (k, 2, 2)."""
        return np.einsum("di,kde,ej->kij", self.A, covariances, self.A)


def full_covariances(covariance_type: str, covariances: np.ndarray, n_components: int,
                     n_features: int) -> np.ndarray:
    """Covariances of any type as full matrices, shape (n_components, n_features, n_features).

    Examples
    --------
    >>> full_covariances("spherical", np.array([2.0, 3.0]), 2, 2)[1].tolist()
    [[3.0, 0.0], [0.0, 3.0]]
    >>> full_covariances("diag", np.array([[1.0, 4.0]]), 1, 2)[0].tolist()
    [[1.0, 0.0], [0.0, 4.0]]
    """
    cov = np.asarray(covariances, dtype=np.float64)
    k, d = n_components, n_features
    if covariance_type == "full":
        return cov.reshape(k, d, d)
    if covariance_type == "tied":
        return np.broadcast_to(cov.reshape(d, d), (k, d, d)).copy()
    if covariance_type == "diag":
        return cov.reshape(k, d)[:, :, None] * np.eye(d)
    if covariance_type == "spherical":
        return cov.reshape(k)[:, None, None] * np.eye(d)
    raise ValueError(f"covariance_type: expected one of {', '.join(COVARIANCE_TYPES)}, "
                     f"got {covariance_type!r}")


def resolve_features(features, names: Sequence[str], what: str = "features") -> tuple[int, int]:
    """Two column indices from names, indices or a comma-separated string.

    Errors name ``what`` (e.g. ``--features``), the value and the valid choices.

    Examples
    --------
    >>> resolve_features("b,a", ["a", "b", "c"])
    (1, 0)
    >>> resolve_features((0, "c"), ["a", "b", "c"])
    (0, 2)
    """
    items = [s.strip() for s in features.split(",")] if isinstance(features, str) else \
        list(features)
    if len(items) != 2:
        raise ValueError(f"{what}: expected two features, got {len(items)} ({features!r})")
    out = []
    for item in items:
        if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()
                                                   and item not in names):
            index = int(item)
            if not 0 <= index < len(names):
                raise ValueError(f"{what}: feature index {index} is out of range "
                                 f"(the data have {len(names)} features)")
        elif item in names:
            index = list(names).index(item)
        else:
            raise ValueError(f"{what}: unknown feature {item!r} "
                             f"(the features are {', '.join(names)})")
        out.append(index)
    if out[0] == out[1]:
        raise ValueError(f"{what}: the two features are the same ({names[out[0]]!r})")
    return out[0], out[1]


def feature_plane(n_features: int, features: tuple[int, int], names: Sequence[str]) -> Plane:
    """The plane of two features."""
    i, j = features
    A = np.zeros((n_features, 2))
    A[i, 0] = A[j, 1] = 1.0
    return Plane(A, np.zeros(n_features), (names[i], names[j]))


def principal_plane(X: np.ndarray, names: Sequence[str]) -> Plane:
    """The first two principal axes of X with standardised features (correlation PCA).

    Each feature is divided by its standard deviation first, so a feature in
    large units does not take the axes by itself; a constant feature is left
    unscaled. Each axis is signed so that its largest loading is positive.
    Labels give the share of the (standardised) variance and the two largest
    loadings.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] < 2:
        raise ValueError(f"X: principal axes need at least two rows, got {X.shape[0]}")
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    _, s, vt = np.linalg.svd((X - mean) / std, full_matrices=False)
    V = vt[:2].T
    V = V * np.where(V[np.argmax(np.abs(V), axis=0), [0, 1]] < 0, -1.0, 1.0)
    share = s**2 / max(float(np.sum(s**2)), np.finfo(float).tiny)
    labels = tuple(_axis_label(n, V[:, n], share[n], names) for n in range(2))
    return Plane(V / std[:, None], mean, labels)


def _axis_label(n: int, loadings: np.ndarray, share: float, names: Sequence[str]) -> str:
    top = np.argsort(-np.abs(loadings))[:2]
    terms = ", ".join(f"{loadings[t]:+.2f} {names[t]}" for t in top)
    return f"principal axis {n + 1} ({100 * share:.0f}% of the variance)\n{terms}"


def ellipse(cov2: np.ndarray, radius: float) -> tuple[float, float, float]:
    """(width, height, angle in degrees) of the ellipse {z : z^T cov2^-1 z = radius^2}.

    Examples
    --------
    >>> w, h, a = ellipse(np.array([[4.0, 0.0], [0.0, 1.0]]), 2.0)
    >>> round(w, 6), round(h, 6), round(a % 180, 6)
    (8.0, 4.0, 0.0)
    """
    values, vectors = np.linalg.eigh(cov2)
    values = np.maximum(values, 0.0)
    major = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    return (2.0 * radius * float(np.sqrt(values[1])), 2.0 * radius * float(np.sqrt(values[0])),
            angle)


def marginal_log_density(Z: np.ndarray, weights: np.ndarray, means2: np.ndarray,
                         covs2: np.ndarray) -> np.ndarray:
    """Log-density at points Z (m, 2) of the mixture of 2-D Gaussians (k,), (k, 2), (k, 2, 2)."""
    Z = np.asarray(Z, dtype=np.float64)
    a, b, c = covs2[:, 0, 0], covs2[:, 0, 1], covs2[:, 1, 1]
    det = a * c - b * b
    if np.any(~(det > 0)):
        raise ValueError("a component's covariance is singular in this plane "
                         "(the two features are collinear within it)")
    dx = Z[:, None, 0] - means2[None, :, 0]
    dy = Z[:, None, 1] - means2[None, :, 1]
    quad = (c * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / det
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    log_comp = log_w - np.log(2.0 * np.pi) - 0.5 * np.log(det) - 0.5 * quad
    return logsumexp(log_comp, axis=1)
