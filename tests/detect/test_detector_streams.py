"""The detector on synthetic streams: outlier bias, dense clusters, drift.

Refits are applied synchronously (``wait_for_refit`` after each batch) so the
figures are reproducible; that refits run without stalling the stream is shown
in test_refit.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.model.gmm import GaussianMixture

pytestmark = pytest.mark.timeout(120)

BATCH = 200


def _run(det: AnomalyDetector, X: np.ndarray, batch: int = BATCH, on_batch=None) -> np.ndarray:
    """Stream X through det; return the flags (refits applied after each batch)."""
    flags = []
    for i in range(0, X.shape[0], batch):
        out = det.process(X[i:i + batch])
        det.wait_for_refit(timeout=30)
        flags.append(out.is_anomaly)
        if on_batch is not None:
            on_batch(i, out)
    det.close()
    return np.concatenate(flags)


def _three_modes(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = np.array([[0.0, 0, 0], [4, 4, 0], [0, 4, 4]])
    covs = [np.diag([1, .5, .3]), np.array([[1, .6, 0], [.6, 1, 0], [0, 0, .4]]),
            np.eye(3) * .5]
    lab = rng.choice(3, n, p=[.5, .3, .2])
    X = np.empty((n, 3))
    for c in range(3):
        rows = lab == c
        X[rows] = rng.multivariate_normal(centres[c], covs[c], rows.sum())
    return X


def test_refits_on_cleaned_windows_undo_the_outlier_bias():
    rng = np.random.default_rng(0)
    n = 20_000
    X = _three_modes(rng, n)
    outlier = rng.random(n) < 0.05
    X[outlier] = rng.uniform(-12, 16, (outlier.sum(), 3))
    held_out = _three_modes(rng, 5000)
    clean_fit = GaussianMixture(3, random_state=0).fit(held_out).score(held_out)
    # contamination = the outlier rate a user expects; with 0.02 at most 2 of
    # the 5 % can be cleaned away and every variant stays biased.
    common = dict(n_components=3, contamination=0.05, random_state=0)
    with_refits = AnomalyDetector(**common)
    # The "without": plain stepwise EM, learning from every event, never refitting.
    without = AnomalyDetector(refit_enabled=False, learn_from_anomalies=True, **common)
    f_with, f_without = _run(with_refits, X), _run(without, X)
    after = np.arange(n) >= with_refits.warmup
    ll_with, ll_without = with_refits.score(held_out), without.score(held_out)
    rec_with = f_with[outlier & after].mean()
    rec_without = f_without[outlier & after].mean()
    msg = (f"held-out log-likelihood: with refits {ll_with:.4f}, without {ll_without:.4f}, "
           f"clean batch fit {clean_fit:.4f}; outlier recall: with {rec_with:.3f}, "
           f"without {rec_without:.3f}; refits {with_refits.refit_counts}")
    assert with_refits.refit_counts["accepted"] >= 1, msg
    assert ll_with > ll_without + 0.1, msg
    assert ll_with > clean_fit - 0.05, msg
    assert rec_with > rec_without, msg
    assert rec_with > 0.9, msg
    fpr = f_with[~outlier & after].mean()
    assert fpr < 0.01, msg + f"; false-positive rate {fpr:.4f}"


ATTACK = np.array([-4.0, 7.0, -3.0])
SMALL_MODE = np.array([8.0, -3.0, 8.0])


def _masking_stream(seed: int, n: int = 20_000):
    """Three normal modes, a legitimate small mode (1 %) and a dense attack cluster (0.5 %).

    The attack is mixed in at random from the first event, warm-up included,
    so the initial batch fit sees it: without the guard, the mixture gives it a
    component of its own and rates it as very likely.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0, 0], [5, 5, 0], [0, 5, 5]])
    lab = rng.choice(5, n, p=[.45, .3, .235, .01, .005])
    X = centres[np.minimum(lab, 2)] + rng.normal(0, 1, (n, 3))
    small = lab == 3
    # A third of the main modes' spread: light, but nowhere near as tight as the attack.
    X[small] = SMALL_MODE + rng.normal(0, 1 / 3, (small.sum(), 3))
    attack = lab == 4
    X[attack] = ATTACK + rng.normal(0, 1e-3, (attack.sum(), 3))
    return X, lab


