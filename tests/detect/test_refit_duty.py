"""Background refits keep to their share of the wall clock (``refit_max_duty``)."""

from __future__ import annotations

import numpy as np

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.service.detector_config import detector_params


def stream(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


def refits(det: AnomalyDetector) -> int:
    return sum(det.refit_counts.values())


def test_a_long_refit_holds_the_next_one_back_and_no_bound_lets_it_go():
    X = stream(3000)
    det = AnomalyDetector(n_components=2, window=400, warmup=100, refit_every=100,
                          refit_max_duty=0.5, random_state=0)
    for i in range(0, 300, 50):
        det.process(X[i:i + 50])
        det.wait_for_refit()
    det.process(X[300:320])
    det.wait_for_refit()
    done = refits(det)
    assert done >= 1
    # As if the last refit had taken 30 s: the next may start 60 s after it began.
    det.last_refit_seconds = 30.0
    for i in range(320, 2000, 50):
        det.process(X[i:i + 50])
        det.wait_for_refit()
    det.process(X[2000:2010])
    assert refits(det) == done, "a refit started inside the rest period"
    det.refit_max_duty = None  # no bound: due refits start again
    for i in range(2010, 3000, 50):
        det.process(X[i:i + 50])
        det.wait_for_refit()
    assert refits(det) > done
    det.close()


def test_the_daemon_bounds_refits_to_a_quarter_of_the_clock():
    from streamgmm.service.config import load_config

    cfg = load_config(None, env={})
    det = AnomalyDetector(**detector_params(cfg.detector, ["a", "b"]))
    assert det.refit_max_duty == 0.25
    det.close()
