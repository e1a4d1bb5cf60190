"""Initialisation: k-means, k-means++ seeds, random responsibilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus

from streamgmm.model.init import (
    INIT_METHODS,
    _update_centers,
    check_random_state,
    initial_responsibilities,
    kmeans_labels,
    kmeans_plusplus,
)


@pytest.mark.parametrize("method", INIT_METHODS)
def test_responsibilities_are_valid_and_reproducible(blobs, method):
    resp = initial_responsibilities(blobs, 4, method, np.random.RandomState(0))
    assert resp.shape == (blobs.shape[0], 4)
    assert np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1)[resp.sum(axis=1) > 0], 1.0)
    again = initial_responsibilities(blobs, 4, method, np.random.RandomState(0))
    assert np.array_equal(resp, again)
    other = initial_responsibilities(blobs, 4, method, np.random.RandomState(1))
    assert not np.array_equal(resp, other)
    if method in ("k-means++", "random_from_data"):
        # One seed event per component, each a different event.
        assert np.array_equal(resp.sum(axis=0), np.ones(4))
        assert len(set(np.argmax(resp, axis=0))) == 4
    if method == "kmeans":
        assert np.all(resp.sum(axis=0) > 0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 5])
def test_kmeans_plusplus_picks_scikit_learns_seeds(blobs, seed, k):
    _, want = sk_kmeans_plusplus(blobs, k, random_state=np.random.RandomState(seed))
    got = kmeans_plusplus(blobs, k, np.random.RandomState(seed))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_labels_equal_scikit_learns(adbench, seed):
    # Heavy ties and outliers (smtp) are where two k-means implementations part ways.
    X = adbench("34_smtp")
    want = KMeans(4, n_init=1, random_state=np.random.RandomState(seed)).fit(X).labels_
    got = kmeans_labels(X, 4, np.random.RandomState(seed))
    np.testing.assert_array_equal(got, want)


def test_empty_cluster_takes_the_farthest_point():
    # The centre at 100 wins no point; it moves to the point farthest from its
    # own centre (10), which leaves the first cluster, as in scikit-learn.
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    centres = np.array([[1.0], [100.0]])
    new = _update_centers(X, centres, np.zeros(4, dtype=np.int64), 2)
    np.testing.assert_allclose(new, [[1.0], [10.0]])


def test_kmeans_plusplus_with_fewer_distinct_points_than_seeds():
    X = np.vstack([np.zeros((5, 2)), np.ones((5, 2))])
    idx = kmeans_plusplus(X, 4, np.random.RandomState(0))
    assert len(set(idx.tolist())) == 4


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="init_params: expected one of kmeans, k-means\\+\\+, "
                                         "random, random_from_data, got 'spectral'"):
        initial_responsibilities(np.zeros((5, 2)), 2, "spectral", np.random.RandomState(0))


def test_check_random_state():
    rs = np.random.RandomState(3)
    assert check_random_state(rs) is rs
    assert check_random_state(None) is np.random.mtrand._rand
    a, b = check_random_state(5), check_random_state(5)
    assert a is not b and a.randint(1000) == b.randint(1000)
    with pytest.raises(ValueError, match="random_state: expected None, an int or a numpy "
                                         "RandomState, got 'seed'"):
        check_random_state("seed")
