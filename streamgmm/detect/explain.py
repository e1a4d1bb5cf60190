"""Explanations: each feature's share of an event's squared Mahalanobis distance.

For an event x and component (mu, Lambda = Sigma^-1), with D^2 = (x - mu)^T Lambda (x - mu),
the share of feature j is ``(x - mu)_j [Lambda (x - mu)]_j / D^2``. Shares sum to
one; under correlation a share can be negative (the feature pulls the event
back towards the component).
"""

from __future__ import annotations

import numpy as np

from streamgmm.model.covariance import precisions_from_cholesky


def mahalanobis_shares(
    X: np.ndarray, component: np.ndarray, means: np.ndarray, prec_chol: np.ndarray,
    covariance_type: str,
) -> np.ndarray:
    """Per-feature shares (n, d) of each event's D^2 from its component."""
    diff = X - means[component]
    prec = precisions_from_cholesky(prec_chol, covariance_type)
    if covariance_type == "full":
        pd = np.empty_like(diff)
        # A loop over components (k), not events: each group is one product.
        for c in np.unique(component):
            rows = component == c
            pd[rows] = diff[rows] @ prec[c]
    elif covariance_type == "tied":
        pd = diff @ prec
    elif covariance_type == "diag":
        pd = diff * prec[component]
    else:
        pd = diff * prec[component][:, None]
    contrib = diff * pd
    d2 = contrib.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(d2 > 0, contrib / d2, 1.0 / X.shape[1])
    return shares


def top_features(shares: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, t) and shares (n, t) of the t largest shares of each event."""
    t = min(t, shares.shape[1])
    idx = np.argsort(-shares, axis=1)[:, :t]
    return idx, np.take_along_axis(shares, idx, axis=1)
