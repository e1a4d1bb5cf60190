"""``streamgmm plot``: pictures of a model, of a stream, of the detection evaluation.

  streamgmm plot MODEL DATA -o fig.png [--features a,b] [--compare-covariance]
      the data in two features (default: the first two principal axes), each
      component's 1-, 2- and 3-sigma ellipses, log-density contours, and the
      rows below the model file's training percentile (--contamination)
      marked; --compare-covariance fits the four covariance types on DATA
      and draws them side by side
  streamgmm plot scores AUDIT_OR_ALERTS -o timeline.png
      log-density over the stream with the rolling threshold, alerts and
      model swaps, from an audit file written with audit.scores: true, or
      from an alerts file (JSON lines)
  streamgmm plot detection RESULTS.json -o ap.png
      average precision per data set from bench/eval_detection.py --json

DATA is read as 'streamgmm score' reads it (CSV, JSONL, .npz with X). The
figure's format follows the file name (png, svg, pdf, ...). Needs the plot
extra: pip install 'streamgmm[plot]'. (A model file named 'scores' or
'detection' is given as ./scores.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# What the figures need; only this command imports them, and only when it runs.
INSTALL_HINT = "pip install 'streamgmm[plot]'"
KINDS = ("scores", "detection")
DEFAULT_CONTAMINATION = 0.02  # the detector's default


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot", help="draw a model over data, a stream's scores, or the detection evaluation",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="streamgmm plot {MODEL DATA | scores AUDIT_OR_ALERTS | detection RESULTS} "
              "-o OUT [options]")
    p.add_argument("what", metavar="MODEL|scores|detection",
                   help="a model file written by 'streamgmm fit', or 'scores' or 'detection'")
    p.add_argument("file", metavar="DATA|AUDIT_OR_ALERTS|RESULTS",
                   help="the data to draw the model over, the audit or alerts file, or the "
                        "evaluation's results")
    p.add_argument("-o", "--output", required=True, help="image to write (.png, .svg, .pdf)")
    p.add_argument("--features", help="two features to draw, by name or index (default: the "
                                      "first two principal axes)")
    p.add_argument("--compare-covariance", action="store_true",
                   help="fit the four covariance types on DATA and draw them side by side")
    p.add_argument("--contamination", type=float, default=None,
                   help="mark rows below this quantile of the training scores the model file "
                        f"stores (default {DEFAULT_CONTAMINATION}, when it stores them; "
                        "0 marks none)")
    p.add_argument("--max-points", type=int, default=5000,
                   help="draw at most this many unmarked rows, a random subset (default 5000)")
    p.add_argument("--dpi", type=int, default=150, help="pixels per inch (default 150)")
    p.add_argument("--title", help="the figure's title")
    p.set_defaults(func=run_plot)


class PlotError(ValueError):
    """Input that cannot be drawn; the message names the file, field or value."""


def run_plot(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"streamgmm plot: needs matplotlib, which is not installed: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    try:
        _check_options(args)
        if args.what == "scores":
            fig, summary = _scores(args)
        elif args.what == "detection":
            fig, summary = _detection(args)
        else:
            fig, summary = _model(args)
        width, height = _save(fig, args.output, args.dpi)
    except (ValueError, OSError) as exc:
        print(f"streamgmm plot: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({width} x {height} px): {summary}", file=sys.stderr)
    return 0


def _check_options(args) -> None:
    if args.what in KINDS and (args.features or args.compare_covariance):
        raise PlotError(f"--features and --compare-covariance draw a model; "
                        f"'plot {args.what}' takes neither")
    if args.contamination is not None and not 0.0 <= args.contamination < 1.0:
        raise PlotError(f"--contamination: expected a number in [0, 1), "
                        f"got {args.contamination}")
    if args.max_points < 0:
        raise PlotError(f"--max-points: expected a number >= 0, got {args.max_points}")
    if args.dpi <= 0:
        raise PlotError(f"--dpi: expected a positive number, got {args.dpi}")
    suffix = Path(args.output).suffix.lower().lstrip(".")
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise PlotError(f"-o {args.output}: unknown image format {suffix or '(none)'!r}; "
                        f"name the file .{', .'.join(sorted(formats))}")


def _save(fig, output: str, dpi: int) -> tuple[int, int]:
    try:
        fig.savefig(output, dpi=dpi)
    except OSError as exc:
        raise OSError(f"-o {output}: cannot write the image ({exc.strerror or exc})") from None
    width, height = fig.get_size_inches() * dpi
    return round(width), round(height)


def _scores(args):
    from streamgmm.plot import read_timeline, scores_timeline

    timeline = read_timeline(args.file)
    fig = scores_timeline(timeline, title=args.title)
    events = "" if timeline.alerts_only else f"{timeline.score.size:,} events, "
    swaps = timeline.swaps().size
    return fig, (f"{events}{int(timeline.flagged.sum()):,} alerts, "
                 f"{swaps} model swap{'s' if swaps != 1 else ''}")


def _detection(args):
    from streamgmm.plot import detection_ap, read_detection_results

    rows = read_detection_results(args.file)
    fig = detection_ap(rows, title=args.title)
    sets = len({row["dataset"] for row in rows})
    methods = sorted({row["method"] for row in rows})
    return fig, f"{sets} data sets, methods {', '.join(methods)}"


def _model(args):
    import numpy as np

    from streamgmm.model.io import load
    from streamgmm.plot import mixture
    from streamgmm.plot.geometry import resolve_features

    model = load(args.what)
    X, names = read_model_data(args.what, model, args.file)
    features = resolve_features(args.features, names, "--features") if args.features else None
    if args.compare_covariance:
        return _compare(args, model, X, names, features)
    threshold, contamination = _stored_threshold(args, model)
    fig = mixture(model, X, features=features, threshold=threshold, feature_names=names,
                  title=args.title, max_points=args.max_points)
    if threshold is None:
        none = ("" if "score_percentiles" in model.extras_
                else " (the model file holds no training scores: none marked)")
        return fig, f"{model.n_components} components over {len(X):,} rows{none}"
    n_flag = int(np.sum(model.score_samples(X) < threshold))
    return fig, (f"{model.n_components} components over {len(X):,} rows; {n_flag:,} below "
                 f"the threshold {threshold:.4f} (the {100 * contamination:g}% quantile "
                 "of the training scores)")


def _stored_threshold(args, model) -> tuple[float | None, float]:
    """(threshold, contamination) from the training scores the model file stores;
    by default none when it stores none, an error when --contamination asks for one."""
    from streamgmm.commands.fit_score import training_threshold

    stored = "score_percentiles" in model.extras_
    contamination = args.contamination
    if contamination is None:
        contamination = DEFAULT_CONTAMINATION if stored else 0.0
    if contamination and not stored:
        raise PlotError(f"--contamination: {args.what} holds no training scores to take a "
                        "threshold from (it was not written by 'streamgmm fit')")
    return (training_threshold(model, contamination) if contamination else None), contamination


def _compare(args, model, X, names, features):
    from streamgmm.plot import covariance_types

    contamination = DEFAULT_CONTAMINATION if args.contamination is None else args.contamination
    fig = covariance_types(X, model.n_components, features=features,
                           contamination=contamination or None, feature_names=names,
                           title=args.title, max_points=args.max_points, **_fit_params(model))
    return fig, f"four covariance types, {model.n_components} components, {len(X):,} rows"


def _fit_params(model) -> dict:
    """The model's batch-EM settings (tol, reg_covar, n_init, random_state, ...) for
    the four fits; not its initial values, which belong to one fit."""
    from streamgmm.model.gmm import GaussianMixture

    keep = set(GaussianMixture._param_names()) - {
        "n_components", "covariance_type", "weights_init", "means_init", "precisions_init",
        "warm_start", "verbose", "verbose_interval"}
    return {k: v for k, v in model.get_params().items() if k in keep}


def read_model_data(model_path: str, model, data_path: str):
    """The rows of DATA in the model's features, in the model's order, or a PlotError."""
    from streamgmm.commands.fit_score import read_matrix

    d = model.n_features_in_
    want = [str(s) for s in model.extras_.get("feature_names", [])]
    if d < 2:
        named = f" ({want[0]})" if want else ""
        raise PlotError(f"{model_path}: the model has {d} feature{named}; a plot needs at "
                        "least two")
    X, names = read_matrix(data_path)
    if want and Path(data_path).suffix != ".npz":
        missing = [n for n in want if n not in names]
        if missing:
            raise PlotError(
                f"{data_path}: no numeric column {missing[0]!r}: {model_path} was fitted on "
                f"{', '.join(want)}; the file's numeric columns are {', '.join(names)}")
        X, names = X[:, [names.index(n) for n in want]], want
    elif X.shape[1] != d:
        raise PlotError(f"{data_path}: {X.shape[1]} features, but {model_path} was fitted "
                        f"on {d}{(' (' + ', '.join(want) + ')') if want else ''}")
    elif want:
        names = want
    if X.shape[0] == 0:
        raise PlotError(f"{data_path}: no rows")
    return X, names
