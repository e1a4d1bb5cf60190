"""Online learning speed and memory: streamgmm's per-batch path vs scikit-learn's scoring.

Throughput (default): for d=10, k=8, batches of 1,000 events and every
covariance type, events/s of

- ``score_partial_fit``: score a batch then learn from it with one E-step
  (the detector's path, and the one a streaming caller should use);
- ``partial_fit + score_samples``: the plain library path (two E-steps);
- scikit-learn's ``score_samples`` alone on the same batches,

and the ratios (scikit-learn time / streamgmm time: above 1 means learning and
scoring together cost less than scikit-learn's scoring alone). BLAS runs on
--threads threads (default 1) for both, in the same process; each figure is the
best of --repeats alternating passes.

Memory (``--memory``): streams --events synthetic events (default 10M) in
batches through ``partial_fit`` and prints the process's resident set size
after 100k events and at the end.

    .venv/bin/python bench/bench_online.py [--events 200000] [--threads 1]
    .venv/bin/python bench/bench_online.py --memory [--events 10000000]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture as SkGM
from threadpoolctl import threadpool_info, threadpool_limits

from streamgmm import OnlineGaussianMixture

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    labels = rng.integers(0, k, n)
    A = rng.normal(0, 1, (k, d, d)) / np.sqrt(d)
    return centres[labels] + np.einsum("nij,nj->ni", A[labels], rng.normal(size=(n, d)))


def best_times(fns, batches, repeats: int) -> list[float]:
    """Best pass time of each function; passes alternate so that load from other
    processes on a shared machine falls on all of them alike."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for Xb in batches:
                fn(Xb)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def throughput(X: np.ndarray, k: int, batch: int, repeats: int) -> None:
    n = X.shape[0] - 10_000
    batches = [X[10_000 + s:10_000 + s + batch] for s in range(0, n, batch)]
    print(f"{'type':10s} {'score_partial_fit':>17s} {'pf+score':>12s} {'sklearn score':>14s}"
          f" {'ratio s+pf':>10s} {'ratio pf+s':>11s}   (events/s)")
    for cov in COVARIANCE_TYPES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = SkGM(k, covariance_type=cov, max_iter=20, random_state=0).fit(X[:10_000])
        model = OnlineGaussianMixture.from_model(sk, n_events=10_000, drift_threshold=None)

        def detector_path(Xb, m=model):
            m.score_partial_fit(Xb)

        def plain_path(Xb, m=model):
            m.partial_fit(Xb)
            m.score_samples(Xb)

        t_el, t_pf, t_sk = best_times([detector_path, plain_path, sk.score_samples],
                                      batches, repeats)
        print(f"{cov:10s} {n / t_el:17,.0f} {n / t_pf:12,.0f} {n / t_sk:14,.0f}"
              f" {t_sk / t_el:10.2f} {t_sk / t_pf:11.2f}")


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory(events: int, d: int, k: int, batch: int) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (k, d))
    model = OnlineGaussianMixture(k, random_state=0)
    checkpoints = {100_000: None, events: None}
    seen = 0
    t0 = time.perf_counter()
    while seen < events:
        labels = rng.integers(0, k, batch)
        model.partial_fit(centres[labels] + rng.normal(size=(batch, d)))
        seen += batch
        if seen in checkpoints:
            checkpoints[seen] = rss_mib()
            print(f"after {seen:>12,} events: RSS {checkpoints[seen]:8.1f} MiB "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    first, last = checkpoints[100_000], checkpoints[events]
    print(f"RSS change from 100k to {events:,} events: {100 * (last - first) / first:+.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads):
        blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
        print(f"BLAS threads: {blas}; d={args.d}, k={args.k}, batches of {args.batch}")
        if args.memory:
            memory(args.events or 10_000_000, args.d, args.k, args.batch)
        else:
            X = make_data((args.events or 200_000) + 10_000, args.d, args.k)
            throughput(X, args.k, args.batch, args.repeats)


if __name__ == "__main__":
    main()
