"""Refits on a worker process: same results as on a thread, the stream never
waits for them, and a worker that dies or cannot start does not stop refits."""

from __future__ import annotations

import ast
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamgmm.detect import refit as refit_module
from streamgmm.detect import refit_worker
from streamgmm.detect.detector import AnomalyDetector

pytestmark = pytest.mark.timeout(120)


def _stream(n: int, seed: int = 0, d: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [5.0] * d])
    X = centres[rng.integers(0, 2, n)] + rng.normal(size=(n, d))
    X[::50] += 8.0  # some outliers for the cleaning to remove
    return X


def _detector(**kw) -> AnomalyDetector:
    params = dict(warmup=300, window=1000, refit_every=500, random_state=0)
    params.update(kw)
    return AnomalyDetector(**params)


def _run(det: AnomalyDetector, X: np.ndarray, batch: int = 250) -> list[np.ndarray]:
    scores = []
    for i in range(0, X.shape[0], batch):
        scores.append(det.process(X[i:i + batch]).score)
        det.wait_for_refit(timeout=60)
    return scores


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited: reaped, or a zombie waiting to be."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped (even while reading)
        return True


def _worker_pid(det: AnomalyDetector) -> int:
    det._refitter.start()
    return det._refitter.worker_pid


def test_a_process_refits_as_a_thread_does():
    X = _stream(4000)
    thread, process = _detector(), _detector(refit_worker="process")
    try:
        a, b = _run(thread, X), _run(process, X)
    finally:
        thread.close()
        process.close()
    assert process.refit_counts == thread.refit_counts
    assert sum(process.refit_counts.values()) >= 5 and process.refit_counts["failed"] == 0
    np.testing.assert_array_equal(np.concatenate(b), np.concatenate(a))
    np.testing.assert_array_equal(process.model.means_, thread.model.means_)
    assert process._refitter.worker == "process"


def test_process_returns_while_a_process_refit_runs():
    # A refit over a big window takes long enough to watch batches go by.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40_000, 6))
    det = AnomalyDetector(n_components=6, warmup=2000, window=30_000, refit_every=10_000,
                          refit_n_init=3, random_state=0, refit_worker="process")
    try:
        det._refitter.start()
        det.process(X[:2000])  # the warm-up
        det.process(X[2000:30_000])  # a refit is due at the end of this batch
        assert det._refitter.busy
        i, during = 30_000, 0
        while det._refitter.busy and i < X.shape[0]:
            out = det.process(X[i:i + 100])
            assert np.isfinite(out.score).all()
            i += 100
            during += 1
        assert during >= 3, "no batch went through while the refit ran"
        det.wait_for_refit(timeout=60)
        assert sum(det.refit_counts.values()) >= 1
    finally:
        det.close()


def test_a_worker_killed_while_idle_is_replaced(caplog):
    det = _detector(refit_worker="process")
    X = _stream(3000, seed=2)
    try:
        os.kill(_worker_pid(det), signal.SIGKILL)
        time.sleep(0.5)
        with caplog.at_level(logging.WARNING, logger="streamgmm.detect.refit"):
            _run(det, X)
        counts = det.refit_counts
        assert counts["failed"] == 0 and counts["accepted"] + counts["rejected"] >= 3, counts
        assert det._refitter.worker == "process"
        assert any("refit worker died" in r.getMessage() for r in caplog.records)
    finally:
        det.close()


def test_a_worker_killed_mid_refit_fails_that_refit_only(caplog):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60_000, 6))
    det = AnomalyDetector(n_components=6, warmup=2000, window=30_000, refit_every=10_000,
                          refit_n_init=3, random_state=0, refit_worker="process")
    try:
        pid = _worker_pid(det)
        det.process(X[:2000])
        det.process(X[2000:30_000])
        assert det._refitter.busy
        with caplog.at_level(logging.WARNING, logger="streamgmm.detect.refit"):
            os.kill(pid, signal.SIGKILL)
            det.wait_for_refit(timeout=60)
        assert det.refit_counts["failed"] == 1
        assert "died" in caplog.text
        for i in range(30_000, 60_000, 5000):  # refits go on, on a new worker
            det.process(X[i:i + 5000])
            det.wait_for_refit(timeout=60)
        assert det.refit_counts["accepted"] + det.refit_counts["rejected"] >= 2
        assert det._refitter.worker == "process"
    finally:
        det.close()


