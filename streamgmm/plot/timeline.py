"""A stream over time: each event's log-density, the rolling threshold, the
alerts, the warm-up and the model swaps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from streamgmm.plot._style import FLAG_COLOR, SWAP_COLOR, THRESHOLD_COLOR, new_figure

__all__ = ["Timeline", "scores_timeline"]


@dataclass
class Timeline:
    """What a detector said of each event of a stream, in the order scored.

    Attributes
    ----------
    score, threshold : ndarray of float64, shape (n,)
        Log-density and the rolling threshold it was compared with (NaN for
        events of the warm-up, which no model scored).
    flagged : ndarray of bool, shape (n,)
        Whether each event was alerted.
    model_version : ndarray of int, shape (n,), optional
        Version of the model that scored each event (0 before the first
        model); a change between two scored events is a model swap.
    x : ndarray of shape (n,), optional
        Where each event goes on the horizontal axis (numbers or
        ``datetime64``); default: its position in the stream.
    x_label : str
    alerts_only : bool
        The events are alerts only (an alerts file): no mean log-density of
        the stream can be drawn from them.
    source : str
        What the events were read from (shown in the title).
    """

    score: np.ndarray
    threshold: np.ndarray
    flagged: np.ndarray
    model_version: np.ndarray | None = None
    x: np.ndarray | None = None
    x_label: str = "event (in the order scored)"
    alerts_only: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64)
        self.threshold = np.asarray(self.threshold, dtype=np.float64)
        self.flagged = np.asarray(self.flagged, dtype=bool)
        n = self.score.shape[0]
        if self.model_version is not None:
            self.model_version = np.asarray(self.model_version, dtype=np.int64)
        self.x = np.arange(n) if self.x is None else np.asarray(self.x)
        for name in ("threshold", "flagged", "model_version", "x"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},) like score, got {value.shape}")

    @classmethod
    def from_detections(cls, batches: Iterable, source: str = "") -> Timeline:
        """The timeline of ``AnomalyDetector.process`` results, one per batch, in order."""
        batches = list(batches)
        if not batches:
            raise ValueError("detections: no batches")
        return cls(
            score=np.concatenate([b.score for b in batches]),
            threshold=np.concatenate([b.threshold for b in batches]),
            flagged=np.concatenate([b.is_anomaly for b in batches]),
            model_version=np.concatenate([np.full(b.score.shape[0], b.model_version)
                                          for b in batches]),
            source=source,
        )

    def swaps(self) -> np.ndarray:
        """Indices of the first event scored by each new model (a swap after a refit)."""
        if self.model_version is None:
            return np.array([], dtype=np.int64)
        v = self.model_version
        change = np.flatnonzero(v[1:] != v[:-1]) + 1
        return change[v[change - 1] > 0]  # 0 -> 1 is the warm-up's model, not a swap


MAX_POINTS = 100_000


def scores_timeline(timeline, *, title: str | None = None, window: int | None = None,
                    max_points: int = MAX_POINTS, ax: Axes | None = None) -> Figure:
    """Draw log-density over a stream with the rolling threshold, alerts and model swaps.

    A model swap (a refit that replaced the model, seen as a new model version)
    is a dashed vertical line; a refit that kept the model changes nothing the
    events carry and is not drawn. Scores far below the rest are marked at the
    bottom edge rather than squash the picture.

    Parameters
    ----------
    timeline : Timeline, or a sequence of Detections
        What to draw: a :class:`Timeline` (:func:`streamgmm.plot.read_timeline`
        reads one from an audit file with scores or an alerts file), or the
        results of ``AnomalyDetector.process`` over a stream, batch by batch.
    title : str, optional
    window : int, optional
        Events in the rolling mean of the log-density; default about 2 % of
        the stream (50 to 1,000).
    max_points : int, default=100,000
        At most this many events that were not alerted are drawn as points (a
        seeded random subset); the mean, the threshold and the alerts use all.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
        The threshold is the line with gid ``"threshold"``, the alerts the
        points with gid ``"alerts"``, the swaps the vertical lines with gid
        ``"model-swap"``.
    """
    t = timeline if isinstance(timeline, Timeline) else Timeline.from_detections(timeline)
    finite = np.isfinite(t.score)
    if not finite.any():
        raise ValueError(f"{t.source or 'timeline'}: no scores to draw (only warm-up events)")
    if ax is None:
        fig = new_figure(12.0, 5.5)
        ax = fig.add_subplot()
    _warmup(ax, t, finite)
    if not t.alerts_only:
        _points(ax, t, finite, max_points)
        _rolling_mean(ax, t, finite, window)
    _threshold(ax, t)
    ax.scatter(t.x[t.flagged], t.score[t.flagged], s=16, color=FLAG_COLOR, zorder=4,
               linewidths=0, gid="alerts", label=f"alerts: {int(t.flagged.sum()):,}")
    _limits(ax, t, finite)
    _swaps(ax, t)
    ax.set_xlabel(t.x_label)
    ax.set_ylabel("log-density  log p(x)")
    ax.grid(True, alpha=0.25)
    ax.set_title(title or _title(t, finite))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize="small",
              frameon=False, markerscale=1.6)
    return ax.get_figure()


def _title(t: Timeline, finite: np.ndarray) -> str:
    swaps = t.swaps().size
    text = "" if t.alerts_only else f"{int(finite.sum()):,} events scored, "
    text += f"{int(t.flagged.sum()):,} alerts, {swaps} model swap{'s' if swaps != 1 else ''}"
    return f"{t.source}: {text}" if t.source else text


def _warmup(ax: Axes, t: Timeline, finite: np.ndarray) -> None:
    first = int(np.argmax(finite))
    if first > 0 and not t.alerts_only:
        ax.axvspan(t.x[0], t.x[first], color="0.85", alpha=0.6, linewidth=0, zorder=0,
                   gid="warmup", label=f"warm-up: {first:,} events, no model yet")


def _points(ax: Axes, t: Timeline, finite: np.ndarray, max_points: int) -> None:
    rows = np.flatnonzero(finite & ~t.flagged)
    label = "log-density of each event"
    if rows.size > max_points:
        label += f" (a random {max_points:,} of {rows.size:,})"
        rows = np.sort(np.random.default_rng(0).choice(rows, max_points, replace=False))
    ax.scatter(t.x[rows], t.score[rows], s=3, color="0.45", alpha=0.45, linewidths=0,
               rasterized=True, gid="scores", label=label)


def _rolling_mean(ax: Axes, t: Timeline, finite: np.ndarray, window: int | None) -> None:
    scores = t.score[finite]
    w = window or int(np.clip(scores.size // 50, 50, 1000))
    w = max(1, min(w, scores.size))
    c = np.concatenate([[0.0], np.cumsum(scores)])
    n = np.arange(1, scores.size + 1)
    lo = np.maximum(n - w, 0)
    mean = (c[n] - c[lo]) / (n - lo)  # the mean of the last w events (fewer at the start)
    ax.plot(t.x[finite], mean, color="#1f77b4", linewidth=1.6, zorder=3, gid="mean",
            label=f"mean log-density, last {w:,} events")


def _threshold(ax: Axes, t: Timeline) -> None:
    ok = np.isfinite(t.threshold)
    label = "threshold at each alert" if t.alerts_only else "rolling threshold"
    ax.plot(t.x[ok], t.threshold[ok], drawstyle="steps-post", color=THRESHOLD_COLOR,
            linewidth=1.4, zorder=3, gid="threshold", label=label)


def _limits(ax: Axes, t: Timeline, finite: np.ndarray) -> None:
    """Vertical range: every score, unless very low ones would squash the rest: then as
    far below the lowest threshold as the highest score is above it, and the scores
    beyond are marked at the bottom edge."""
    scores = t.score[finite]
    thr = t.threshold[np.isfinite(t.threshold)]
    top, bottom = float(scores.max()), float(scores.min())
    if thr.size:
        low = float(thr.min()) - max(top - float(thr.min()), 1e-9)
    else:
        low = float(np.percentile(scores, 1.0))
    bottom = max(bottom, min(low, float(np.percentile(scores, 50.0))))
    pad = 0.05 * max(top - bottom, 1e-9)
    y0, y1 = bottom - pad, top + pad
    ax.set_ylim(y0, y1)
    below = finite & (t.score < y0)
    if below.any():
        ax.scatter(t.x[below], np.full(int(below.sum()), y0), marker="v", s=22,
                   color=FLAG_COLOR, alpha=0.7, clip_on=False, zorder=5, gid="beyond",
                   label=f"{int(below.sum()):,} below the frame "
                         f"(lowest {float(t.score[below].min()):,.1f})")


def _swaps(ax: Axes, t: Timeline) -> None:
    for n, i in enumerate(t.swaps()):
        ax.axvline(t.x[i], color=SWAP_COLOR, linestyle="--", linewidth=1.0, zorder=2,
                   gid="model-swap", label="model swap (a refit replaced the model)"
                   if n == 0 else None)
        ax.annotate(f"v{t.model_version[i]}", (t.x[i], 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -2), textcoords="offset points", va="top", fontsize="x-small",
                    color=SWAP_COLOR)
