"""Background refits: the stream never waits, outcomes are counted, swaps are safe.

These detectors refit on a thread, where the tests can reach into the refit
(monkeypatch it to block or fail); test_refit_process.py shows the same of the
default worker process.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamgmm.detect import refit as refit_module
from streamgmm.detect.detector import AnomalyDetector
from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.online import OnlineGaussianMixture

pytestmark = pytest.mark.timeout(60)


def _stream(n: int, seed: int = 0, d: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [5.0] * d])
    return centres[rng.integers(0, 2, n)] + rng.normal(size=(n, d))


def _detector(**kw) -> AnomalyDetector:
    params = dict(n_components=2, warmup=300, window=1000, refit_every=1000, random_state=0,
                  refit_worker="thread")
    params.update(kw)
    return AnomalyDetector(**params)


@pytest.fixture
def blocked_refit(monkeypatch):
    """Make the candidate fit wait on an Event, so a refit stays in flight."""
    started, release = threading.Event(), threading.Event()
    real = refit_module.fit_candidate

    def slow(*args, **kwargs):
        started.set()
        assert release.wait(30), "test never released the refit"
        return real(*args, **kwargs)

    monkeypatch.setattr(refit_module, "fit_candidate", slow)
    yield started, release
    release.set()


def test_process_returns_while_a_refit_is_in_flight(blocked_refit):
    started, release = blocked_refit
    det = _detector()
    X = _stream(6000)
    det.process(X[:300])  # the warm-up
    det.process(X[300:1400])  # enough events for a refit to be due
    assert started.wait(10), "no refit started"
    assert det._refitter.busy
    done = 0
    for i in range(1400, 5000, 100):
        out = det.process(X[i:i + 100])
        assert np.isfinite(out.score).all()
        done += 1
    # All 36 batches went through while the refit thread was still blocked.
    assert det._refitter.busy and done == 36
    assert det.refit_stats["accepted"] + det.refit_stats["rejected"] == 0
    release.set()
    det.wait_for_refit(timeout=20)
    counts = det.refit_counts
    assert counts["accepted"] + counts["rejected"] == 1 and counts["failed"] == 0
    assert det.last_refit_seconds > 0
    det.close()


def test_failed_refits_are_counted_and_the_stream_goes_on(monkeypatch):
    def boom(*args, **kwargs):
        raise np.linalg.LinAlgError("injected failure")

    monkeypatch.setattr(refit_module, "fit_candidate", boom)
    det = _detector()
    X = _stream(4000, seed=1)
    version = None
    for i in range(0, 4000, 250):
        det.process(X[i:i + 250])
        det.wait_for_refit(timeout=10)
        version = det.model_version if det.model is not None else version
    assert det.refit_counts["failed"] >= 2
    assert det.refit_counts["accepted"] == det.refit_counts["rejected"] == 0
    assert det.model_version == 1 and version == 1
    det.close()


def test_a_worse_candidate_is_rejected(monkeypatch):
    def bad(X_train, current, n_components, *args, **kwargs):
        # A candidate fitted on data far away from the stream.
        return GaussianMixture(n_components, random_state=0).fit(X_train + 10.0)

    monkeypatch.setattr(refit_module, "fit_candidate", bad)
    det = _detector()
    X = _stream(3000, seed=2)
    for i in range(0, 3000, 250):
        det.process(X[i:i + 250])
        det.wait_for_refit(timeout=10)
    assert det.refit_counts["rejected"] >= 1
    assert det.refit_counts["accepted"] == det.refit_counts["failed"] == 0
    assert det.model_version == 1
    det.close()


def test_an_accepted_swap_rescores_the_window(monkeypatch):
    # The stream moves after the warm-up; learning is off so only a refit can follow it.
    det = _detector(online_params={"forget_horizon": 1e9, "drift_threshold": None})
    X = _stream(3000, seed=3)
    X[1000:] *= 1.5
    det.process(X[:1000])
    # Freeze every online model, the refitted ones too (a refit that finishes
    # before the last batch would otherwise learn it): the windows still record
    # the stream, only a refit moves.
    monkeypatch.setattr(OnlineGaussianMixture, "learn", lambda *args, **kwargs: 0.0)
    for i in range(1000, 2000, 250):
        det.process(X[i:i + 250])
    det.wait_for_refit(timeout=20)
    assert det.refit_counts["accepted"] >= 1, det.refit_counts
    assert det.model_version >= 2
    window_X, _, _ = det._window.ordered()
    expected = det._scores(window_X)[0]
    np.testing.assert_allclose(det.threshold_.values(), expected, rtol=1e-12)
    assert det.threshold_value == pytest.approx(np.percentile(expected, 2.0))
    out = det.process(X[2000:2100])
    assert out.model_version == det.model_version
    det.close()


def test_two_threads_processing_concurrently_never_corrupt_state(blocked_refit):
    started, release = blocked_refit
    det = _detector(window=500, refit_every=700)
    X = _stream(12_000, seed=4)
    det.process(X[:400])
    errors: list[BaseException] = []
    sizes = {0: 37, 1: 53}

    def run(t: int) -> None:
        try:
            part = X[400 + t * 5800: 400 + (t + 1) * 5800]
            for i in range(0, part.shape[0], sizes[t]):
                out = det.process(part[i:i + sizes[t]])
                assert len(out) == part[i:i + sizes[t]].shape[0]
                if i > 2000:
                    release.set()  # let refits finish and swap mid-stream
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    det.wait_for_refit(timeout=20)
    assert det.n_events_ == 12_000
    _, seq, _ = det._window.ordered()
    # The window holds exactly the last 500 event numbers, each once, in order.
    assert seq.tolist() == list(range(11_500, 12_000))
    assert len(det.threshold_) == 500 and np.isfinite(det.threshold_.values()).all()
    assert sum(det.refit_counts.values()) >= 2
    m = det.model
    assert np.isfinite(m.means_).all() and m.weights_.sum() == pytest.approx(1.0)
    det.close()


def test_a_refit_abandoned_on_a_thread_does_not_hold_the_interpreter_at_exit():
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent("""
        import time
        import numpy as np
        import streamgmm.detect.refit as refit
        refit.run_refit = lambda *args: time.sleep(30)  # a refit on a very big window
        from streamgmm.detect.detector import AnomalyDetector
        det = AnomalyDetector(n_components=1, warmup=200, window=400, refit_every=100,
                              refit_worker="thread", random_state=0)
        rng = np.random.default_rng(0)
        for _ in range(5):
            det.process(rng.normal(size=(100, 2)))
        assert det._refitter.busy
        det.close()
        print("closed", flush=True)
    """)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"
    assert time.monotonic() - start < 15  # not the 30 s the refit would take
