"""Does a background refit slow the stream? Per-batch time of ``process`` with and without.

Streams the same events through two detectors: one whose refits are due so
often that one is nearly always in flight (a big window, so each refit takes
a while), and one with refits off. Prints the median and 95th-percentile time
per batch of each, counting only the batches during which a refit was running,
and their ratio (goal: under 2x), for each refit worker: a thread and a
process (the default).

BLAS threads come from the environment, as in the daemon, whose command sets
one per process (a worker process inherits it; a refit whose BLAS threads
spread over both cores slows the stream's batches to a scheduler quantum,
about 5 ms, whatever the worker):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_refit_stall.py \
        [--window 20000] [--batch 500] [--d 5] [--batches 2000] [--worker thread,process]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info

from streamgmm.detect.detector import AnomalyDetector


def make_stream(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (4, d))
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))


def timed_run(det: AnomalyDetector, X: np.ndarray, batch: int, warm: int):
    """Per-batch seconds after the first ``warm`` events, and whether a refit was in flight."""
    det.process(X[:warm])
    times, busy = [], []
    for i in range(warm, X.shape[0], batch):
        in_flight = det._refitter.busy
        start = time.perf_counter()
        det.process(X[i:i + batch])
        times.append(time.perf_counter() - start)
        busy.append(in_flight)
    det.close()
    return np.array(times), np.array(busy)


def compare(args: argparse.Namespace, worker: str) -> None:
    warm = args.window
    X = make_stream(warm + args.batch * args.batches, args.d)
    common = dict(n_components=4, window=args.window, warmup=args.window // 4, random_state=0)
    with_refits = AnomalyDetector(refit_every=args.window // 10, refit_worker=worker, **common)
    with_refits._refitter.start()  # a worker process starts before the timing
    without = AnomalyDetector(refit_enabled=False, **common)
    t_with, busy = timed_run(with_refits, X, args.batch, warm)
    t_without, _ = timed_run(without, X, args.batch, warm)
    during = t_with[busy]
    if during.size == 0:
        raise SystemExit("no batch ran during a refit: raise --batches")
    print(f"refit worker {worker}; window {args.window}, batch {args.batch}, d {args.d}: "
          f"{during.size} of {t_with.size} batches ran during a refit; refits "
          f"{with_refits.refit_counts}, last took {with_refits.last_refit_seconds:.2f} s")
    print(f"{'':>22}{'median ms':>11}{'p95 ms':>9}")
    for name, t in (("during refits", during), ("refits off", t_without)):
        print(f"{name:>22}{1e3 * np.median(t):>11.2f}{1e3 * np.percentile(t, 95):>9.2f}")
    ratio = np.median(during) / np.median(t_without)
    p95 = np.percentile(during, 95) / np.percentile(t_without, 95)
    print(f"ratio during/without: median {ratio:.2f}x, p95 {p95:.2f}x (goal: under 2x) "
          f"{'OK' if ratio < 2 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--worker", default="thread,process",
                        help="refit workers to measure, comma-separated (thread, process)")
    args = parser.parse_args()
    blas = max((p.get("num_threads", 1) for p in threadpool_info()), default=1)
    print(f"BLAS threads per process: {blas} (set OPENBLAS_NUM_THREADS=1 as the daemon does)")
    for worker in args.worker.split(","):
        compare(args, worker)


if __name__ == "__main__":
    main()
