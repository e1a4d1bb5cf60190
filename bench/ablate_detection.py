"""Average precision of detector variants on the shared data sets: what each
part of the default earns, and what a simpler model would get.

Runs ``AnomalyDetector`` with the default parameters and with variants given as
``name=JSON`` (keyword arguments over the defaults), by the prequential protocol
of ``eval_detection.py`` (micro-batches of 500, refits applied at the next
batch, warm-up events scored by the initial model), in stored order and in the
same seeded shuffle. ``--static`` adds a baseline: one Gaussian (full
covariance, the detector's scaling and variance floor of 1e-2) fitted on the
first ``warmup`` events and never updated.

    .venv/bin/python bench/ablate_detection.py [--datasets cardio,shuttle]
        [--variant 'k1={"n_components": 1}'] [--static] [--inspect 30000]
        [--experiment relative --experiment rda-0.5]

``--experiment NAME`` (repeatable) adds variants that need more than
keyword arguments (the tries behind bench/RESULTS.md's "Tried for the missed
goal"; none is part of streamgmm):

- ``relative``: the default detector, events ranked by their score minus the
  threshold in force (how far below the alerting bar), not by the log-density;
- ``yeo-johnson``: each feature, standardised by the warm-up's median and MAD,
  goes through a Yeo-Johnson transform whose lambda is fitted on the warm-up
  (``scipy.stats.yeojohnson_normmax``); events are ranked by the log-density
  of the original features (the transform's log-Jacobian added);
- ``rda-A``: every full covariance, in every M-step (batch and online), shrunk
  toward its own diagonal with the fixed intensity A (regularised discriminant
  analysis), e.g. ``rda-0.5``;
- ``prior-K``: the same shrinkage with the intensity of a prior worth K (d+1)
  events, kappa / (n_k + kappa), n_k in events (the online model's effective
  number of events), e.g. ``prior-1``;
- ``untrimmed-warmup``: the default detector whose warm-up fit keeps all its
  events (no refit without the lowest-scoring share);
- ``floor-capped``: the default detector whose per-feature quantisation floor
  (step^2 / 12 of a discrete feature) is capped at the feature's own variance
  in the warm-up (a feature with a spike and a few far values, read as two
  levels a wide step apart, otherwise gets a floor far above its spread).

``rda-A`` and ``prior-K`` patch the M-step in this process and run refits on a
thread; ``untrimmed-warmup`` and ``floor-capped`` patch what only the detector's
own process runs (its warm-up fit, the floor it hands to refits).

``--inspect N`` prints, instead, the default detector's mixture after the first N
events of each data set and order: each component's weight, its spread (the
standard deviation per feature, as a ratio to the heaviest component's), how
many of the N events it holds most (``predict``) and what share of those are
labelled anomalies.

With neither ``--variant`` nor ``--experiment`` it runs: one full component,
one diagonal component, and 'auto' with diagonal covariances (the variants
behind bench/RESULTS.md's reading of the goals).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_detection as ed  # noqa: E402

from streamgmm.detect.detector import AnomalyDetector  # noqa: E402 (for --inspect)

VARIANTS = {
    "k1": {"n_components": 1},
    "k1-diag": {"n_components": 1, "covariance_type": "diag"},
    "auto-diag": {"covariance_type": "diag"},
}


def stream(X: np.ndarray, batch: int = 500, **params) -> np.ndarray:
    """Anomaly scores (higher = more anomalous) of one detector over X, by
    ``eval_detection``'s protocol (refits applied at the next batch)."""
    return ed.stream_detector(X, batch, wait=True, **params)[0]


def stream_margin(X: np.ndarray, batch: int = 500) -> np.ndarray:
    """The default detector's scores minus the threshold in force, negated
    (higher = further below the alerting bar); warm-up events against the first
    threshold."""
    det = AnomalyDetector(random_state=0)
    score, thr = np.empty(X.shape[0]), np.full(X.shape[0], np.nan)
    for i in range(0, X.shape[0], batch):
        out = det.process(X[i:i + batch])
        score[i:i + batch], thr[i:i + batch] = out.score, out.threshold
        det.wait_for_refit()
    unscored = np.isnan(score)
    score[unscored] = det.score_samples(X[unscored])
    thr[np.isnan(thr)] = thr[np.flatnonzero(~np.isnan(thr))[0]]
    det.close()
    return -(score - thr)


def robust_scaled(X: np.ndarray, warmup: int = 500) -> np.ndarray:
    """X centred and scaled by the warm-up's median and MAD, as the detector
    scales it (the standard deviation where the MAD is 0, 1 where both are)."""
    W = X[:warmup]
    centre = np.median(W, axis=0)
    scale = 1.4826 * np.median(np.abs(W - centre), axis=0)
    scale = np.where(scale > 0, scale, W.std(axis=0))
    return (X - centre) / np.where(scale > 0, scale, 1.0)


