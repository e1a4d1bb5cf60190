"""Accuracy of the online mixture: the full protocols behind tests/model/test_online*.py.

- ``stationary``: a known 8-component mixture in d=10 (full covariances,
  unequal weights, 0.2 to 4 % overlap), 200k events in batches of 500, one
  pass; held-out mean log-likelihood of the online model against batch EM
  fitted on all 200k events (n_init=5) and against the true model, per seed.
- ``drift``: 100k events of one mixture, then 60k of another; events after the
  change until the held-out log-likelihood on the new regime stays within 0.1
  nats of a batch fit on that regime, with and without drift detection. Then a
  slow drift (every mean moves 5 units over 200k events): gap to the true
  current model along the way.
- ``adbench``: each shared data set (standardized, zero-variance columns
  dropped), in stored order and in ``default_rng(0).permutation(n)`` order:
  the first 80 % streamed in batches of 500, the last 20 % held out; online
  against batch EM fitted on the same 80 %.

    .venv/bin/python bench/eval_online.py [stationary|drift|adbench ...] [--seeds 0 1 2]
        [--datasets 16_http ...] [--reg-covar 1e-6]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import multivariate_normal
from threadpoolctl import threadpool_limits

from streamgmm import GaussianMixture, OnlineGaussianMixture
from streamgmm.testing import mixtures

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adbench"
DATASETS = ("16_http", "23_mammography", "32_shuttle", "34_smtp", "38_thyroid", "6_cardio")
make_mixture = mixtures.make_mixture
sample = mixtures.sample_mixture


def true_loglik(mix, X, shift=0.0) -> tuple[np.ndarray, float]:
    w, means, covs = mix
    lp = np.stack([np.log(w[c]) + multivariate_normal(means[c] + np.broadcast_to(
        shift, means.shape)[c], covs[c]).logpdf(X) for c in range(len(w))], axis=1)
    top = lp.max(axis=1)
    total = top + np.log(np.exp(lp - top[:, None]).sum(axis=1))
    post = np.exp(lp - total[:, None])
    return total, float(1.0 - post.max(axis=1).mean())


def batch_em(X, k, n_init, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(k, n_init=n_init, random_state=seed).fit(X)


def stream(model, X, batch=500):
    for start in range(0, X.shape[0], batch):
        model.partial_fit(X[start:start + batch])
    return model


def stationary(seeds, n=200_000):
    print(f"stationary: k=8, d=10, {n:,} events in batches of 500, one pass; "
          "held-out mean log-lik differences (nats/event)")
    for seed in seeds:
        mix = make_mixture(seed)
        rng = np.random.default_rng(seed + 100)
        X, Xt = sample(mix, n, rng), sample(mix, 20_000, rng)
        truth, overlap = true_loglik(mix, Xt)
        t0 = time.perf_counter()
        online = stream(OnlineGaussianMixture(8, random_state=seed), X)
        t_on = time.perf_counter() - t0
        batch = batch_em(X, 8, 5, seed)
        lo, lb, lt = online.score(Xt), batch.score(Xt), truth.mean()
        print(f"  seed {seed}: overlap {overlap:.3f}  online-batch {lo - lb:+.4f}  "
              f"online-true {lo - lt:+.4f}  batch-true {lb - lt:+.4f}  "
              f"n_effective {online.n_effective_:,.0f}  drifts {online.n_drifts_}  "
              f"respawns {online.n_respawns_}  online {t_on:.1f} s", flush=True)


def abrupt(seed, detection: bool, pre=100_000, post=60_000, batch=500):
    rng = np.random.default_rng(seed)
    old, new = make_mixture(seed, spread=2.2), make_mixture(seed + 1000, spread=2.2)
    X_old, X_new, Xt = sample(old, pre, rng), sample(new, post, rng), sample(new, 10_000, rng)
    reference = batch_em(sample(new, 40_000, rng), 8, 5).score(Xt)
    model = OnlineGaussianMixture(8, random_state=seed,
                                  drift_threshold=8.0 if detection else None)
    stream(model, X_old)
    gaps = []
    for start in range(0, post, batch):
        model.partial_fit(X_new[start:start + batch])
        gaps.append(reference - model.score(Xt))
    over = np.flatnonzero(np.array(gaps) > 0.1)
    events = (over[-1] + 2) * batch if over.size else batch
    recovered = f"{events:,}" if events <= post else f"> {post:,}"
    return recovered, gaps, model


def drift(seeds):
    print("abrupt change after 100k events (k=8, d=10): events until the held-out gap to a "
          "batch fit on the new regime stays within 0.1 nats")
    for seed in seeds:
        for detection in (True, False):
            events, gaps, model = abrupt(seed, detection)
            print(f"  seed {seed} detection {'on ' if detection else 'off'}: recovery {events} "
                  f"events; gap at 5k {gaps[9]:.3f}, 10k {gaps[19]:.3f}, 20k {gaps[39]:.3f}, "
                  f"60k {gaps[-1]:.3f}; alarms {model.n_drift_alarms_}, refits "
                  f"{model.n_drifts_}", flush=True)
    print("slow drift: every mean moves 5 units over 200k events; gap to the true current "
          "model every 40k events")
    for seed in seeds:
        slow(seed)


def slow(seed, n=200_000, batch=500, total_shift=5.0):
    w, means, covs = mix = make_mixture(seed, spread=2.2)
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=means.shape)
    direction *= total_shift / np.linalg.norm(direction, axis=1, keepdims=True)
    model = OnlineGaussianMixture(8, random_state=seed)
    gaps = []
    for start in range(0, n, batch):
        shift = direction * start / n
        model.partial_fit(sample(mix, batch, rng, shift))
        if (start + batch) % 40_000 == 0:
            Xt = sample(mix, 5000, rng, shift)
            gaps.append(true_loglik(mix, Xt, shift)[0].mean() - model.score(Xt))
    print(f"  seed {seed}: gaps {np.round(gaps, 3).tolist()}  alarms "
          f"{model.n_drift_alarms_}, refits {model.n_drifts_}", flush=True)


def load(name):
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as f:
        X = np.asarray(f["X"], dtype=np.float64)
    sd = X.std(axis=0)
    keep = sd > 0
    return (X[:, keep] - X[:, keep].mean(axis=0)) / sd[keep]


def adbench(names, k=8, reg_covar=1e-6):
    print(f"ADBench: k={k} full covariances, reg_covar={reg_covar:g}, first 80 % streamed in "
          "batches of 500, last 20 % held out; mean held-out log-lik (nats/event)")
    for name in names:
        X = load(name)
        for order in ("stored", "shuffled"):
            Xo = X if order == "stored" else X[np.random.default_rng(0).permutation(len(X))]
            cut = int(0.8 * len(Xo))
            train, test = Xo[:cut], Xo[cut:]
            # Small data sets start on half their training rows.
            online = stream(OnlineGaussianMixture(
                k, random_state=0, reg_covar=reg_covar,
                init_events=min(5000, cut // 2)), train)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                batch = GaussianMixture(k, n_init=3, random_state=0,
                                        reg_covar=reg_covar).fit(train)
            lo, lb = online.score(test), batch.score(test)
            print(f"  {name:15s} {order:8s} n={len(X):7,} d={X.shape[1]:2d}: online {lo:9.3f}  "
                  f"batch EM {lb:9.3f}  online-batch {lo - lb:+8.3f}  alarms "
                  f"{online.n_drift_alarms_} refits {online.n_drifts_} respawns "
                  f"{online.n_respawns_}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["stationary", "drift", "adbench"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--reg-covar", type=float, default=1e-6)
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        if "stationary" in args.what:
            stationary(args.seeds)
        if "drift" in args.what:
            drift(args.seeds)
        if "adbench" in args.what:
            adbench(args.datasets, reg_covar=args.reg_covar)


if __name__ == "__main__":
    main()
