"""What every figure shares: a new figure, the colours, number formats."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

# tab10 without its red, which marks what is below a threshold.
COMPONENT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                    "#7f7f7f", "#bcbd22", "#17becf")
FLAG_COLOR = "#d62728"
THRESHOLD_COLOR = "#d62728"
SWAP_COLOR = "#555555"


class PlotFigure(Figure):
    """A matplotlib Figure that a notebook shows inline without pyplot.

    Figures are built without pyplot (nothing is registered globally, no GUI
    backend is needed, a script or a test draws headless). IPython shows a
    figure it was not told about through ``_repr_png_``.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def new_figure(width: float, height: float) -> PlotFigure:
    """A figure of ``width`` x ``height`` inches with constrained layout."""
    return PlotFigure(figsize=(width, height), layout="constrained")


def component_color(c: int) -> str:
    """The colour of component ``c`` (they repeat past nine)."""
    return COMPONENT_COLORS[c % len(COMPONENT_COLORS)]
