"""The streaming references of the detection benchmarks, each scoring an event
before it learns it (prequential), on features min-max scaled with the
minimum and maximum of the first 2,000 events (not clipped):

- **LODA** (pysad's ``LODA(num_bins=10, num_random_cuts=100)``): one-dimensional
  histograms on 100 sparse random projections; ``score_partial`` then
  ``fit_partial`` per event (what its ``fit_score_partial`` does);
- **RCF** (rcf3's ``Forest``, 50 trees, 256 samples a tree): Random Cut Forest;
- **OIF** (rcf3's ``OnlineIForest``, 32 trees, a window of 2,048): Online
  Isolation Forest.

rcf3's detectors are called ``score`` then ``update``, never
``update_and_score``: OnlineIForest's ``update_and_score`` learns the event
before it scores it. Every reference is seeded (0), so a run repeats.

They are bench and test extras (``pip install -e '.[bench]'``), never
dependencies of streamgmm.
"""

from __future__ import annotations

import numpy as np

SCALE_EVENTS = 2000
# The package each reference needs: method -> (module, pip requirement).
NEEDS = {
    "hst": ("river", "river"),
    "loda": ("pysad", "pysad"),
    "rcf": ("rcf3", "rcf3"),
    "oif": ("rcf3", "rcf3"),
}


def minmax(X: np.ndarray, first: int = SCALE_EVENTS) -> np.ndarray:
    """X scaled by the minimum and maximum of its first ``first`` events (a constant
    feature there keeps its offset and a unit span)."""
    lo, hi = X[:first].min(axis=0), X[:first].max(axis=0)
    return (X - lo) / np.where(hi > lo, hi - lo, 1.0)


def run_loda(
    X: np.ndarray, num_bins: int = 10, num_random_cuts: int = 100, seed: int = 0
) -> np.ndarray:
    """LODA's anomaly scores (higher = more anomalous), each before it learns the event."""
    from pysad.models import LODA

    model = LODA(num_bins=num_bins, num_random_cuts=num_random_cuts, random_state=seed)
    out = np.empty(X.shape[0])
    for i, z in enumerate(minmax(X)):
        out[i] = model.score_partial(z)
        model.fit_partial(z)
    return out


def _run_rcf3(model, X: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape[0])
    score, update = model.score, model.update
    for i, z in enumerate(minmax(X).tolist()):
        out[i] = score(z)
        update(z)
    return out


def run_rcf(X: np.ndarray, num_trees: int = 50, capacity: int = 256, seed: int = 0) -> np.ndarray:
    """Random Cut Forest's anomaly scores (higher = more anomalous), score then update."""
    import rcf3

    return _run_rcf3(rcf3.Forest(X.shape[1], num_trees=num_trees, capacity=capacity, seed=seed), X)


def run_oif(
    X: np.ndarray, num_trees: int = 32, window_size: int = 2048, seed: int = 0
) -> np.ndarray:
    """Online Isolation Forest's anomaly scores (higher = more anomalous), score then update."""
    import rcf3

    return _run_rcf3(
        rcf3.OnlineIForest(X.shape[1], num_trees=num_trees, window_size=window_size, seed=seed), X
    )
