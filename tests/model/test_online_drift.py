"""OnlineGaussianMixture under drift: abrupt change, slow drift, no false alarms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.online import OnlineGaussianMixture


def make_mixture(seed: int, k: int = 8, d: int = 10):
    """Random full covariances (eigenvalues 0.3 to 2), unequal weights, separated means."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(k, d, d)))[0]
    covs = np.einsum("kij,kj,klj->kil", q, rng.uniform(0.3, 2.0, (k, d)), q)
    means = rng.normal(0.0, 2.2, (k, d))
    w = np.linspace(2.0, 1.0, k)
    return w / w.sum(), means, covs


def sample(mix, n: int, rng: np.random.Generator, shift: np.ndarray | float = 0.0):
    w, means, covs = mix
    labels = rng.choice(len(w), n, p=w)
    z = rng.normal(size=(n, means.shape[1]))
    return (means + shift)[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], z)


def fit_reference(X: np.ndarray) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(8, n_init=3, random_state=0).fit(X)


def recovery_events(model, X_new, Xt, reference: float, batch: int = 500,
                    tol: float = 0.1) -> tuple[int, list[float]]:
    """Events after the change until the held-out gap stays within ``tol``."""
    gaps = []
    for start in range(0, X_new.shape[0], batch):
        model.partial_fit(X_new[start:start + batch])
        gaps.append(reference - model.score(Xt))
    over = np.flatnonzero(np.array(gaps) > tol)
    return (int(over[-1]) + 2) * batch if over.size else batch, gaps


@pytest.mark.parametrize("seed", [0, 1])
def test_abrupt_change_recovers_within_20k_events_and_detection_helps(seed):
    rng = np.random.default_rng(seed)
    old, new = make_mixture(seed), make_mixture(seed + 1000)
    X_old, X_new = sample(old, 30_000, rng), sample(new, 20_000, rng)
    Xt = sample(new, 5000, rng)
    reference = fit_reference(sample(new, 20_000, rng)).score(Xt)
    results = {}
    for threshold in (8.0, None):
        model = OnlineGaussianMixture(8, drift_threshold=threshold, random_state=seed)
        for start in range(0, X_old.shape[0], 500):
            model.partial_fit(X_old[start:start + 500])
        assert model.n_drift_alarms_ == 0
        events, gaps = recovery_events(model, X_new, Xt, reference)
        results[threshold] = (events, round(gaps[-1], 3), model.n_drifts_)
    figures = (f"(recovery events, final gap in nats, drift refits) with detection "
               f"{results[8.0]}, without {results[None]}")
    assert results[8.0][0] <= 20_000 and results[8.0][1] < 0.1, figures
    assert results[8.0][2] == 1, figures
    # Without detection the same stream is still far off after 20k events.
    assert results[None][1] > 0.1, figures


def test_slow_drift_is_tracked():
    """Every mean moves 4 units over 100k events (about 3 standard deviations).

    The statistics lag a moving mean by about its speed times the forgetting
    horizon (4e-5 x 20k events = 0.8 units at the floor, less while the
    schedule's own step is larger), which costs about 0.1 nats; a model frozen
    at 10k events is off by several nats.
    """
    rng = np.random.default_rng(5)
    mix = make_mixture(5)
    direction = rng.normal(size=mix[1].shape)
    direction *= 4.0 / np.linalg.norm(direction, axis=1, keepdims=True)
    n, batch = 100_000, 500
    model = OnlineGaussianMixture(8, random_state=5)
    frozen = None
    for start in range(0, n, batch):
        model.partial_fit(sample(mix, batch, rng, direction * start / n))
        if start == 10_000:
            frozen = OnlineGaussianMixture.from_model(model)
    Xt = sample(mix, 10_000, rng, direction)
    truth = fit_reference(sample(mix, 40_000, rng, direction)).score(Xt)
    tracked, stale = truth - model.score(Xt), truth - frozen.score(Xt)
    figures = f"gap to a batch fit on the current regime: online {tracked:.3f}, frozen {stale:.3f}"
    assert tracked < 0.15, figures
    assert stale > 1.0, figures
    assert model.n_drifts_ == 0, figures


def test_no_drift_alarm_on_a_stationary_stream_of_mixed_poll_sizes():
    rng = np.random.default_rng(11)
    mix = make_mixture(11)
    X = sample(mix, 60_000, rng)
    model = OnlineGaussianMixture(8, random_state=11)
    start = 0
    while start < X.shape[0]:
        size = int(rng.choice([1, 3, 50, 500, 1000]))
        model.partial_fit(X[start:start + size])
        start += size
    assert (model.n_drift_alarms_, model.n_drifts_) == (0, 0), (
        f"{model.n_drift_alarms_} alarms, {model.n_drifts_} refits in {model.n_seen_:.0f} "
        f"stationary events over {model.n_batches_} polls")
