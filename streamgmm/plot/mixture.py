"""The mixture in a plane: the data, each component's 1-, 2- and 3-sigma ellipses,
log-density contours, and the points below a threshold; the four covariance
types side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

from streamgmm.model.base import check_array
from streamgmm.model.covariance import COVARIANCE_TYPES
from streamgmm.plot._style import FLAG_COLOR, component_color, new_figure
from streamgmm.plot.geometry import (
    Plane,
    ellipse,
    feature_plane,
    full_covariances,
    marginal_log_density,
    principal_plane,
    resolve_features,
)

__all__ = ["SIGMAS", "covariance_types", "mixture"]

#: Mahalanobis radii of the ellipses drawn for each component. In a plane a
#: radius r holds 1 - exp(-r^2 / 2) of the component's mass: 39 %, 86 %, 99 %.
SIGMAS = (1.0, 2.0, 3.0)
MAX_POINTS = 5000
_ELLIPSE_STYLES = ({"linewidth": 2.2, "linestyle": "-"}, {"linewidth": 1.6, "linestyle": "--"},
                   {"linewidth": 1.6, "linestyle": ":"})
GRID = 200


@dataclass
class _InPlane:
    """A mixture and its data mapped to a plane."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, 2)
    covs: np.ndarray  # (k, 2, 2)
    Z: np.ndarray  # (n, 2)


def mixture(gm, X, features=None, threshold: float | None = None, *,
            feature_names: Sequence[str] | None = None, title: str | None = None,
            max_points: int = MAX_POINTS, random_state: int = 0,
            ax: Axes | None = None) -> Figure:
    """Draw a fitted mixture over its data in two features or the first two principal axes.

    Each component is drawn as its ellipses of Mahalanobis radius 1, 2 and 3
    in the plane (they hold 39 %, 86 % and 99 % of the component's mass there),
    its weight in the legend; contour lines show the log-density of the
    plane's marginal mixture. That marginal is exact, not an approximation:
    the plane is a linear map of the features, the image of a Gaussian
    N(mu, Sigma) under a linear map A is N(mu A, A^T Sigma A), and the image of
    the mixture is the mixture of the images with the same weights. Diagonal,
    spherical and tied covariances are expanded to full matrices first.

    Points whose log-density under the whole model (``gm.score_samples``, in
    all the features) is below ``threshold`` are marked: a point can stand out
    in the full space and not in the plane, or the other way round.

    Parameters
    ----------
    gm : fitted GaussianMixture or OnlineGaussianMixture
        Any object with ``covariance_type``, ``weights_``, ``means_``,
        ``covariances_``, ``predict`` and ``score_samples`` (scikit-learn's
        GaussianMixture too).
    X : array-like of shape (n_samples, n_features)
        The data to draw, in the model's features.
    features : pair of int or str, or "a,b", optional
        The two features to draw; None: the first two principal axes of X
        (with standardised features).
    threshold : float, optional
        Mark the points whose log-density is below it (for a model written by
        ``streamgmm fit``, the training percentile: ``streamgmm plot`` looks it
        up for ``--contamination``).
    feature_names : sequence of str, optional
        Names of the features; default: the model file's, else ``x0, x1, ...``.
    title : str, optional
    max_points : int, default=5000
        At most this many unmarked points are drawn (a seeded random subset);
        every marked point is drawn.
    random_state : int, default=0
        Seed of that subset.
    ax : matplotlib Axes, optional
        Draw into it; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from streamgmm import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(5, 1, (300, 3))])
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> fig = mixture(gm, X, threshold=np.percentile(gm.score_samples(X), 2))
    >>> len([p for p in fig.axes[0].patches if p.get_gid() == "ellipse"])
    6
    """
    X = check_array(X)
    _check_model(gm, X.shape[1])
    names = _feature_names(gm, X.shape[1], feature_names)
    plane = _plane(X, features, names)
    if ax is None:
        fig = new_figure(9.0, 6.5)
        ax = fig.add_subplot()
    draw(ax, gm, X, plane, threshold, max_points=max_points, random_state=random_state)
    ax.set_title(title or _title(gm, X))
    return ax.get_figure()