def yeo_johnson(X: np.ndarray, warmup: int = 500) -> np.ndarray:
    """The default detector on Yeo-Johnson-transformed features (lambda per
    feature from the warm-up), ranked by the original features' log-density."""
    from scipy import stats

    Z = robust_scaled(X, warmup)
    T, log_jac = np.empty_like(Z), np.zeros(Z.shape[0])
    for j in range(Z.shape[1]):
        lam = stats.yeojohnson_normmax(Z[:warmup, j]) if np.ptp(Z[:warmup, j]) > 0 else 1.0
        lam = float(np.clip(lam, -2.0, 4.0))
        T[:, j] = stats.yeojohnson(Z[:, j], lam)
        log_jac += (lam - 1.0) * np.sign(Z[:, j]) * np.log1p(np.abs(Z[:, j]))
    # stream() returns -log p(t); log p(z) = log p(t) + log |dt/dz|.
    return stream(T) - log_jac


@contextlib.contextmanager
def shrunk_covariances(intensity):
    """Patch the M-step: full covariances shrunk toward their diagonal by
    ``intensity(n_k events, d)`` (batch fits: n_k in events; the online model:
    its share of the effective number of events)."""
    import streamgmm.model.em as em
    import streamgmm.model.online as online
    import streamgmm.model.stats as st

    original, mstep_online, restart = st.mstep, online.OnlineGaussianMixture._mstep, \
        online.OnlineGaussianMixture._restart
    events = {"n": 1.0}

    def mstep(stats, reg_covar):
        weights, means, cov = original(stats, reg_covar)
        if stats.covariance_type == "full":
            d = cov.shape[1]
            a = intensity((stats.n + st.MASS_EPS) * events["n"], d)[:, None, None]
            diag = np.einsum("kii->ki", cov)
            cov = (1.0 - a) * cov
            cov[:, np.arange(d), np.arange(d)] = diag
        return weights, means, cov

    def with_events(method, n):
        def run(self, *args):
            events["n"] = n(self, *args)
            try:
                return method(self, *args)
            finally:
                events["n"] = 1.0
        return run

    em.mstep = st.mstep = mstep
    online.OnlineGaussianMixture._mstep = with_events(mstep_online,
                                                      lambda m, s: m.n_effective_)
    online.OnlineGaussianMixture._restart = with_events(restart,
                                                        lambda m, s, n: max(n, 1.0))
    try:
        yield
    finally:
        em.mstep = st.mstep = original
        online.OnlineGaussianMixture._mstep = mstep_online
        online.OnlineGaussianMixture._restart = restart


def shrinkage(name: str):
    """The covariance shrinkage of an ``rda-A`` or ``prior-K`` experiment, as a
    function of (events per component, dimension); None for any other name or
    a value out of range."""
    kind, _, value = name.partition("-")
    try:
        number = float(value)
    except ValueError:
        return None
    if kind == "rda" and 0.0 <= number <= 1.0:
        return lambda n, d: np.full(n.shape, number)
    if kind == "prior" and 0.0 <= number < float("inf"):
        return lambda n, d: number * (d + 1) / (n + number * (d + 1))
    return None


@contextlib.contextmanager
def untrimmed_warmup():
    """Patch the detector: its warm-up fit keeps every warm-up event."""
    fit_initial, trim_level = AnomalyDetector._fit_initial, AnomalyDetector._trim_level

    def fit(self, X_raw):
        AnomalyDetector._trim_level = property(lambda self: 0.0)
        try:
            return fit_initial(self, X_raw)
        finally:
            AnomalyDetector._trim_level = trim_level

    AnomalyDetector._fit_initial = fit
    try:
        yield
    finally:
        AnomalyDetector._fit_initial = fit_initial


@contextlib.contextmanager
def capped_floor():
    """Patch the detector: the quantisation floor of a feature that varies in
    the warm-up is at most the feature's variance there."""
    import streamgmm.detect.scaling as sc

    original = sc.quantisation_floor

    def floor(X):
        varies = np.ptp(X, axis=0) > 0
        return np.where(varies, np.minimum(original(X), X.var(axis=0)), original(X))

    sc.quantisation_floor = floor
    try:
        yield
    finally:
        sc.quantisation_floor = original


PATCHES = {"untrimmed-warmup": untrimmed_warmup, "floor-capped": capped_floor}


def experiment(name: str, X: np.ndarray) -> np.ndarray:
    """Anomaly scores of one ``--experiment`` (a name ``main`` has checked)."""
    if name == "relative":
        return stream_margin(X)
    if name == "yeo-johnson":
        return yeo_johnson(X)
    if name in PATCHES:
        with PATCHES[name]():
            return stream(X)
    with shrunk_covariances(shrinkage(name)):
        return stream(X, refit_worker="thread")


