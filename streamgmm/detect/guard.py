"""The masking guard: light, tight components are dense anomaly clusters.

Repeated attacks form a small, very dense cluster; a mixture learns it as a
component of its own and then rates those events as likely. A component
lighter than ``contamination`` whose standard deviation is ``tight_ratio``
times smaller than the typical (heavy) component's is therefore not *major*:
events are scored against the major components only. Tightness is judged
without the ``reg_covar`` part of the variance floor, which hides it from the
scores (near-identical events stay tight).

``guarded_scores`` gives the log-densities under the major components. The
same reference, handed to a refit as a ``GroupRule``, decides which
held-out events recur as a legitimate mode of their own (``groups.py``).
"""

from __future__ import annotations

import numpy as np

from streamgmm.detect.groups import GroupRule, spread_logdet
from streamgmm.model.estep import log_gaussian_prob, logsumexp_rows

# The variance floor under which the guard judges how tight a component is
# (``reg_covar`` hides it from the scores): near-identical events stay tight.
GUARD_FLOOR = 1e-6


class MaskingGuard:
    """Which components of a model are major, and the reference refits use.

    Parameters
    ----------
    contamination : float
        Components lighter than this may be suspect.
    tight_ratio : float
        How many times narrower than the typical component a suspect must be.
    reg_covar : float
        The detector's ``reg_covar``: the part of the floor the guard discounts.
    """

    def __init__(self, contamination: float, tight_ratio: float, reg_covar: float) -> None:
        self.contamination = contamination
        self.tight_ratio = tight_ratio
        self.reg_covar = reg_covar

    def shift(self, model) -> np.ndarray:
        """The part of ``model``'s variance floor the guard does not count, (d,)."""
        d = model.n_features_in_
        floor = np.broadcast_to(np.asarray(model.reg_covar, dtype=np.float64), (d,))
        return np.clip(np.minimum(self.reg_covar, floor) - GUARD_FLOOR, 0.0, None)

    def spread(self, model) -> np.ndarray:
        """log det of each component's covariance without the discounted floor, (k,)."""
        return spread_logdet(model.covariances_, model.covariance_type, self.shift(model))

    def major(self, model) -> np.ndarray:
        """A boolean mask (k,): False for light, tight components (never all False)."""
        k = model.weights_.shape[0]
        major = np.ones(k, dtype=bool)
        if model.covariance_type != "tied" and k > 1:
            logdet = self.spread(model) / model.n_features_in_
            heavy = model.weights_ >= self.contamination
            if heavy.any():
                typical = np.average(logdet[heavy], weights=model.weights_[heavy])
                tight = logdet < typical - 2.0 * np.log(self.tight_ratio)
                major = ~((model.weights_ < self.contamination) & tight)
        return major if major.any() else np.ones(k, dtype=bool)

    def group_rule(self, model) -> GroupRule | None:
        """The reference for a refit's recurring groups (None: no guard)."""
        heavy = model.weights_ >= self.contamination
        if model.covariance_type == "tied" or not heavy.any():
            return None
        logdet = self.spread(model) / model.n_features_in_
        typical = float(np.average(logdet[heavy], weights=model.weights_[heavy]))
        return GroupRule(typical, self.tight_ratio, self.shift(model)) \
            if np.isfinite(typical) else None


def guarded_scores(model, X: np.ndarray, major: np.ndarray):
    """Log-densities of scaled events ``X`` (n, d) under ``model``'s major components.

    Returns (log-density under the major components (n,), responsibilities
    (n, k), log-density under the whole mixture (n,), weighted log-probabilities
    per component (n, k)).
    """
    wlp = log_gaussian_prob(X, model.means_, model.precisions_cholesky_, model.covariance_type)
    with np.errstate(divide="ignore"):
        wlp += np.log(model.weights_)
    top = wlp.max(axis=1, keepdims=True)
    e = np.exp(wlp - top)
    total = e.sum(axis=1)
    log_norm = np.log(total) + top[:, 0]
    resp = e / total[:, None]
    if major.all():
        return log_norm, resp, log_norm, wlp
    # In log space from the major components' own maximum: an event far out
    # along a minor component would underflow to -inf through ``e``.
    log_major = logsumexp_rows(wlp[:, major]) - np.log(model.weights_[major].sum())
    return log_major, resp, log_norm, wlp
