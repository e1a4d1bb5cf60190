"""Figures are drawn headless (Agg) from small data (``figure_checks`` reads them back)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture
def two_blobs() -> np.ndarray:
    """Two correlated clusters in three features and a few far points."""
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([0, 0, 0], [[1, 0.8, 0.2], [0.8, 1, 0], [0.2, 0, 2]], 500)
    b = rng.multivariate_normal([5, 2, -1], [[1, -0.5, 0], [-0.5, 0.6, 0], [0, 0, 0.3]], 400)
    far = rng.uniform(-6, 10, (12, 3))
    return np.vstack([a, b, far])
