"""The detection evaluation as a figure: average precision per data set, streamgmm
against the references, in each order the events were fed.

The results file is what ``bench/eval_detection.py --json OUT`` writes::

    {"command": "...", "results": [
        {"dataset": "http", "order": "stored", "method": "streamgmm", "ap": 0.79,
         "auc": 0.999, "n": 567498, ...}, ...]}

Any set of method names and orders is drawn; ``ap`` may be null (a data set
whose events hold no anomaly has none).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from streamgmm.plot._style import new_figure

__all__ = ["detection_ap", "read_detection_results"]

OWN = "streamgmm"
OWN_COLOR = "#1f77b4"
REFERENCE_COLORS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                    "#bcbd22", "#17becf")
_KEYS = ("dataset", "order", "method")


def read_detection_results(path: str | os.PathLike[str]) -> list[dict]:
    """The rows of a results file; a ValueError names the file, the row and the field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path}: empty: no results to draw")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: bad JSON ({exc})") from None
    return check_results(doc, str(path))


def check_results(doc, where: str = "results") -> list[dict]:
    """Rows with a dataset, an order, a method and an AP (a number, or None)."""
    rows = doc.get("results") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise ValueError(f"{where}: expected a list of results (or an object with 'results')")
    if not rows:
        raise ValueError(f"{where}: no results to draw")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: result {i}: expected an object, got {row!r}")
        for key in _KEYS:
            if not isinstance(row.get(key), str) or not row[key]:
                raise ValueError(f"{where}: result {i}: {key}: expected a name, "
                                 f"got {row.get(key)!r}")
        ap = row.get("ap")
        if ap is not None and (not isinstance(ap, (int, float)) or isinstance(ap, bool)
                               or not 0.0 <= ap <= 1.0):
            raise ValueError(f"{where}: result {i} ({row['dataset']}, {row['order']}, "
                             f"{row['method']}): ap: expected a number in [0, 1] or null, "
                             f"got {ap!r}")
        out.append(dict(row))
    return out


def _names(rows: Sequence[dict], key: str) -> list[str]:
    """The distinct values of ``key`` in the order they first appear."""
    return list(dict.fromkeys(row[key] for row in rows))


def detection_ap(results, *, title: str | None = None, ncols: int = 3) -> Figure:
    """One panel per data set: a bar of average precision per method and order.

    Parameters
    ----------
    results : path, list of dict, or dict with "results"
        What ``bench/eval_detection.py --json`` writes (see the module doc).
        ``streamgmm`` comes first in its own colour; every other method is a
        reference, in the order the results name them.
    title : str, optional
    ncols : int, default=3
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        Each bar has gid ``"dataset|order|method"`` and height its AP.
    """
    if isinstance(results, (str, os.PathLike)):
        rows = read_detection_results(results)
    else:
        rows = check_results(results)
    datasets, orders = _names(rows, "dataset"), _names(rows, "order")
    methods = _names(rows, "method")
    methods = [m for m in methods if m == OWN] + [m for m in methods if m != OWN]
    colors = _colors(methods)
    cells = {tuple(row[k] for k in _KEYS): row for row in rows}
    ncols = max(1, min(ncols, len(datasets)))
    nrows = math.ceil(len(datasets) / ncols)
    fig = new_figure(4.2 * ncols, 3.3 * nrows + 0.9)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    capped: dict[tuple, list[str]] = {}
    for ax, dataset in zip(axes, datasets, strict=False):
        for method, order, n, most in _panel(ax, dataset, orders, methods, colors, cells):
            capped.setdefault((method, dataset, n, most), []).append(order)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("average precision")
    fig.legend(handles=[Patch(color=colors[m], label=m) for m in methods],
               loc="outside right upper", frameon=False, title="method")
    fig.suptitle(title or "Average precision per data set: streamgmm against the "
                 "references (prequential)", fontsize="large")
    if capped:
        fig.supxlabel("* on fewer events than the others: " + "; ".join(
            f"{m} on the first {n:,} of {most:,} events of {d} ({', '.join(o)} order)"
            for (m, d, n, most), o in capped.items()), fontsize="small", color="0.3")
    return fig


def _colors(methods: Sequence[str]) -> dict[str, str]:
    refs = [m for m in methods if m != OWN]
    colors = {m: REFERENCE_COLORS[i % len(REFERENCE_COLORS)] for i, m in enumerate(refs)}
    colors[OWN] = OWN_COLOR
    return colors


def _panel(ax, dataset: str, orders, methods, colors, cells) -> list[tuple]:
    """Bars of one data set; returns (method, order, n, most) of each method that saw
    fewer events than another (HST capped by --hst-max-events)."""
    width = 0.8 / len(methods)
    capped = []
    for o, order in enumerate(orders):
        present = [cells.get((dataset, order, m)) for m in methods]
        most = max((row.get("n") or 0 for row in present if row), default=0)
        for j, (method, row) in enumerate(zip(methods, present, strict=True)):
            if row is None:
                continue
            x = o - 0.4 + width * (j + 0.5)
            ap = row.get("ap")
            ap = float("nan") if ap is None else float(ap)
            short = bool(row.get("n")) and row["n"] < most
            if short:
                capped.append((method, order, int(row["n"]), int(most)))
            bar = ax.bar(x, 0.0 if math.isnan(ap) else ap, width * 0.92,
                         color=colors[method], edgecolor="none")[0]
            bar.set_gid(f"{dataset}|{order}|{method}")
            text = "n/a" if math.isnan(ap) else f"{ap:.2f}"
            ax.text(x, (0.0 if math.isnan(ap) else ap) + 0.015, text + ("*" if short else ""),
                    ha="center", va="bottom", fontsize=7, rotation=90 if len(methods) > 4
                    else 0)
    ax.set_xticks(range(len(orders)), [f"{order} order" for order in orders])
    ax.set_xlim(-0.5, len(orders) - 0.5)
    ax.set_ylim(0.0, 1.1)
    ax.set_title(dataset)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return capped
