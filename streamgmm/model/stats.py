"""Centred sufficient statistics of a Gaussian mixture, with exact merge and scale.

For each component k the statistics are the responsibility mass ``n[k]``, the
weighted mean ``mean[k]`` and the centred scatter
``M_k = sum_i r_ik (x_i - mean_k)(x_i - mean_k)^T``, stored by covariance type:

=========== =================================================================
type        scatter
=========== =================================================================
full        (k, d, d): one matrix per component
tied        (d, d): the pooled sum of the component scatters
diag        (k, d): the diagonal of each component's scatter
spherical   (k,): the trace of each component's scatter
=========== =================================================================

Two sets merge exactly (Chan et al.): with ``delta = mean_b - mean_a``,
``mean = mean_a + delta * n_b / n`` and ``M = M_a + M_b + delta delta^T n_a n_b / n``.
Scaling by ``c`` multiplies ``n`` and ``M`` and leaves the means alone. The
M-step reads the parameters off the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamgmm.model.covariance import check_covariance_type, expected_shape

# Guards against division by an empty component, as scikit-learn does.
MASS_EPS = 10 * np.finfo(np.float64).eps


@dataclass
class SuffStats:
    """Centred sufficient statistics of a k-component mixture in d dimensions.

    Attributes
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n : ndarray of shape (k,)
        Responsibility mass of each component.
    mean : ndarray of shape (k, d)
        Responsibility-weighted mean of each component.
    scatter : ndarray
        Centred scatter, shape by covariance type (see the module docstring).
    """

    covariance_type: str
    n: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray

    @property
    def n_components(self) -> int:
        return self.n.shape[0]

    @property
    def n_features(self) -> int:
        return self.mean.shape[1]

    @property
    def total(self) -> float:
        """Total responsibility mass (the number of events the statistics stand for)."""
        return float(self.n.sum())

    @classmethod
    def zeros(cls, covariance_type: str, n_components: int, n_features: int) -> SuffStats:
        """Empty statistics: the identity element of ``merge``."""
        check_covariance_type(covariance_type)
        k, d = n_components, n_features
        scatter = np.zeros(expected_shape(covariance_type, k, d))
        return cls(covariance_type, np.zeros(k), np.zeros((k, d)), scatter)

    def copy(self) -> SuffStats:
        return SuffStats(
            self.covariance_type, self.n.copy(), self.mean.copy(), self.scatter.copy()
        )

    def scale(self, factor: float) -> SuffStats:
        """Statistics of the same events with every weight multiplied by ``factor``."""
        return SuffStats(
            self.covariance_type, self.n * factor, self.mean.copy(), self.scatter * factor
        )

    def merge(self, other: SuffStats) -> SuffStats:
        """Exact statistics of the union of the events behind ``self`` and ``other``."""
        if other.covariance_type != self.covariance_type or other.mean.shape != self.mean.shape:
            raise ValueError(
                "merge: statistics differ in covariance type or shape: "
                f"{self.covariance_type} {self.mean.shape} vs "
                f"{other.covariance_type} {other.mean.shape}"
            )
        na, nb = self.n, other.n
        n = na + nb
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        fb = np.where(n > 0, nb / safe, 0.0)
        mean = self.mean + delta * fb[:, None]
        cross = np.where(n > 0, na * nb / safe, 0.0)
        scatter = self.scatter + other.scatter + _outer_term(delta, cross, self.covariance_type)
        return SuffStats(self.covariance_type, n, mean, scatter)

    def select(self, components: np.ndarray) -> SuffStats:
        """Statistics of a subset of components (tied scatter kept whole)."""
        scatter = self.scatter if self.covariance_type == "tied" else self.scatter[components]
        return SuffStats(
            self.covariance_type, self.n[components], self.mean[components], scatter
        )

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Plain arrays for a model file or a checkpoint."""
        return {
            f"{prefix}n": self.n,
            f"{prefix}mean": self.mean,
            f"{prefix}scatter": self.scatter,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict, covariance_type: str, prefix: str = ""
    ) -> SuffStats:
        return cls(
            covariance_type,
            np.asarray(arrays[f"{prefix}n"], dtype=np.float64),
            np.asarray(arrays[f"{prefix}mean"], dtype=np.float64),
            np.asarray(arrays[f"{prefix}scatter"], dtype=np.float64),
        )


def _outer_term(delta: np.ndarray, coef: np.ndarray, covariance_type: str) -> np.ndarray:
    """The ``delta delta^T n_a n_b / n`` correction, in the scatter's own shape."""
    if covariance_type == "full":
        return coef[:, None, None] * delta[:, :, None] * delta[:, None, :]
    if covariance_type == "tied":
        return (delta * coef[:, None]).T @ delta
    if covariance_type == "diag":
        return coef[:, None] * delta**2
    return coef * np.sum(delta**2, axis=1)


def diagonal_floor(reg_covar, n_features: int) -> np.ndarray:
    """``reg_covar`` as one variance per feature: a number, or an array of shape (d,)."""
    return np.broadcast_to(np.asarray(reg_covar, dtype=np.float64), (n_features,))


def mstep(stats: SuffStats, reg_covar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The M-step: (weights, means, covariances) from sufficient statistics.

    Mirrors scikit-learn's estimates: ``nk = n + 10 eps``, weights normalised to
    sum to one, ``reg_covar`` (a number, or one variance per feature) added to
    the diagonal; a spherical covariance takes its mean.
    """
    nk = stats.n + MASS_EPS
    weights = nk / nk.sum()
    d = stats.n_features
    reg = diagonal_floor(reg_covar, d)
    t = stats.covariance_type
    idx = np.arange(d)
    if t == "full":
        cov = stats.scatter / nk[:, None, None]
        cov[:, idx, idx] += reg
    elif t == "tied":
        cov = stats.scatter / nk.sum()
        cov[idx, idx] += reg
    elif t == "diag":
        cov = stats.scatter / nk[:, None] + reg
    else:
        cov = stats.scatter / (nk * d) + reg.mean()
    return weights, stats.mean.copy(), cov


def stats_from_params(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    total: float = 1.0,
    reg_covar=0.0,
) -> SuffStats:
    """Statistics that an M-step maps back to the given parameters.

    ``total`` is the number of events the statistics stand for; ``reg_covar`` is
    taken off the diagonal so that ``mstep(stats, reg_covar)`` returns ``covariances``.
    """
    n = np.asarray(weights, dtype=np.float64) * total
    d = means.shape[1]
    reg = diagonal_floor(reg_covar, d)
    idx = np.arange(d)
    if covariance_type == "full":
        cov = covariances.copy()
        cov[:, idx, idx] -= reg
        scatter = cov * n[:, None, None]
    elif covariance_type == "tied":
        cov = covariances.copy()
        cov[idx, idx] -= reg
        scatter = cov * n.sum()
    elif covariance_type == "diag":
        scatter = (covariances - reg) * n[:, None]
    else:
        scatter = (covariances - reg.mean()) * n * d
    return SuffStats(covariance_type, n, np.array(means, dtype=np.float64), scatter)