def test_workers_that_keep_dying_hand_refits_to_a_thread(caplog):
    det = _detector(refit_worker="process")
    try:
        with caplog.at_level(logging.WARNING, logger="streamgmm.detect.refit"):
            for _ in range(refit_module.Refitter.MAX_BROKEN):
                os.kill(_worker_pid(det), signal.SIGKILL)
                time.sleep(0.3)
            _run(det, _stream(2000, seed=3))
        assert det._refitter.worker == "thread"
        counts = det.refit_counts
        assert counts["failed"] == 0 and counts["accepted"] + counts["rejected"] >= 2, counts
        assert f"died {refit_module.Refitter.MAX_BROKEN} times in a row" in caplog.text
    finally:
        det.close()


def test_no_process_can_start_so_refits_run_on_a_thread(monkeypatch, caplog):
    class NoProcesses:
        def __init__(self, *args, **kwargs):
            raise OSError(11, "Resource temporarily unavailable: process limit")

    monkeypatch.setattr(refit_module, "WorkerProcess", NoProcesses)
    det = _detector(refit_worker="process")
    try:
        with caplog.at_level(logging.ERROR, logger="streamgmm.detect.refit"):
            _run(det, _stream(2000, seed=4))
        assert det.refit_counts["failed"] == 0
        assert det.refit_counts["accepted"] + det.refit_counts["rejected"] >= 2
        assert det._refitter.worker == "thread"
        assert any("could not start" in r.getMessage() and "process limit" in r.getMessage()
                   for r in caplog.records)
    finally:
        det.close()


def test_an_unknown_worker_is_refused():
    with pytest.raises(ValueError, match="refit_worker: .*'fork'"):
        AnomalyDetector(refit_worker="fork")