def covariance_types(X, n_components: int = 3, *, features=None,
                     contamination: float | None = 0.02,
                     feature_names: Sequence[str] | None = None, title: str | None = None,
                     max_points: int = MAX_POINTS, **params) -> Figure:
    """Fit a GaussianMixture of each covariance type on X and draw the four side by side.

    The panels share the plane (the same two features or principal axes) and
    the axes' ranges. In each, the points below the ``contamination``
    percentile of that model's own training scores are marked (what
    ``streamgmm fit`` stores and ``--contamination`` looks up); None marks
    nothing. ``params`` go to each GaussianMixture (``random_state`` defaults
    to 0); each panel's title gives its BIC (lower is better).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from streamgmm.model.gmm import GaussianMixture

    X = check_array(X)
    names = [str(n) for n in feature_names] if feature_names is not None else \
        [f"x{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise ValueError(f"feature_names: expected {X.shape[1]} names, got {len(names)}")
    plane = _plane(X, features, names)
    params = {"random_state": 0, **params}
    models = [GaussianMixture(n_components, covariance_type=kind, **params).fit(X)
              for kind in COVARIANCE_TYPES]
    boxes = [_limits(project(gm, plane, X)) for gm in models]
    limits = ((min(b[0][0] for b in boxes), max(b[0][1] for b in boxes)),
              (min(b[1][0] for b in boxes), max(b[1][1] for b in boxes)))
    fig = new_figure(13.0, 11.5)
    axes = fig.subplots(2, 2).ravel()
    for ax, gm in zip(axes, models, strict=True):
        scores = gm.score_samples(X)
        threshold = (None if contamination is None
                     else float(np.percentile(scores, 100 * contamination)))
        drawn = draw(ax, gm, X, plane, threshold, limits=limits, max_points=max_points,
                     colorbar=False, full_legend=False)
        ax.set_title(f"{gm.covariance_type}: BIC {gm.bic(X):,.0f}, mean log-likelihood "
                     f"{scores.mean():.2f}" + (f", {drawn['n_flagged']} marked"
                                               if threshold is not None else ""))
        ax.label_outer()
    fig.legend(handles=_key(), loc="outside lower center", ncol=3, fontsize="small",
               frameon=False)
    fig.suptitle(title or f"Four covariance types, {n_components} components each, "
                 f"on {X.shape[0]:,} points in {X.shape[1]} features", fontsize="large")
    return fig


def _check_model(gm, n_features: int) -> None:
    if not hasattr(gm, "means_"):
        raise ValueError("gm: the model is not fitted")
    d = gm.means_.shape[1]
    if d < 2:
        raise ValueError(f"gm: the model has {d} feature; a plane needs at least two")
    if n_features != d:
        raise ValueError(f"X: has {n_features} features, but the model was fitted on {d}")


def _feature_names(gm, d: int, names: Sequence[str] | None) -> list[str]:
    if names is None:
        names = getattr(gm, "extras_", {}).get("feature_names")
    if names is None:
        names = getattr(gm, "feature_names_in_", None)
    names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names: expected {d} names, got {len(names)}")
    return names


def _plane(X: np.ndarray, features, names: Sequence[str]) -> Plane:
    if X.shape[1] < 2:
        raise ValueError(f"X: has {X.shape[1]} feature; a plane needs at least two")
    if features is None:
        return principal_plane(X, names)
    return feature_plane(X.shape[1], resolve_features(features, names), names)


def _title(gm, X: np.ndarray) -> str:
    k = gm.means_.shape[0]
    return (f"{type(gm).__name__}: {k} component{'s' if k > 1 else ''}, "
            f"{gm.covariance_type} covariance\n{X.shape[0]:,} points in "
            f"{X.shape[1]} features")


def project(gm, plane: Plane, X: np.ndarray) -> _InPlane:
    """The mixture's components and the data in the plane."""
    k, d = gm.means_.shape
    full = full_covariances(gm.covariance_type, gm.covariances_, k, d)
    return _InPlane(np.asarray(gm.weights_, dtype=np.float64), plane.points(gm.means_),
                    plane.covariances(full), plane.points(X))


def draw(ax: Axes, gm, X: np.ndarray, plane: Plane, threshold: float | None, *,
         limits=None, max_points: int = MAX_POINTS, random_state: int = 0,
         colorbar: bool = True, full_legend: bool = True) -> dict:
    """Draw the mixture in ``plane`` into ``ax``; returns what was drawn (counts).

    ``limits``: the axes' ranges ((x0, x1), (y0, y1)); default: from this
    mixture and data. ``full_legend``: the whole key beside the axes, else the
    components and marked points inside (several panels share one key).
    """
    m = project(gm, plane, X)
    flagged = (np.zeros(X.shape[0], dtype=bool) if threshold is None
               else gm.score_samples(X) < threshold)
    labels = np.asarray(gm.predict(X))
    (x0, x1), (y0, y1) = limits or _limits(m)
    _contours(ax, m, (x0, x1, y0, y1), colorbar)
    shown = _points(ax, m.Z, labels, flagged, max_points, random_state)
    n_plain = int(np.sum(~flagged))
    if threshold is not None:
        ax.scatter(m.Z[flagged, 0], m.Z[flagged, 1], s=30, marker="x", linewidths=1.3,
                   color=FLAG_COLOR, zorder=5, gid="flagged",
                   label=f"log p(x) < {threshold:.2f} in all {X.shape[1]} features: "
                         f"{int(flagged.sum()):,}")
    _ellipses(ax, m)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(plane.labels[0])
    ax.set_ylabel(plane.labels[1])
    beyond = int(np.sum((m.Z[:, 0] < x0) | (m.Z[:, 0] > x1) | (m.Z[:, 1] < y0)
                        | (m.Z[:, 1] > y1)))
    _legend(ax, m, shown, n_plain, beyond, full_legend)
    return {"n_flagged": int(flagged.sum()), "n_shown": shown, "n_beyond": beyond}


