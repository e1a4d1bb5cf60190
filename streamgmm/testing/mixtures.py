"""Known Gaussian mixtures for tests and benchmarks: draw them, sample them, score them."""

from __future__ import annotations

import numpy as np
from scipy.stats import multivariate_normal

# Unequal weights of the 8-component reference mixture.
WEIGHTS8 = np.array([0.24, 0.18, 0.14, 0.12, 0.10, 0.08, 0.08, 0.06])

Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]


def make_mixture(seed: int, k: int = 8, d: int = 10, spread: float = 1.6,
                 sep: float = 2.5) -> Mixture:
    """(weights, means, covariances) with unequal weights and random full covariances.

    Covariance eigenvalues lie in [0.3, 2]; means are drawn N(0, spread^2) and kept
    only if every pair is at least ``sep`` apart in the Mahalanobis metric of their
    average covariance: some overlap, yet identifiable.
    """
    rng = np.random.default_rng(seed)
    covs = np.empty((k, d, d))
    for c in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        covs[c] = (q * rng.uniform(0.3, 2.0, d)) @ q.T
    means = np.empty((k, d))
    c = 0
    while c < k:
        m = rng.normal(0.0, spread, d)
        if all((m - means[j]) @ np.linalg.solve((covs[c] + covs[j]) / 2, m - means[j])
               >= sep**2 for j in range(c)):
            means[c] = m
            c += 1
    weights = np.resize(WEIGHTS8, k)
    return weights / weights.sum(), means, covs


def sample_mixture(mix: Mixture, n: int, rng: np.random.Generator,
                   shift: float | np.ndarray = 0.0) -> np.ndarray:
    """n events from the mixture, every mean moved by ``shift``."""
    w, means, covs = mix
    labels = rng.choice(len(w), n, p=w)
    z = rng.normal(size=(n, means.shape[1]))
    return (means + shift)[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], z)


def mixture_log_density(mix: Mixture, X: np.ndarray,
                        shift: float | np.ndarray = 0.0) -> np.ndarray:
    """log p(x) of each row under the mixture (means moved by ``shift``), via scipy."""
    w, means, covs = mix
    moved = means + np.broadcast_to(shift, means.shape)
    lp = np.stack([np.log(w[c]) + multivariate_normal(moved[c], covs[c]).logpdf(X)
                   for c in range(len(w))], axis=1)
    top = lp.max(axis=1)
    return top + np.log(np.exp(lp - top[:, None]).sum(axis=1))
