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
    d = -2.0 * (X @ centers.T)
    d += x_sq[:, None]
    d += np.einsum("ij,ij->i", centers, centers)
    return np.maximum(d, 0.0, out=d)


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int, rng: np.random.RandomState, n_local_trials: int | None = None
) -> np.ndarray:
    """Indices of k-means++ seeds (greedy variant: the best of several candidates).

    The random draws are those of scikit-learn's ``kmeans_plusplus``, so a given
    ``random_state`` picks the same seeds in both libraries.
    """
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    x_sq = np.einsum("ij,ij->i", X, X)
    ones = np.ones(n)
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = rng.choice(n, p=ones / n)
    closest = _sq_dist(X, X[indices[:1]], x_sq)[:, 0]
    pot = closest @ ones
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
        pots = dist @ ones
        best = int(np.argmin(pots))
        indices[c] = cand[best]
        closest, pot = dist[best], pots[best]
    return indices


def kmeans_labels(
    X: np.ndarray, n_clusters: int, rng: np.random.RandomState, max_iter: int = 300,
    tol: float = 1e-4,
) -> np.ndarray:
    """Labels of Lloyd's k-means from a k-means++ start (one initialisation).

    Follows scikit-learn's ``KMeans(n_init=1)`` step by step (centred data, strict
    convergence on unchanged labels, then on the centre shift, empty clusters
    moved to the farthest points), so that ``init_params='kmeans'`` starts EM
    where scikit-learn's GaussianMixture does for the same ``random_state``.
    """
    X = X - X.mean(axis=0)
    centers = X[kmeans_plusplus(X, n_clusters, rng)].copy()
    # Tolerance relative to the data's spread, as scikit-learn's KMeans does.
    tol_abs = tol * float(np.mean(np.var(X, axis=0)))
    labels = old = np.full(X.shape[0], -1, dtype=np.int64)
    for _ in range(max_iter):
        labels = _assign(X, centers)
        new = _update_centers(X, centers, labels, n_clusters)
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if np.array_equal(labels, old):
            return labels
        if shift <= tol_abs:
            break
        old = labels
    return _assign(X, centers)


def _update_centers(
    X: np.ndarray, centers: np.ndarray, labels: np.ndarray, n_clusters: int
) -> np.ndarray:
    """Means of the clusters; an empty cluster takes the point farthest from its centre."""
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    sums = _group_sum(X, labels, n_clusters)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        dist = np.sum((X - centers[labels]) ** 2, axis=1)
        if dist.max() > 0:
            far = np.argpartition(dist, -empty.size)[: -empty.size - 1 : -1]
            for new_id, idx in zip(empty, far, strict=True):
                sums[labels[idx]] -= X[idx]
                sums[new_id] = X[idx]
                counts[new_id] = 1.0
                counts[labels[idx]] -= 1.0
    new = centers.copy()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return new


def _assign(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    # |x|^2 is the same for every centre, so the argmin needs |c|^2 - 2 x.c only.
    c_sq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], 16384):
        sl = slice(start, start + 16384)
        d = -2.0 * (X[sl] @ centers.T)
        d += c_sq
        labels[sl] = np.argmin(d, axis=1)
    return labels


def _group_sum(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    onehot = np.zeros((X.shape[0], n_clusters))
    onehot[np.arange(X.shape[0]), labels] = 1.0
    return onehot.T @ X


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