def _limits(m: _InPlane) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axes' ranges: the 3-sigma ellipses and the data, unless a few far points would
    squash the rest (then the central 99 % of them)."""
    r = max(SIGMAS)
    half = r * np.sqrt(np.stack([m.covs[:, 0, 0], m.covs[:, 1, 1]], axis=1))
    lo = np.minimum((m.means - half).min(axis=0), np.percentile(m.Z, 0.5, axis=0))
    hi = np.maximum((m.means + half).max(axis=0), np.percentile(m.Z, 99.5, axis=0))
    full_lo, full_hi = np.minimum(lo, m.Z.min(axis=0)), np.maximum(hi, m.Z.max(axis=0))
    squash = (full_hi - full_lo) > 2.0 * (hi - lo)
    lo, hi = np.where(squash, lo, full_lo), np.where(squash, hi, full_hi)
    pad = 0.05 * np.maximum(hi - lo, 1e-12)
    lo, hi = lo - pad, hi + pad
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _contours(ax: Axes, m: _InPlane, box: tuple[float, float, float, float],
              colorbar: bool) -> None:
    x0, x1, y0, y1 = box
    gx, gy = np.meshgrid(np.linspace(x0, x1, GRID), np.linspace(y0, y1, GRID))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    logp = marginal_log_density(grid, m.weights, m.means, m.covs).reshape(gx.shape)
    # From the density's peak down to where 99 % of the points lie above.
    at_points = marginal_log_density(m.Z, m.weights, m.means, m.covs)
    top, bottom = float(np.max(logp)), float(np.percentile(at_points, 1.0))
    levels = [v for v in MaxNLocator(8).tick_values(bottom, top) if bottom <= v < top]
    if len(levels) < 2:
        levels = list(np.linspace(bottom, top, 6)[:-1])
    # Grey, from mid grey (lowest level) to black: the colours belong to the components.
    span = levels[-1] - levels[0]
    cs = ax.contour(gx, gy, logp, levels=levels, cmap="Greys", linewidths=0.8, zorder=2,
                    vmin=levels[0] - 0.8 * span, vmax=levels[-1] + 0.1 * span)
    cs.set_gid("contours")
    if colorbar:
        bar = ax.get_figure().colorbar(cs, ax=ax, location="bottom", shrink=0.6, aspect=40)
        bar.set_label("log-density of the mixture in this plane")
    else:
        ax.clabel(cs, fontsize=7, fmt="%.3g")


def _points(ax: Axes, Z: np.ndarray, labels: np.ndarray, flagged: np.ndarray,
            max_points: int, random_state: int) -> int:
    """The unmarked points, coloured by component, at most ``max_points`` of them;
    returns how many were drawn."""
    rest = np.flatnonzero(~flagged)
    if rest.size > max_points:
        rest = np.sort(np.random.default_rng(random_state).choice(rest, max_points,
                                                                  replace=False))
    colors = [component_color(int(c)) for c in labels[rest]]
    ax.scatter(Z[rest, 0], Z[rest, 1], s=6, c=colors, alpha=0.35, linewidths=0,
               zorder=1, gid="points", rasterized=True)
    return int(rest.size)


def _ellipses(ax: Axes, m: _InPlane) -> None:
    for c in range(m.weights.shape[0]):
        color = component_color(c)
        for r, style in zip(SIGMAS, _ELLIPSE_STYLES, strict=True):
            w, h, angle = ellipse(m.covs[c], r)
            ax.add_patch(Ellipse(tuple(m.means[c]), w, h, angle=angle, fill=False,
                                 edgecolor=color, zorder=4, gid="ellipse", **style))
    ax.scatter(m.means[:, 0], m.means[:, 1], marker="+", s=90, linewidths=1.6,
               color="black", zorder=6, gid="means")


def _key() -> list[Line2D]:
    """What the line styles and markers mean, the same in every panel."""
    handles = []
    for r, style in zip(SIGMAS, _ELLIPSE_STYLES, strict=True):
        mass = 100 * (1 - np.exp(-r * r / 2))
        handles.append(Line2D([], [], color="0.25", label=f"Mahalanobis radius {r:g} "
                              f"({mass:.0f}% of a component)", **style))
    handles.append(Line2D([], [], color="black", marker="+", linestyle="none",
                          markersize=9, label="component means"))
    handles.append(Line2D([], [], color="0.4", linewidth=0.8,
                          label="log-density contours (the plane's marginal)"))
    return handles


def _legend(ax: Axes, m: _InPlane, shown: int, n: int, beyond: int, full: bool) -> None:
    components = [Line2D([], [], color=component_color(c), linewidth=2,
                         label=f"component {c + 1}: weight {w:.2f}")
                  for c, w in enumerate(m.weights)]
    points = (f"data: {n:,} points" if shown == n else
              f"data: {shown:,} of {n:,} points (a random subset)")
    if beyond:
        points += f" ({beyond:,} beyond the frame)"
    data = [Line2D([], [], color="0.5", marker="o", linestyle="none", markersize=4,
                   label=points)]
    data += [h for h in ax.collections if h.get_gid() == "flagged"]
    if full:
        ax.legend(handles=components + _key() + data, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small",
                  frameon=False)
    else:
        ax.legend(handles=components + data, loc="best", fontsize="x-small", framealpha=0.85)
