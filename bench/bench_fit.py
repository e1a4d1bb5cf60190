"""Batch EM speed: streamgmm vs scikit-learn at equal initialisation.

Prints, for n=100k events, k=8 components, d in {3, 10, 30} and every covariance
type, the time per EM iteration and the total fit time of both libraries, and
their ratio (scikit-learn time / streamgmm time: above 1 means streamgmm is faster).
Both run in the same process with the same BLAS thread count (--threads, default 1).

    .venv/bin/python bench/bench_fit.py [--n 100000] [--threads 1] [--iters 20]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture as SkGM
from threadpoolctl import threadpool_info, threadpool_limits

from streamgmm import GaussianMixture


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    labels = rng.integers(0, k, n)
    A = rng.normal(0, 1, (k, d, d)) / np.sqrt(d)
    X = centres[labels] + np.einsum("nij,nj->ni", A[labels], rng.normal(size=(n, d)))
    return (X - X.mean(0)) / X.std(0)


def init_params(X: np.ndarray, k: int, cov_type: str) -> dict:
    start = SkGM(k, covariance_type=cov_type, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X[:20000])
    return dict(weights_init=start.weights_, means_init=start.means_,
                precisions_init=start.precisions_)


def timed_fit(cls, X, k, cov_type, init, iters, repeats):
    best = np.inf
    for _ in range(repeats):
        model = cls(k, covariance_type=cov_type, max_iter=iters, tol=0.0, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            model.fit(X)
            best = min(best, time.perf_counter() - t0)
    return best, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with threadpool_limits(limits=args.threads):
        blas = [f"{i['internal_api']} {i.get('architecture', '')} threads={i['num_threads']}"
                for i in threadpool_info()]
        print(f"n={args.n} k={args.k} iterations={args.iters} BLAS: {'; '.join(blas)}")
        print(f"{'d':>3} {'type':>9} {'sk ms/iter':>11} {'sg ms/iter':>11} {'ratio/iter':>10} "
              f"{'sk fit s':>9} {'sg fit s':>9} {'ratio fit':>9} {'max |dmean|':>11}")
        for d in args.dims:
            X = make_data(args.n, d, args.k)
            for cov_type in ("full", "tied", "diag", "spherical"):
                init = init_params(X, args.k, cov_type)
                t_sk, sk = timed_fit(SkGM, X, args.k, cov_type, init, args.iters, args.repeats)
                t_sg, sg = timed_fit(GaussianMixture, X, args.k, cov_type, init, args.iters,
                                     args.repeats)
                # Whole fits from the same start, to convergence.
                f_sk, _ = timed_fit(lambda *a, **kw: SkGM(*a, **{**kw, "tol": 1e-3,
                                    "max_iter": 200}), X, args.k, cov_type, init, 0, 1)
                f_sg, _ = timed_fit(lambda *a, **kw: GaussianMixture(*a, **{**kw, "tol": 1e-3,
                                    "max_iter": 200}), X, args.k, cov_type, init, 0, 1)
                diff = float(np.max(np.abs(sk.means_ - sg.means_)))
                print(f"{d:>3} {cov_type:>9} {1e3 * t_sk / args.iters:>11.2f} "
                      f"{1e3 * t_sg / args.iters:>11.2f} {t_sk / t_sg:>9.2f}x "
                      f"{f_sk:>9.3f} {f_sg:>9.3f} {f_sk / f_sg:>8.2f}x {diff:>11.1e}", flush=True)


if __name__ == "__main__":
    main()
