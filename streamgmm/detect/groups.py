"""Groups of events: how many a component needs, how tight a component is, and
which held-out events recur as a mode of their own.

The masking guard (detector.py) scores out light components far tighter than
the typical one (a dense cluster of near-identical attacks). The same measure
decides which events kept out of learning are offered back to a refit: a group
of them big enough to estimate a component for, neither tight like an attack
cluster nor scattered like outliers, and present all over the window rather
than bunched in time like a burst, is a small legitimate mode the model has not
learned yet. Without this, such a mode is flagged from the start, so it is
never learned, so it is flagged for good.
"""

from __future__ import annotations

import heapq
import warnings
from dataclasses import dataclass

import numpy as np

from streamgmm.model.base import ConvergenceWarning
from streamgmm.model.covariance import component_parameters
from streamgmm.model.gmm import GaussianMixture

# Share of the window's tenths a group must appear in to recur (not a burst).
RECUR_SHARE = 0.75
# Most components tried on the held-out events.
MAX_GROUPS = 4


# Events a component needs per free parameter of its mean and covariance to be
# chosen: the usual rule of thumb for estimating a covariance structure (five
# cases per free parameter). A full covariance in 21 dimensions needs 1,260
# events, so a 500-event warm-up gets one component; in 3 dimensions, 45.
EVENTS_PER_PARAMETER = 5


def events_needed(covariance_type: str, n_features: int) -> float:
    """Events a component needs to be kept: ``EVENTS_PER_PARAMETER`` per free parameter."""
    return EVENTS_PER_PARAMETER * component_parameters(covariance_type, n_features)


def supported(model, n_events: int) -> bool:
    """Whether every component of ``model`` rests on at least
    ``EVENTS_PER_PARAMETER`` of the ``n_events`` it was fitted on per free
    parameter of its own.

    A component fitted to few events per parameter describes those events, not
    a mode of the stream: BIC's penalty, which grows only with log n, lets a
    mixture spend components on a handful of outliers (a single event under the
    variance floor, a group of a few dozen in many dimensions), and the events
    near them then score as typical. For an anomaly detector that is the worst
    way to be wrong, so such a component is not kept.
    """
    need = events_needed(model.covariance_type, model.means_.shape[1])
    return bool(model.weights_.min() * n_events >= need)


def prune(model, X: np.ndarray, n_events: int, reg_covar):
    """``model`` without its unsupported components, refitted on X from the rest
    (the components' annihilation of Figueiredo and Jain's mixture learning)."""
    need = events_needed(model.covariance_type, model.means_.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while model.weights_.shape[0] > 1 and not supported(model, n_events):
            keep = model.weights_ * n_events >= need
            if not keep.any():
                keep = model.weights_ == model.weights_.max()
            prec = model.precisions_ if model.covariance_type == "tied" else \
                model.precisions_[keep]
            model = GaussianMixture(
                int(keep.sum()), covariance_type=model.covariance_type, reg_covar=reg_covar,
                weights_init=model.weights_[keep] / model.weights_[keep].sum(),
                means_init=model.means_[keep], precisions_init=prec).fit(X)
    return model


def select_by_bic(candidates: list, X: np.ndarray, n_events: int | None = None,
                  reg_covar=None):
    """The candidate with the lowest BIC on X once ``prune``d to the components
    ``n_events`` (default: X's) support. Only candidates that would win are
    pruned (in order of BIC, each pruned fit competing again), since a pruning
    refits. With no ``reg_covar`` to refit with, unsupported candidates are left
    out (the fewest components' best wins when none is supported)."""
    n = X.shape[0] if n_events is None else n_events
    if reg_covar is None:
        fine = [m for m in candidates if supported(m, n)]
        if not fine:
            k_min = min(m.weights_.shape[0] for m in candidates)
            fine = [m for m in candidates if m.weights_.shape[0] == k_min]
        return min(fine, key=lambda m: m.bic(X))
    # (BIC, order, model, final): a pruned fit is final, supported or not.
    queue = [(m.bic(X), i, m, False) for i, m in enumerate(candidates)]
    heapq.heapify(queue)
    while True:
        _, i, model, final = heapq.heappop(queue)
        if final or supported(model, n):
            return model
        pruned = prune(model, X, n, reg_covar)
        heapq.heappush(queue, (pruned.bic(X), i, pruned, True))


def spread_logdet(covariances: np.ndarray, covariance_type: str, shift: np.ndarray) -> np.ndarray:
    """log det of each component's covariance less ``shift`` on the diagonal (the
    part of the variance floor that hides how tight its events are).

    A component whose determinant is not positive once the shift is taken off
    (its events identical in some direction) gets -inf: as tight as can be.
    """
    d = shift.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        if covariance_type == "full":
            sign, logdet = np.linalg.slogdet(covariances - np.diag(shift))
            return np.where(sign > 0, logdet, -np.inf)
        if covariance_type == "diag":
            return np.log(np.clip(covariances - shift, 0.0, None)).sum(axis=1)
        if covariance_type == "spherical":
            return d * np.log(np.clip(covariances - shift.mean(), 0.0, None))
    raise ValueError(f"covariance_type: no spread for {covariance_type!r}")


@dataclass
class GroupRule:
    """The guard's reference, handed to a refit: ``typical`` is the mean log det
    per feature of the model's heavy components (without ``shift``); a group
    within ``ratio`` of its standard deviation either way is mode-like."""

    typical: float
    ratio: float
    shift: np.ndarray


def recurring_groups(H: np.ndarray, tenth: np.ndarray, rule: GroupRule, covariance_type: str,
                     reg_covar, seed: int) -> np.ndarray:
    """Which of the held-out events ``H`` (tenth of the window each sits in, 0-9)
    belong to a recurring, mode-like group; a boolean mask over ``H``.

    The groups are the components of a small mixture fitted on ``H`` alone,
    chosen by plain BIC so that a handful of near-identical attacks gets a
    component of its own rather than joining a group. A group is kept when it
    has the events a component needs (``supported``), is no tighter than
    ``rule.ratio`` times the typical component's standard deviation (tighter is
    a dense attack cluster) and no wider than it, within the sampling error of
    the group's own estimate (wider is scattered outliers and the tails of the
    modes the model has), and appears in ``RECUR_SHARE``
    of the window's tenths (bunched in time is a burst).
    """
    n, d = H.shape
    keep = np.zeros(n, dtype=bool)
    need = events_needed(covariance_type, d)
    if covariance_type == "tied" or n < need:
        return keep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = [GaussianMixture(k, covariance_type=covariance_type, reg_covar=reg_covar,
                                random_state=seed).fit(H)
                for k in range(1, MAX_GROUPS + 1) if n > 2 * k]
    model = min(fits, key=lambda m: m.bic(H))
    label = model.predict(H)
    spread = spread_logdet(model.covariances_, covariance_type, rule.shift) / d
    low = rule.typical - 2.0 * np.log(rule.ratio)
    for j in range(model.weights_.shape[0]):
        members = label == j
        m = int(members.sum())
        # No wider than the typical component, up to twice the sampling error
        # of the group's own log-variance per feature, sqrt(2 / m): a mode as
        # wide as the others is on that bound, and would be refused half the
        # time. The held-out tails of the modes the model has sit well above it.
        high = rule.typical + 2.0 * np.sqrt(2.0 / max(m, 1))
        if (m >= need and low <= spread[j] <= high
                and np.unique(tenth[members]).size >= RECUR_SHARE * 10):
            keep |= members
    return keep