def _rates(det: AnomalyDetector, X: np.ndarray, lab: np.ndarray) -> dict[str, float]:
    flags = _run(det, X)
    after = np.arange(X.shape[0]) >= det.warmup
    return {"attack recall": flags[(lab == 4) & after].mean(),
            "small mode": flags[(lab == 3) & after].mean(),
            "normal": flags[(lab < 3) & after].mean()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_dense_attack_cluster_is_flagged_and_a_small_legitimate_mode_is_not(seed):
    X, lab = _masking_stream(seed)
    # A component needs 5 events per parameter (45 in 3 dimensions): a 1 % mode
    # puts 50 +- 7 events in a 5,000-event window, on the edge; 100 in 10,000.
    det = AnomalyDetector(window=10_000, random_state=0)
    flags = _run(det, X)
    seen = np.arange(X.shape[0]) >= det.warmup
    late = np.arange(X.shape[0]) >= 12_000
    rates = {"attack recall": flags[(lab == 4) & seen].mean(),
             "normal": flags[(lab < 3) & seen].mean(),
             "small mode before 12,000": flags[(lab == 3) & seen & ~late].mean(),
             "small mode from 12,000": flags[(lab == 3) & late].mean()}
    msg = ", ".join(f"{k} {v:.3f}" for k, v in rates.items()) + f"; refits {det.refit_counts}"
    assert rates["attack recall"] >= 0.9, msg
    assert rates["normal"] <= 0.02, msg  # near the contamination (0.02)
    # The small mode is far from the others, so a model without it flags all its
    # events, keeps them out of learning and would flag it for good; a refit
    # takes its held-out events back once they recur over the window as a group
    # neither as tight as the attack nor scattered (measured: learned by event
    # 10,000-15,000, then flagged at 0-2 %, like the rest).
    assert rates["small mode from 12,000"] <= 2 * det.contamination, msg


@pytest.mark.parametrize("learn", [False, True], ids=["default", "learn-from-anomalies"])
def test_without_the_guard_the_attack_cluster_masks_itself(learn):
    X, lab = _masking_stream(0)
    # A ratio no component reaches turns the guard off.
    plain = _rates(AnomalyDetector(n_components=5, tight_ratio=1e9, random_state=0,
                                   learn_from_anomalies=learn), X, lab)
    msg = ", ".join(f"{k} {v:.3f}" for k, v in plain.items())
    assert plain["attack recall"] < 0.1, msg


C_A = np.array([[0.0, 0, 0], [5, 5, 0], [0, 5, 5]])
C_B = np.array([[10.0, -6, 3], [14, -2, 3], [10, -2, 8]])


def _regime(rng: np.random.Generator, centres: np.ndarray, n: int, sd: float) -> np.ndarray:
    return centres[rng.integers(0, 3, n)] + rng.normal(0, sd, (n, 3))


def test_no_lock_out_after_an_abrupt_change_and_a_burst_is_still_flagged():
    rng = np.random.default_rng(0)
    n_a, n_b = 8000, 20_000
    X = np.vstack([_regime(rng, C_A, n_a, 1.0), _regime(rng, C_B, n_b, 0.7)])
    held_out = _regime(rng, C_B, 3000, 0.7)
    reference = GaussianMixture(3, random_state=0).fit(
        _regime(rng, C_B, 5000, 0.7)).score(held_out)
    # A burst of 50 anomalies (1 % of the 5000-event window), 15,000 events after the change.
    burst_at = n_a + 15_000
    burst = np.zeros(X.shape[0], dtype=bool)
    burst[burst_at:burst_at + 50] = True
    X[burst] = np.array([20.0, 5.0, -5.0]) + rng.normal(0, 0.3, (50, 3))
    det = AnomalyDetector(n_components=4, window=5000, random_state=0)
    lls: dict[int, float] = {}
    flags = _run(det, X, batch=250,
                 on_batch=lambda i, out: lls.__setitem__(i, det.score(held_out))
                 if i >= n_a else None)
    since = np.arange(X.shape[0]) - n_a
    blocks = [flags[(since >= s) & (since < s + 1000) & ~burst].mean() for s in
              range(0, n_b, 1000)]
    rate_ok = next(i for i in range(len(blocks)) if max(blocks[i:]) <= 2 * det.contamination)
    ll_ok = next(i - n_a for i in sorted(lls) if min(
        v for j, v in lls.items() if j >= i) > reference - 0.1)
    msg = (f"alert rate per 1000 events after the change {np.round(blocks, 3).tolist()}; "
           f"rate within 2x contamination from event {1000 * rate_ok}; log-likelihood "
           f"within 0.1 of a batch fit ({reference:.3f}) from event {ll_ok}; "
           f"refits {det.refit_counts}")
    # Measured: the rate is back after 1000 events, the log-likelihood after 3000 to 8000.
    assert 1000 * rate_ok <= 2000, msg
    assert ll_ok <= 10_000, msg
    recall = flags[burst].mean()
    assert recall >= 0.9, msg + f"; burst recall {recall:.2f}"


def test_bursts_larger_than_the_contamination_budget_are_not_learned():
    # Two runs of 1,000 near-identical attacks (a fifth of the window each), the
    # second a window after the first, as a port scan comes back: once the first
    # run holds the window's lowest 2 %, the percentile sits inside it and,
    # without a hold, the rest of the run is learned as normal, and so is the second.
    rng = np.random.default_rng(0)
    X = _regime(rng, C_A, 20_000, 1.0)
    burst = np.zeros(X.shape[0], dtype=bool)
    for start in (8000, 13_000):
        burst[start:start + 1000] = True
    X[burst] = np.array([-6.0, 9.0, -4.0]) + rng.normal(0, 1e-3, (burst.sum(), 3))
    det = AnomalyDetector(n_components=3, window=5000, random_state=0)
    scores = np.empty(X.shape[0])
    flags = _run(det, X, batch=250,
                 on_batch=lambda i, out: scores.__setitem__(slice(i, i + 250), out.score))
    normal = ~burst & (np.arange(X.shape[0]) >= det.warmup)
    # Ranked as a user's triage would: what share of the attacks score below the
    # lowest 2 % of normal events.
    low = np.percentile(scores[normal], 2)
    ranked = (scores[burst] < low).mean()
    msg = (f"attacks scored below the normal events' 2nd percentile: {ranked:.3f}; "
           f"flagged {flags[burst].mean():.3f}; false positives {flags[normal].mean():.4f}")
    assert ranked >= 0.95, msg
    assert flags[normal].mean() <= 0.03, msg


def test_a_new_mode_in_part_of_the_traffic_is_learned_not_held_out():
    # From event 8,000 a tenth of the traffic comes from a new mode, for good: too
    # little to fill a third of the window as an abrupt change does, and spread
    # over the window rather than bunched like a burst, so it must be learned.
    rng = np.random.default_rng(1)
    n = 30_000
    X = _regime(rng, C_A, n, 1.0)
    new = (np.arange(n) >= 8000) & (rng.random(n) < 0.1)
    X[new] = np.array([12.0, -5.0, 6.0]) + rng.normal(0, 1.0, (new.sum(), 3))
    det = AnomalyDetector(n_components=4, window=5000, random_state=0)
    flags = _run(det, X, batch=250)
    late = np.arange(n) >= 20_000
    msg = (f"new mode flagged {flags[new & late].mean():.3f} after event 20,000; "
           f"others {flags[~new & late].mean():.3f}; refits {det.refit_counts}")
    # A light mode scores lower than the heavy ones by density alone: learned, it
    # is flagged at about 6 %; held out for good, at about 22 % (measured).
    assert flags[new & late].mean() <= 0.1, msg
    assert flags[~new & late].mean() <= 2 * det.contamination, msg


def test_a_small_deviation_from_an_exact_relation_ranks_below_far_attacks():
    # One feature is the sum of two others (a total and its parts), to rounding;
    # 2 % of ordinary events are off by a little more. With a variance floor near
    # zero the mixture learns the relation as a direction of width 1e-3, and those
    # ordinary events score hundreds below zero, under attacks four to six
    # standard deviations out (average precision 0.2 measured with a floor of 1e-6).
    rng = np.random.default_rng(0)
    n = 20_000
    X = rng.normal(0, 1, (n, 3))
    X[:, 2] = X[:, 0] + X[:, 1] + rng.normal(0, 1e-3, n)
    off = rng.random(n) < 0.02
    X[off, 2] += rng.normal(0, 0.1, off.sum())
    attack = (rng.random(n) < 0.01) & ~off
    X[attack, :2] = rng.choice([-1, 1], (attack.sum(), 2)) * rng.uniform(4, 6, (attack.sum(), 2))
    X[attack, 2] = X[attack, 0] + X[attack, 1]
    det = AnomalyDetector(random_state=0)
    scores = np.empty(n)
    _run(det, X, batch=500,
         on_batch=lambda i, out: scores.__setitem__(slice(i, i + 500), out.score))
    after = np.arange(n) >= det.warmup
    ap = average_precision_score(attack[after], -scores[after])
    msg = (f"average precision {ap:.3f}; median score: off the relation "
           f"{np.median(scores[off & after]):.1f}, attacks {np.median(scores[attack & after]):.1f}")
    assert ap >= 0.9, msg


def test_traffic_the_warm_up_never_saw_is_learned_not_held_out():
    # The warm-up sees two modes; from then on 60 % of the traffic comes from a
    # third (a stream that began at midnight: the warm-up has no evening in it).
    # Most fresh events score below the warm-up's threshold, so at once: a change
    # of the stream, not a burst. Held out instead, the new mode stays in the
    # model's tail and takes the alert budget although it is the heaviest mode.
    rng = np.random.default_rng(0)
    n, warmup = 12_000, 1000
    which = np.where(rng.random(n) < 0.6, 2, rng.integers(0, 2, n))
    which[:warmup] = rng.integers(0, 2, warmup)
    X = C_A[which] + rng.normal(0, 1.0, (n, 3))
    burst = np.zeros(n, dtype=bool)
    burst[6000:6050] = True
    X[burst] = np.array([20.0, 5.0, -5.0]) + rng.normal(0, 0.3, (50, 3))
    det = AnomalyDetector(n_components=3, window=5000, warmup=warmup, random_state=0)
    flags = _run(det, X, batch=250)
    late = (np.arange(n) >= 4000) & ~burst
    new, old = flags[late & (which == 2)].mean(), flags[late & (which != 2)].mean()
    msg = (f"flagged after event 4,000: new mode {new:.3f}, the warm-up's modes {old:.3f}; "
           f"burst recall {flags[burst].mean():.2f}")
    # Learned, the mode with 60 % of the traffic is the densest and is flagged
    # least (measured 0.006 vs 0.024); held out, 0.025 vs 0.000.
    assert new < old, msg
    assert flags[burst].mean() >= 0.9, msg
