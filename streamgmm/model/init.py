"""Initial responsibilities for EM: k-means, k-means++ seeding, random.

The methods and their names follow scikit-learn's ``init_params``; all take a
``numpy.random.RandomState`` so that a fixed ``random_state`` reproduces a fit.
"""

from __future__ import annotations

import numbers

import numpy as np

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def check_random_state(seed) -> np.random.RandomState:
    """A RandomState from None, an int or an existing RandomState."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state: expected None, an int or a numpy RandomState, got {seed!r}"
    )


def _sq_dist(X: np.ndarray, centers: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    d = x_sq[:, None] - 2.0 * (X @ centers.T) + np.einsum("ij,ij->i", centers, centers)
    return np.maximum(d, 0.0)


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, rng: np.random.RandomState, n_local_trials: int | None = None
) -> np.ndarray:
    """Indices of k-means++ seeds (greedy variant: the best of several candidates)."""
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    x_sq = np.einsum("ij,ij->i", X, X)
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = rng.randint(n)
    closest = _sq_dist(X, X[indices[:1]], x_sq)[:, 0]
    pot = closest.sum()
    for c in range(1, n_clusters):
        if pot <= 0:
            # All remaining points coincide with a seed: pick distinct rows at random.
            rest = np.setdiff1d(np.arange(n), indices[:c])
            indices[c:] = rng.choice(rest, n_clusters - c, replace=False)
            break
        rand_vals = rng.uniform(size=n_local_trials) * pot
        cand = np.searchsorted(np.cumsum(closest), rand_vals)
        np.clip(cand, None, n - 1, out=cand)
        dist = np.minimum(closest[None, :], _sq_dist(X, X[cand], x_sq).T)
        pots = dist.sum(axis=1)
        best = int(np.argmin(pots))
        indices[c] = cand[best]
        closest, pot = dist[best], pots[best]
    return indices


def kmeans_labels(
    X: np.ndarray, n_clusters: int, rng: np.random.RandomState, max_iter: int = 100,
    tol: float = 1e-4,
) -> np.ndarray:
    """Labels of Lloyd's k-means from a k-means++ start (one initialisation)."""
    centers = X[kmeans_plusplus(X, n_clusters, rng)].copy()
    x_sq = np.einsum("ij,ij->i", X, X)
    # Tolerance relative to the data's spread, as scikit-learn's KMeans does.
    tol_abs = tol * float(np.mean(np.var(X, axis=0)))
    labels = np.zeros(X.shape[0], dtype=np.int64)
    for _ in range(max_iter):
        labels = _assign(X, centers, x_sq)
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.zeros_like(centers)
        _group_sum(X, labels, sums)
        new = centers.copy()
        nonempty = counts > 0
        new[nonempty] = sums[nonempty] / counts[nonempty, None]
        if np.any(~nonempty):
            # Re-seed empty clusters at the points farthest from their centre.
            far = np.argsort(_sq_dist(X, centers, x_sq)[np.arange(X.shape[0]), labels])
            new[~nonempty] = X[far[-int((~nonempty).sum()):]]
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= tol_abs:
            break
    return _assign(X, centers, x_sq)


def _assign(X: np.ndarray, centers: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], 16384):
        sl = slice(start, start + 16384)
        labels[sl] = np.argmin(_sq_dist(X[sl], centers, x_sq[sl]), axis=1)
    return labels


def _group_sum(X: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
    onehot = np.zeros((X.shape[0], out.shape[0]))
    onehot[np.arange(X.shape[0]), labels] = 1.0
    out[:] = onehot.T @ X


def initial_responsibilities(
    X: np.ndarray, n_components: int, method: str, rng: np.random.RandomState
) -> np.ndarray:
    """Initial responsibilities (n, k) by ``method`` (one of INIT_METHODS)."""
    n = X.shape[0]
    if method == "kmeans":
        resp = np.zeros((n, n_components))
        resp[np.arange(n), kmeans_labels(X, n_components, rng)] = 1.0
        return resp
    if method == "random":
        resp = rng.uniform(size=(n, n_components))
        return resp / resp.sum(axis=1)[:, None]
    if method == "random_from_data":
        idx = rng.choice(n, size=n_components, replace=False)
    elif method == "k-means++":
        idx = kmeans_plusplus(X, n_components, rng)
    else:
        raise ValueError(
            f"init_params: expected one of {', '.join(INIT_METHODS)}, got {method!r}"
        )
    resp = np.zeros((n, n_components))
    resp[idx, np.arange(n_components)] = 1.0
    return resp
