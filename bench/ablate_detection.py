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

``--inspect N`` prints, instead, the default detector's mixture after the first N
events of each data set and order: each component's weight, its spread (the
standard deviation per feature, as a ratio to the heaviest component's), how
many of the N events it holds most (``predict``) and what share of those are
labelled anomalies.

With no ``--variant`` it runs: one full component, one diagonal component, and
'auto' with diagonal covariances (the variants behind bench/RESULTS.md's
reading of the goals).
"""

from __future__ import annotations

import argparse
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


def static_gaussian(X: np.ndarray, warmup: int = 500) -> np.ndarray:
    """One Gaussian on the first ``warmup`` events, scaled by their median and MAD."""
    from scipy.stats import multivariate_normal

    W = X[:warmup]
    centre = np.median(W, axis=0)
    scale = 1.4826 * np.median(np.abs(W - centre), axis=0)
    scale = np.where(scale > 0, scale, W.std(axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    Z = (X - centre) / scale
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
    spread = det._spread_logdet() / m.n_features_in_
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
    variants = {"default": {}}
    for spec in args.variant or []:
        name, _, params = spec.partition("=")
        variants[name] = json.loads(params)
    if not args.variant:
        variants.update(VARIANTS)
    names = list(variants) + (["static"] if args.static else [])
    means: dict[tuple[str, str], list[float]] = {}
    print(f"{'data set':<13}{'order':<10}" + "".join(f"{n:>11}" for n in names))
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
                    s = static_gaussian(X) if name == "static" else stream(X, **variants[name])
                    ap = average_precision_score(y, s)
                    means.setdefault((order, name), []).append(ap)
                    row.append(ap)
            print(f"{dataset:<13}{order:<10}" + "".join(f"{ap:>11.3f}" for ap in row),
                  flush=True)
    for order in args.orders.split(","):
        print(f"{'mean':<13}{order:<10}"
              + "".join(f"{np.mean(means.get((order, n), [np.nan])):>11.3f}" for n in names))


if __name__ == "__main__":
    main()
