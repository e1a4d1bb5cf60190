"""Components must rest on enough events: a group of anomalies too small to
estimate a component for is scored as anomalies, not given a component of its own.

BIC's penalty grows with log n, so on a few thousand events it lets a mixture
spend a full-covariance component on a group of a hundred events in eight
dimensions (44 parameters); events of that group then score as typical.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from streamgmm.detect import groups as groups_module
from streamgmm.detect.detector import AnomalyDetector
from streamgmm.detect.groups import component_parameters, prune, select_by_bic, supported
from streamgmm.model.gmm import GaussianMixture

pytestmark = pytest.mark.timeout(120)


def test_component_parameters_count_the_mean_and_the_covariance():
    assert component_parameters("full", 3) == 3 + 6
    assert component_parameters("diag", 3) == 6
    assert component_parameters("spherical", 3) == 4
    assert component_parameters("tied", 3) == 3


def test_bic_alone_prefers_a_component_for_three_outliers_and_selection_does_not():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(0, 0.01, (3, 2)) + 20])
    one, two = (GaussianMixture(k, random_state=0).fit(X) for k in (1, 2))
    assert two.bic(X) < one.bic(X)  # what BIC alone would choose
    assert not supported(two, X.shape[0]) and supported(one, X.shape[0])
    assert select_by_bic([one, two], X) is one


def test_pruning_drops_the_unsupported_components_and_refits_the_rest():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (300, 2)) + 8,
                   rng.normal(0, 0.01, (3, 2)) + 20])
    # A fixed random_state: means_init alone leaves the starting weights and
    # covariances to k-means (one seed in 40 starts a component on one event).
    three = GaussianMixture(3, means_init=[[0, 0], [8, 8], [20, 20]], random_state=0).fit(X)
    assert not supported(three, X.shape[0])  # a component for the 3 far events
    two = prune(three, X, X.shape[0], 1e-6)
    assert two.weights_.shape[0] == 2 and supported(two, X.shape[0])
    assert np.allclose(np.sort(two.means_[:, 0]), [0, 8], atol=0.3)
    # Selection prunes each candidate first, so the pruned fit competes.
    chosen = select_by_bic([GaussianMixture(1, random_state=0).fit(X), three], X,
                           reg_covar=1e-6)
    assert chosen.weights_.shape[0] == 2


def test_a_real_second_mode_is_still_chosen():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (300, 2)) + 8])
    one, two = (GaussianMixture(k, random_state=0).fit(X) for k in (1, 2))
    assert select_by_bic([one, two], X) is two


def test_with_no_supported_candidate_the_fewest_components_win():
    rng = np.random.default_rng(2)
    X = rng.normal(0, 1, (30, 6))  # 27 parameters for one full component: too few events
    fits = [GaussianMixture(k, random_state=0).fit(X) for k in (1, 2)]
    assert select_by_bic(fits, X).weights_.shape[0] == 1


def _group_stream(seed: int, n: int = 6000, d: int = 8, share: float = 0.02):
    """One correlated normal mode, a second one of 30 %, and a loose group of
    anomalies (2 % of events, 120 in all, about 100 in a window) mixed in at
    random, centred 8 Mahalanobis units from the first mode in a random direction."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + np.eye(d)
    X = rng.multivariate_normal(np.zeros(d), cov, n)
    second = rng.random(n) < 0.3
    X[second] += 10.0
    group = ~second & (rng.random(n) < share / 0.7)
    u = rng.normal(size=d)
    centre = np.linalg.cholesky(cov) @ (8.0 * u / np.linalg.norm(u))
    X[group] = centre + rng.normal(0, 0.3, (group.sum(), d))
    return X, group, second


def _scores(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    det = AnomalyDetector(random_state=0)
    scores, flags = [], []
    for i in range(0, X.shape[0], 250):
        out = det.process(X[i:i + 250])
        det.wait_for_refit(timeout=30)
        scores.append(out.score)
        flags.append(out.is_anomaly)
    det.close()
    return np.concatenate(scores), np.concatenate(flags), det.model.weights_.shape[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_small_group_of_anomalies_is_not_learned_as_a_mode(seed, monkeypatch):
    X, group, second = _group_stream(seed)
    score, flags, k = _scores(X)
    scored = np.isfinite(score)
    ap = average_precision_score(group[scored], -score[scored])
    normal = scored & ~group
    msg = (f"AP {ap:.3f}, group flagged {flags[group & scored].mean():.3f}, "
           f"normal flagged {flags[normal].mean():.4f}, second mode flagged "
           f"{flags[second & scored].mean():.4f}, k {k}")
    # Measured: AP 1.000 / 0.930, group flagged 0.825 / 0.922, normal 0.002-0.004,
    # second mode 0.003-0.006, k 2 (seeds 0, 1); without the rule AP 0.011, k 3.
    assert ap >= 0.9, msg
    assert flags[group & scored].mean() >= 0.6, msg
    assert flags[normal].mean() <= 0.02, msg
    assert flags[second & scored].mean() <= 0.02, msg  # the real mode is modelled
    assert k >= 2, msg

    # Without the rule the group gets a component of its own and hides in it.
    monkeypatch.setattr(groups_module, "EVENTS_PER_PARAMETER", 0)
    score, _, _ = _scores(X)
    plain = average_precision_score(group[scored], -score[scored])
    assert plain < 0.5, f"without the rule AP {plain:.3f}; {msg}"
