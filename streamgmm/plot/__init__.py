"""Pictures of a mixture and of a stream, as matplotlib Figures (the ``plot`` extra).

- :func:`mixture`: the data in two features or the first two principal axes,
  each component's 1-, 2- and 3-sigma ellipses, log-density contours, and
  the points below a threshold;
- :func:`covariance_types`: the four covariance types fitted on the same data;
- :func:`scores_timeline`: log-density over a stream with the rolling
  threshold, the alerts and the model swaps (from a detector's output, an
  audit file with scores or an alerts file);
- :func:`detection_ap`: the detection evaluation's average precision per data
  set, streamgmm against the references.

Figures are built without pyplot: ``fig.savefig("fig.png")`` writes one, and
a notebook shows one inline. matplotlib is needed here only: install it with
``pip install 'streamgmm[plot]'``. Nothing else in streamgmm imports this
package.
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'streamgmm[plot]'"

try:
    import matplotlib  # noqa: F401
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(f"streamgmm.plot needs matplotlib: {INSTALL_HINT}") from exc

from streamgmm.plot.detection import detection_ap, read_detection_results  # noqa: E402
from streamgmm.plot.mixture import covariance_types, mixture  # noqa: E402
from streamgmm.plot.scores_files import read_timeline  # noqa: E402
from streamgmm.plot.timeline import Timeline, scores_timeline  # noqa: E402

__all__ = [
    "INSTALL_HINT",
    "Timeline",
    "covariance_types",
    "detection_ap",
    "mixture",
    "read_detection_results",
    "read_timeline",
    "scores_timeline",
]
