"""Fixtures for the model tests: synthetic mixtures, the ADBench data sets, sklearn starts.

BLAS runs on one thread here: the machines that run the suite are small and
shared, and a multithreaded BLAS on tiny matrices is slower there, not faster.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

#: The ADBench files the model is checked on (see ../shared/data/adbench/README.md).
DATASETS = (
    "16_http",
    "23_mammography",
    "32_shuttle",
    "34_smtp",
    "38_thyroid",
    "6_cardio",
)
#: Rows kept from the large data sets, to keep the suite fast.
MAX_ROWS = 20_000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``dataset`` runs once per ADBench data set."""
    if "dataset" in metafunc.fixturenames:
        metafunc.parametrize("dataset", DATASETS)


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


def make_blobs(n: int = 1500, d: int = 3, k: int = 3, seed: int = 0,
               offset: float = 0.0) -> np.ndarray:
    """Well-separated Gaussian clusters with random shapes, shape (n, d)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 5.0, (k, d))
    shapes = rng.normal(0.0, 1.0, (k, d, d)) / np.sqrt(d) + np.eye(d)
    labels = rng.integers(0, k, n)
    X = centres[labels] + np.einsum("nij,nj->ni", shapes[labels], rng.normal(size=(n, d)))
    return X + offset


@pytest.fixture(scope="session")
def blobs() -> np.ndarray:
    """Three clusters in three dimensions, 1,500 rows."""
    return make_blobs()


@pytest.fixture(scope="session")
def blob_maker() -> Callable[..., np.ndarray]:
    """``make_blobs`` for tests that need other sizes, seeds or offsets."""
    return make_blobs


def standardize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardized X without its zero-variance columns, and the kept column indices."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(axis=0)
    keep = np.flatnonzero(sd > 0)
    X = X[:, keep]
    return (X - X.mean(axis=0)) / sd[keep], keep


@pytest.fixture(scope="session")
def adbench(shared_data: Path) -> Callable[[str], np.ndarray]:
    """Loader of a data set by name: first MAX_ROWS rows, standardized; cached."""
    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            path = shared_data / f"{name}.npz"
            if not path.is_file():
                pytest.skip(f"ADBench data set {path} not found")
            with np.load(path, allow_pickle=False) as data:
                X, _ = standardize(data["X"][:MAX_ROWS])
            # None of the six has a constant column in its first rows today; the
            # drop above keeps the comparison meaningful if a future file does.
            cache[name] = X
        return cache[name]

    return load


@pytest.fixture(scope="session")
def sk_start() -> Callable[..., dict]:
    """``sklearn_start``: equal starting parameters for both libraries."""
    return sklearn_start


def sklearn_start(X: np.ndarray, n_components: int, covariance_type: str,
                  random_state: int = 0) -> dict:
    """weights_init, means_init, precisions_init from a one-iteration scikit-learn fit."""
    from sklearn.mixture import GaussianMixture as SkGM

    start = SkGM(n_components, covariance_type=covariance_type, max_iter=1,
                 random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X)
    return {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
    }