def static_gaussian(X: np.ndarray, warmup: int = 500) -> np.ndarray:
    """One Gaussian on the first ``warmup`` events, scaled by their median and MAD."""
    from scipy.stats import multivariate_normal

    Z = robust_scaled(X, warmup)
    cov = np.cov(Z[:warmup].T, bias=True).reshape(X.shape[1], X.shape[1])
    cov += 1e-2 * np.eye(X.shape[1])
    return -multivariate_normal(Z[:warmup].mean(axis=0), cov, allow_singular=True).logpdf(Z)


def inspect(X: np.ndarray, y: np.ndarray, n: int, batch: int = 500) -> None:
    """Print the default detector's components after the first n events."""
    det = AnomalyDetector(random_state=0)
    for i in range(0, min(n, X.shape[0]), batch):
        det.process(X[i:min(i + batch, n)])
        det.wait_for_refit()
    m = det.model
    spread = det._guard.spread(m) / m.n_features_in_
    heaviest = int(np.argmax(m.weights_))
    label = m.predict(det._scaled(X[:n]))
    print(f"{'component':>11}{'weight':>8}{'sd ratio':>10}{'events':>8}{'anomalies':>11}"
          f"{'guarded':>9}")
    for j in range(m.weights_.shape[0]):
        members = label == j
        share = y[:n][members].mean() if members.any() else float("nan")
        print(f"{j:>11}{m.weights_[j]:>8.3f}{np.exp((spread[j] - spread[heaviest]) / 2):>10.2f}"
              f"{int(members.sum()):>8}{share:>11.3f}{'yes' if not det._major[j] else '':>9}")
    det.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(ed.DATASETS))
    parser.add_argument("--orders", default="stored,shuffled")
    parser.add_argument("--variant", action="append", default=[],
                        help="name=JSON keyword arguments (repeatable)")
    parser.add_argument("--static", action="store_true",
                        help="add one Gaussian fitted on the warm-up, never updated")
    parser.add_argument("--experiment", action="append", default=[],
                        help="relative, yeo-johnson, untrimmed-warmup, floor-capped, rda-A "
                             "or prior-K (repeatable)")
    parser.add_argument("--inspect", type=int, default=0, metavar="N",
                        help="print the default mixture after N events instead")
    args = parser.parse_args()
    if args.inspect:
        for dataset in args.datasets.split(","):
            for order in args.orders.split(","):
                X, y = ed.load(dataset, None)
                if order == "shuffled":
                    perm = np.random.default_rng(0).permutation(y.shape[0])
                    X, y = X[perm], y[perm]
                print(f"{dataset}, {order} order, after {min(args.inspect, y.shape[0])} events "
                      f"({100 * y[:args.inspect].mean():.1f} % anomalies):")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    inspect(X, y, args.inspect)
        return
    for name in args.experiment:
        if name not in ("relative", "yeo-johnson", *PATCHES) and shrinkage(name) is None:
            parser.error(f"--experiment: unknown {name!r} (relative, yeo-johnson, "
                         f"{', '.join(PATCHES)}, rda-A with 0 <= A <= 1, prior-K with K >= 0)")
    variants = {"default": {}}
    for spec in args.variant or []:
        name, _, params = spec.partition("=")
        variants[name] = json.loads(params)
    if not args.variant and not args.experiment:
        variants.update(VARIANTS)
    names = list(variants) + args.experiment + (["static"] if args.static else [])
    means: dict[tuple[str, str], list[float]] = {}
    width = [max(12, len(n) + 2) for n in names]
    print(f"{'data set':<13}{'order':<10}"
          + "".join(f"{n:>{w}}" for n, w in zip(names, width, strict=True)))
    for dataset in args.datasets.split(","):
        loaded = ed.load(dataset, None)
        if loaded is None:
            print(f"{dataset}: not found under {ed.DATA}, skipped")
            continue
        for order in args.orders.split(","):
            X, y = loaded
            if order == "shuffled":
                perm = np.random.default_rng(0).permutation(y.shape[0])
                X, y = X[perm], y[perm]
            row = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name in names:
                    if name == "static":
                        s = static_gaussian(X)
                    elif name in variants:
                        s = stream(X, **variants[name])
                    else:
                        s = experiment(name, X)
                    ap = average_precision_score(y, s)
                    means.setdefault((order, name), []).append(ap)
                    row.append(ap)
            print(f"{dataset:<13}{order:<10}"
                  + "".join(f"{ap:>{w}.3f}" for ap, w in zip(row, width, strict=True)), flush=True)
    for order in args.orders.split(","):
        print(f"{'mean':<13}{order:<10}"
              + "".join(f"{np.mean(means.get((order, n), [np.nan])):>{w}.3f}"
                        for n, w in zip(names, width, strict=True)))


if __name__ == "__main__":
    main()
