"""Robust feature scaling and the variance floor, fixed once from the warm-up.

The detector models ``z = (x - center) / scale`` rather than x, so that its
variance floor and its mixture do not depend on the features' units. Centre and
scale are the warm-up's median and median absolute deviation (a warm-up that
holds a far cluster or outliers must not inflate the scale of the normal
data). The variance floor, in units of z, is ``reg_covar`` plus the variance
of each discrete feature's rounding (``quantisation_floor``). Scores stay
log-densities of x: ``log p(x) = log p(z) - sum(log scale)``.

Why a floor of ``reg_covar`` (1e-2: no component narrower than a tenth of a
feature's typical spread): real streams repeat values (mass points: the same
request size, the same amount); without a floor a component collapses onto
them, and an ordinary event just beside them gets a log-density in the
hundreds below zero, ranked below real attacks. The masking guard judges
tightness without this floor (``guard.py``), so a burst of near-identical
events still stands out. Discrete features (few distinct values in the
warm-up: flags, one-hot columns, counts) also get the variance of their
rounding, step^2 / 12: a component where such a feature never varies would
otherwise give an event one step away an absurd log-density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamgmm.model.base import MAX_MAGNITUDE

# Scaled values are clipped here: a value far beyond a small warm-up spread
# stays finite when squared (it is astronomically unusual either way). A tenth
# of the input bound, so that means of clipped values pass as ``means_init``.
SCALED_BOUND = MAX_MAGNITUDE / 10.0


def quantisation_floor(X: np.ndarray) -> np.ndarray:
    """Per-feature variance step^2 / 12 of discrete features, 0 for continuous ones.

    A feature is discrete when the events take at most a quarter as many
    distinct values as there are events; its step is the median gap between
    neighbouring values. A feature constant in ``X`` is taken to step by 1
    (flags, one-hot columns and counts are the usual constant features).
    """
    n, d = X.shape
    out = np.zeros(d)
    for j in range(d):  # a loop over features, run once per warm-up
        values = np.unique(X[:, j])
        if values.size == 1:
            out[j] = 1.0 / 12.0
        elif values.size <= max(2, n // 4):
            out[j] = float(np.median(np.diff(values))) ** 2 / 12.0
    return out


@dataclass
class Scaling:
    """The fixed scaling of the features and the variance floor in its units.

    Attributes
    ----------
    center, scale : ndarray of shape (n_features,)
    floor : ndarray of shape (n_features,)
        The variance floor each covariance's diagonal gets (``reg_covar``
        plus the quantisation floor), in scaled units.
    log_jacobian : float
        ``sum(log(scale))``, subtracted from a scaled log-density.
    """

    center: np.ndarray
    scale: np.ndarray
    floor: np.ndarray
    log_jacobian: float

    @classmethod
    def fit(cls, X: np.ndarray, reg_covar: float, standardize: bool = True) -> Scaling:
        """The scaling of warm-up (or reference) events ``X`` of shape (n, d);
        without ``standardize`` the identity, with ``X``'s quantisation floor."""
        d = X.shape[1]
        if standardize:
            center = np.median(X, axis=0)
            # MAD, falling back to the standard deviation for features such as
            # one-hot columns whose MAD is 0.
            mad = 1.4826 * np.median(np.abs(X - center), axis=0)
            std = X.std(axis=0)
            # A spread too small to square in float64 counts as none.
            tiny = 1.0 / MAX_MAGNITUDE
            scale = np.where(mad > tiny, mad, np.where(std > tiny, std, 1.0))
        else:
            center, scale = np.zeros(d), np.ones(d)
        return cls._with_floor(center, scale, reg_covar + quantisation_floor(X) / scale**2)

    @classmethod
    def identity(cls, n_features: int, reg_covar: float) -> Scaling:
        """No scaling, a floor of ``reg_covar`` (a model file or an old state,
        fitted on features as they come)."""
        scale = np.ones(n_features)
        return cls._with_floor(np.zeros(n_features), scale, reg_covar + np.zeros_like(scale))

    @classmethod
    def from_arrays(cls, arrays: np.ndarray) -> Scaling:
        """From the (3, d) stack ``to_arrays`` gives: center, scale, floor."""
        center, scale, floor = np.asarray(arrays, dtype=np.float64)
        return cls._with_floor(center, scale, floor)

    @classmethod
    def _with_floor(cls, center: np.ndarray, scale: np.ndarray, floor: np.ndarray) -> Scaling:
        return cls(center, scale, floor, float(np.log(scale).sum()))

    def to_arrays(self) -> np.ndarray:
        """center, scale and floor stacked, shape (3, n_features)."""
        return np.vstack([self.center, self.scale, self.floor])

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``X`` of shape (n, d) scaled, clipped to ``SCALED_BOUND``."""
        Z = (X - self.center) / self.scale
        return np.clip(Z, -SCALED_BOUND, SCALED_BOUND, out=Z)
