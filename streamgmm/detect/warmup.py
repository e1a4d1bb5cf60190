"""The warm-up fit: batch EM on the first events, refitted without their lowest-scoring share."""

from __future__ import annotations

import warnings

import numpy as np

from streamgmm.detect.groups import select_by_bic
from streamgmm.model.base import ConvergenceWarning
from streamgmm.model.gmm import GaussianMixture

# Restarts of the warm-up fit: it runs once on a few hundred events, so it can
# afford many, and everything after it starts from its solution.
WARMUP_RESTARTS = 10


def fit_warmup(X: np.ndarray, k_range: tuple[int, int], covariance_type: str, floor,
               trim_level: float, random_state: int | None
               ) -> tuple[GaussianMixture, np.ndarray]:
    """The warm-up model of scaled events ``X`` (n, d), and which events it kept (n,).

    Each number of components in ``k_range`` gets ``WARMUP_RESTARTS`` restarts
    between them; BIC chooses (pruned to supported components when the range
    is open). The chosen fit is then refitted from its own solution without
    the ``trim_level`` lowest-scoring share of ``X``, as refits leave out the
    events below the learning gate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        low, high = k_range
        ks = [k for k in range(low, high + 1) if k < X.shape[0]] or [low]
        restarts = max(2, WARMUP_RESTARTS // len(ks))
        fits = [GaussianMixture(k, covariance_type=covariance_type, reg_covar=floor,
                                n_init=restarts, random_state=random_state).fit(X)
                for k in ks]
        gm = select_by_bic(fits, X, reg_covar=floor if low < high else None)
        k = gm.weights_.shape[0]
        scores = gm.score_samples(X)
        keep = scores >= np.percentile(scores, 100 * trim_level)
        if keep.sum() > 2 * k:
            gm = GaussianMixture(k, covariance_type=covariance_type, reg_covar=floor,
                                 weights_init=gm.weights_, means_init=gm.means_,
                                 precisions_init=gm.precisions_).fit(X[keep])
    return gm, keep