def test_close_stops_a_worker_busy_with_a_refit():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40_000, 8))
    # About 7 s of refit (0.35 s per fresh start), far longer than close may take.
    det = AnomalyDetector(n_components=8, warmup=2000, window=38_000, refit_every=10_000,
                          refit_n_init=20, random_state=0, refit_worker="process")
    pid = _worker_pid(det)
    det.process(X[:2000])
    det.process(X[2000:])
    assert det._refitter.busy
    start = time.monotonic()
    det.close()
    while time.monotonic() - start < 1.5:
        if _gone(pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the worker process outlived close() by 1.5 s")


SCRIPT = """
import sys, time
import numpy as np
from streamgmm.detect.detector import AnomalyDetector

# No ``if __name__ == "__main__":`` guard: the worker must not import this file.
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 3))
det = AnomalyDetector(warmup=300, window=1000, refit_every=500, random_state=0)
for i in range(0, 3000, 250):
    det.process(X[i:i + 250])
    det.wait_for_refit(timeout=60)
print("worker", det._refitter.worker, det._refitter.worker_pid, det.refit_counts, flush=True)
if sys.argv[1:] == ["linger"]:
    time.sleep(60)
det.close()
"""


def _script(tmp_path) -> list[str]:
    path = tmp_path / "plain_script.py"
    path.write_text(SCRIPT)
    return [sys.executable, str(path)]


def test_a_script_without_a_main_guard_refits_on_a_worker_process(tmp_path):
    done = subprocess.run(_script(tmp_path), capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bootstrapping" not in done.stderr and "could not start" not in done.stderr, \
        done.stderr
    words = done.stdout.split()
    assert words[:2] == ["worker", "process"], done.stdout
    counts = ast.literal_eval(done.stdout.split(" ", 3)[3])  # the dict the script printed
    assert counts["failed"] == 0 and counts["accepted"] + counts["rejected"] >= 3, counts


def test_the_worker_exits_when_its_detector_is_killed(tmp_path):
    proc = subprocess.Popen(_script(tmp_path) + ["linger"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("worker process"), line + proc.stderr.read()
        worker = int(line.split()[2])
        assert not _gone(worker)
        proc.kill()  # no close(), no finalizer: only the closed socket tells the worker
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(worker):
            assert time.monotonic() < deadline, "the worker outlived its detector by 10 s"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)


def test_jobs_and_results_cross_as_plain_arrays_exactly():
    from multiprocessing import Pipe

    from streamgmm.detect.groups import GroupRule
    from streamgmm.detect.refit import RefitSettings, run_refit
    from streamgmm.model.em import MixtureParams
    from streamgmm.model.gmm import GaussianMixture

    X = _stream(1200, seed=7)
    fitted = GaussianMixture(2, random_state=0).fit(X[:600])
    current = MixtureParams("full", fitted.weights_, fitted.means_, fitted.covariances_,
                            fitted.precisions_cholesky_)
    settings = RefitSettings(1, np.full(3, 1e-2), 0.2, (1, 3), 0.0)
    keep = np.ones(X.shape[0], dtype=bool)
    keep[::40] = False
    job = (settings, X, fitted.score_samples(X), current, 1199, 3, keep,
           GroupRule(-1.0, 5.0, np.full(3, 1e-2)))
    a, b = Pipe()
    worker_side = refit_worker.job_from_message(*_cross(a, b, *refit_worker.job_message(job)))
    for sent, got in zip(job, worker_side, strict=True):
        if isinstance(sent, np.ndarray):
            np.testing.assert_array_equal(got, sent)
    result = run_refit(*job)
    back = refit_worker.result_from_message(*_cross(b, a, *refit_worker.result_message(result)))
    assert (back.outcome, back.seconds, back.candidate_score) == \
        (result.outcome, result.seconds, result.candidate_score)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(back.model, name), getattr(result.model, name))
    np.testing.assert_array_equal(back.model.score_samples(X), result.model.score_samples(X))
    np.testing.assert_array_equal(back.taken_back, result.taken_back)
    # Nothing but numbers crosses, either way.
    with pytest.raises(TypeError, match="only numeric arrays"):
        refit_worker.send_message(a, {}, X=np.array([object()]))
    a.send_bytes(b'{"meta": {}, "arrays": [["X", "|O", [1]]]}')
    a.send_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="non-numeric"):
        refit_worker.recv_message(b)


def _cross(sender, receiver, meta, arrays):
    refit_worker.send_message(sender, meta, **arrays)
    return refit_worker.recv_message(receiver)


def test_start_refit_worker_starts_the_process_before_any_event():
    det = _detector()
    try:
        assert det.refit_worker_pid is None  # started lazily otherwise
        assert det.start_refit_worker() == "process"
        pid = det.refit_worker_pid
        assert pid is not None and not _gone(pid)
        det.start_refit_worker()  # a second call keeps the same worker
        assert det.refit_worker_pid == pid
    finally:
        det.close()
    deadline = time.monotonic() + 5
    while not _gone(pid):
        assert time.monotonic() < deadline, "close() left the idle worker running"
        time.sleep(0.05)
    off = _detector(refit_enabled=False)
    assert off.start_refit_worker() is None and off.refit_worker_pid is None
    off.close()


def test_a_worker_that_cannot_run_is_found_at_start_and_refits_move_to_a_thread(
        monkeypatch, caplog):
    # An interpreter that exits at once: each start sees its worker die.
    monkeypatch.setattr(refit_worker.sys, "executable", "/bin/false")
    det = _detector()
    try:
        with caplog.at_level(logging.WARNING, logger="streamgmm.detect.refit"):
            kinds = [det.start_refit_worker(timeout=20)
                     for _ in range(refit_module.Refitter.MAX_BROKEN)]
        # One start may see several deaths (a worker that is gone before its
        # job is sent is replaced at once), so the thread may come early.
        assert kinds[-1] == "thread" and kinds == sorted(kinds), kinds
        assert "exit code 1" in caplog.text
        assert f"died {refit_module.Refitter.MAX_BROKEN} times in a row" in caplog.text
        _run(det, _stream(2000, seed=8))
        counts = det.refit_counts
        assert counts["failed"] == 0 and counts["accepted"] + counts["rejected"] >= 2, counts
    finally:
        det.close()


def test_the_worker_finds_streamgmm_without_shadowing_the_standard_library(monkeypatch):
    root = str(Path(refit_worker.__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setattr(refit_worker.site, "getsitepackages", lambda: ["/usr/lib/python3"])
    # Run from a source checkout: the checkout goes first.
    assert refit_worker._worker_env()["PYTHONPATH"] == os.pathsep.join([root, "/somewhere"])
    # Installed in a site directory: the interpreter finds it there itself.
    monkeypatch.setattr(refit_worker.site, "getsitepackages", lambda: [root])
    assert refit_worker._worker_env()["PYTHONPATH"] == "/somewhere"


def test_a_worker_that_stops_reading_does_not_hold_up_the_stream():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(40_000, 6))
    # A 30,000-event window is 1.4 MB, more than a socket buffer holds.
    det = AnomalyDetector(n_components=2, warmup=2000, window=30_000, refit_every=10_000,
                          random_state=0)
    pid = _worker_pid(det)
    try:
        os.kill(pid, signal.SIGSTOP)
        det.process(X[:2000])
        start = time.monotonic()
        det.process(X[2000:30_000])  # hands a refit to the stopped worker
        for i in range(30_000, 40_000, 500):
            det.process(X[i:i + 500])
        assert time.monotonic() - start < 10, "the stream waited for the stopped worker"
        assert det._refitter.busy
        os.kill(pid, signal.SIGCONT)
        det.wait_for_refit(timeout=60)
        counts = det.refit_counts
        assert counts["accepted"] + counts["rejected"] == 1 and counts["failed"] == 0, counts
    finally:
        os.kill(pid, signal.SIGCONT)
        det.close()
