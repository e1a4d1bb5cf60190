"""Respawning a component whose weight decayed: split the heaviest one in two.

The two halves sit half a standard deviation either side of the heavy
component's mean along its main axis, and the between-halves part is taken off
the scatter, so the pair's merged statistics equal the original's exactly: a
respawn moves no mass and changes the mixture's fit only as EM then moves
the halves apart.
"""

from __future__ import annotations

import numpy as np

from streamgmm.model.stats import SuffStats

__all__ = ["split_heaviest"]


def split_heaviest(stats: SuffStats, light: int, rng: np.random.RandomState) -> SuffStats:
    """Replace component ``light`` by half of the heaviest one, split along its main axis."""
    stats = stats.copy()
    heavy = int(np.argmax(stats.n))
    cov = _component_cov(stats, heavy)
    vals, vecs = np.linalg.eigh(cov)
    offset = np.sqrt(max(vals[-1], 0.0)) * vecs[:, -1] * 0.5
    if rng.uniform() < 0.5:
        offset = -offset
    # Each half moves by +-offset; taking the between-halves part off the
    # scatter keeps the pair's merged statistics equal to the original's.
    pair = stats.n[heavy] + stats.n[light]
    half = pair / 2.0
    mean = stats.mean[heavy].copy()
    stats.n[heavy] = stats.n[light] = half
    stats.mean[heavy] = mean + offset
    stats.mean[light] = mean - offset
    shrunk = cov - np.outer(offset, offset)
    t = stats.covariance_type
    if t == "full":
        stats.scatter[heavy] = stats.scatter[light] = shrunk * half
    elif t == "tied":
        stats.scatter = stats.scatter - pair * np.outer(offset, offset)
    elif t == "diag":
        stats.scatter[heavy] = stats.scatter[light] = np.maximum(np.diag(shrunk), 0) * half
    else:
        stats.scatter[heavy] = stats.scatter[light] = max(np.trace(shrunk), 0.0) * half
    return stats


def _component_cov(stats: SuffStats, c: int) -> np.ndarray:
    n = max(stats.n[c], 1e-300)
    t = stats.covariance_type
    if t == "full":
        return stats.scatter[c] / n
    if t == "tied":
        return stats.scatter / max(stats.total, 1e-300)
    if t == "diag":
        return np.diag(stats.scatter[c] / n)
    return np.eye(stats.n_features) * stats.scatter[c] / (n * stats.n_features)
