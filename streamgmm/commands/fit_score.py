"""``streamgmm fit`` and ``streamgmm score``: batch models from files.

``fit DATA -o model.npz`` fits a GaussianMixture on a CSV, JSONL or .npz file
(array ``X``) and stores, beside the model, the log-densities' percentiles of
the training data so that ``score --contamination q`` can flag the rows whose
log-density is below the q-th percentile of the training scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

# Percentiles of the training log-densities kept in the model file (0.1 % steps
# up to 10 %, then coarser), so any usual contamination level can be looked up.
_PERCENTILES = np.concatenate([np.arange(0.1, 10.0, 0.1), np.arange(10.0, 100.5, 1.0)])


def register(subparsers) -> None:
    fit = subparsers.add_parser("fit", help="fit a Gaussian mixture on a data file",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("data", help="CSV (header row), JSONL (one object per line) or .npz with X")
    fit.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    fit.add_argument("-k", "--n-components", type=int, default=4)
    fit.add_argument("--covariance-type", default="full",
                     choices=("full", "tied", "diag", "spherical"))
    fit.add_argument("--n-init", type=int, default=3)
    fit.add_argument("--max-iter", type=int, default=200)
    fit.add_argument("--tol", type=float, default=1e-3)
    fit.add_argument("--reg-covar", type=float, default=1e-6)
    fit.add_argument("--init-params", default="kmeans",
                     choices=("kmeans", "k-means++", "random", "random_from_data"))
    fit.add_argument("--random-state", type=int, default=0)
    fit.add_argument("--columns", help="comma-separated feature columns (default: all numeric)")
    fit.add_argument("--quiet", action="store_true", help="no progress display")
    fit.set_defaults(func=run_fit)

    score = subparsers.add_parser("score", help="score a data file with a model file")
    score.add_argument("model", help="model file written by 'streamgmm fit'")
    score.add_argument("data", help="CSV, JSONL or .npz with X")
    score.add_argument("-o", "--output", default="-", help="CSV output (default: stdout)")
    score.add_argument("--contamination", type=float,
                       help="flag rows below this quantile (e.g. 0.02) of the training scores")
    score.set_defaults(func=run_score)


class DataError(ValueError):
    """A data file cannot be read as a numeric matrix."""


def read_matrix(path: str, columns: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(X, column names) from a CSV, JSONL or .npz file, with errors naming row and column."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if p.suffix == ".npz":
        X = _read_npz(p)
        names = [f"x{i}" for i in range(X.shape[1])]
        if columns:
            idx = [int(c[1:]) if c.startswith("x") else int(c) for c in columns]
            X, names = X[:, idx], [names[i] for i in idx]
        return X, names
    rows = _read_jsonl(p) if p.suffix in (".jsonl", ".json", ".ndjson") else _read_csv(p)
    if not rows:
        raise DataError(f"{path}: no rows")
    names = columns or [k for k, v in rows[0].items() if _is_number(v)]
    if not names:
        raise DataError(f"{path}: no numeric columns in the first row")
    X = np.empty((len(rows), len(names)))
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            if name not in row:
                raise DataError(f"{path}: row {i + 1}: missing column {name!r}")
            try:
                X[i, j] = float(row[name])
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: row {i + 1}, column {name!r}: expected a number, "
                    f"got {row[name]!r}"
                ) from None
    return X, names


def _read_npz(p: Path) -> np.ndarray:
    """The 2-D array X of an .npz file, or a DataError (an empty or foreign file too)."""
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: not a readable .npz file (an empty file)")
    if not zipfile.is_zipfile(p):
        # Checked before numpy looks at it: numpy would guess "pickled data" for any
        # other file and suggest loading it unsafely.
        raise DataError(f"{p}: not a readable .npz file (not a complete .npz archive: "
                        "truncated, or another kind of file)")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "X" not in data.files:
                raise DataError(f"{p}: expected an array named 'X', found {data.files}")
            X = np.asarray(data["X"], dtype=np.float64)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from None
    if X.ndim != 2:
        raise DataError(f"{p}: X should be 2-D (rows x features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise DataError(f"{p}: no rows")
    return X


def _is_number(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _read_csv(p: Path) -> list[dict]:
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def _read_jsonl(p: Path) -> list[dict]:
    rows = []
    with open(p) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}: line {i}: bad JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}: line {i}: expected a JSON object")
            rows.append(obj)
    return rows


class _Progress:
    """One status line on stderr, rewritten per EM iteration for large inputs."""

    def __init__(self, enabled: bool, n_rows: int):
        self.enabled = enabled and n_rows >= 10_000
        self.start = time.perf_counter()

    def __call__(self, init: int, n_iter: int, change: float) -> None:
        if self.enabled:
            change = change if np.isfinite(change) else 0.0
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(f"\r  init {init + 1}: iteration {n_iter:>4}  "
                             f"change {change:+.3e}  {elapsed:6.1f}s")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_fit(args) -> int:
    from streamgmm.model.gmm import GaussianMixture

    try:
        X, names = read_matrix(args.data, args.columns.split(",") if args.columns else None)
        progress = _Progress(not args.quiet, X.shape[0])
        model = GaussianMixture(
            args.n_components, covariance_type=args.covariance_type, n_init=args.n_init,
            max_iter=args.max_iter, tol=args.tol, reg_covar=args.reg_covar,
            init_params=args.init_params, random_state=args.random_state,
        )
        model._progress = progress
        model.fit(X)
        progress.done()
    except ValueError as exc:
        print(f"streamgmm fit: {exc}", file=sys.stderr)
        return 2
    scores = model.score_samples(X)
    model.save(args.output, score_percentiles=np.percentile(scores, _PERCENTILES),
               percentile_levels=_PERCENTILES,
               feature_names=np.array(names, dtype=np.str_))
    print(f"fitted {model.n_components} components ({model.covariance_type}) on "
          f"{X.shape[0]} rows x {X.shape[1]} features: mean log-likelihood "
          f"{model.score(X):.4f}, {model.n_iter_} iterations, converged={model.converged_}; "
          f"wrote {args.output}", file=sys.stderr)
    return 0


def training_threshold(model, contamination: float) -> float:
    """The log-density below which a fraction ``contamination`` of training rows fell."""
    extras = getattr(model, "extras_", {})
    if "score_percentiles" not in extras:
        raise ValueError("the model file holds no training scores; refit it with 'streamgmm fit'")
    if not 0.0 < contamination < 1.0:
        raise ValueError(f"--contamination: expected a number in (0, 1), got {contamination}")
    return float(np.interp(100.0 * contamination, extras["percentile_levels"],
                           extras["score_percentiles"]))


def run_score(args) -> int:
    from streamgmm.model.io import load

    try:
        model = load(args.model)
        names = [str(s) for s in model.extras_.get("feature_names", [])] or None
        X, _ = read_matrix(args.data, names)
        threshold = (training_threshold(model, args.contamination)
                     if args.contamination is not None else None)
        scores = model.score_samples(X)
    except ValueError as exc:
        print(f"streamgmm score: {exc}", file=sys.stderr)
        return 2
    labels = model.predict(X)
    if args.output == "-":
        _write_scores(sys.stdout, scores, labels, threshold)
    else:
        with open(args.output, "w", newline="") as out:
            _write_scores(out, scores, labels, threshold)
    if threshold is not None:
        n_flag = int((scores < threshold).sum())
        print(f"threshold {threshold:.4f} (training {100 * args.contamination:g}th percentile): "
              f"{n_flag} of {len(scores)} rows flagged", file=sys.stderr)
    return 0


def _write_scores(out, scores, labels, threshold) -> None:
    writer = csv.writer(out)
    header = ["row", "log_density", "label"] + (["is_anomaly"] if threshold is not None else [])
    writer.writerow(header)
    for i, (s, lab) in enumerate(zip(scores, labels, strict=True)):
        row = [i, f"{s:.6f}", int(lab)]
        if threshold is not None:
            row.append(int(s < threshold))
        writer.writerow(row)
