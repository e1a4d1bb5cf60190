"""The rolling threshold: an exact percentile of the scores of the last W events."""

from __future__ import annotations

import numpy as np


class RollingThreshold:
    """Scores of the last ``window`` events in a ring buffer, and their percentiles.

    The threshold is ``numpy.percentile(window_scores, 100 * contamination)``
    (linear interpolation), computed exactly from one sort per batch, so its
    cost is O(W log W) per batch whatever the number of events seen.

    Examples
    --------
    >>> rt = RollingThreshold(window=5, contamination=0.2)
    >>> rt.push(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    >>> rt.values().tolist()
    [2.0, 3.0, 4.0, 5.0, 6.0]
    >>> float(rt.threshold())
    2.8
    """

    def __init__(self, window: int, contamination: float):
        if window < 1:
            raise ValueError(f"window: expected an integer >= 1, got {window!r}")
        if not 0.0 < contamination < 1.0:
            raise ValueError(f"contamination: expected a number in (0, 1), got {contamination!r}")
        self.window = int(window)
        self.contamination = float(contamination)
        self._buf = np.empty(self.window)
        self._next = 0
        self._count = 0
        self._sorted: np.ndarray | None = None

    def __len__(self) -> int:
        return self._count

    def push(self, scores: np.ndarray) -> None:
        """Append scores (NaN ones are skipped), dropping the oldest beyond the window."""
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)][-self.window:]
        n = scores.size
        if n == 0:
            return
        end = self._next + n
        if end <= self.window:
            self._buf[self._next:end] = scores
        else:
            first = self.window - self._next
            self._buf[self._next:] = scores[:first]
            self._buf[: n - first] = scores[first:]
        self._next = end % self.window
        self._count = min(self._count + n, self.window)
        self._sorted = None

    def values(self) -> np.ndarray:
        """The window's scores, oldest first."""
        if self._count < self.window:
            return self._buf[: self._count].copy()
        return np.concatenate([self._buf[self._next:], self._buf[: self._next]])

    def replace(self, scores: np.ndarray) -> None:
        """Reset the window to ``scores`` (oldest first), e.g. after re-scoring on a model swap."""
        self._next = 0
        self._count = 0
        self.push(scores)

    def _sorted_values(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(self._buf[: self._count])
        return self._sorted

    def threshold(self) -> float:
        """The contamination percentile of the window (NaN when empty)."""
        return self.quantile(self.contamination)

    def quantile(self, level: float) -> float:
        """The ``level`` quantile (in [0, 1]) of the window (NaN when empty)."""
        if self._count == 0:
            return float("nan")
        s = self._sorted_values()
        # numpy.percentile's default (linear) rule on the sorted window.
        pos = min(max(level, 0.0), 1.0) * (s.size - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, s.size - 1)
        return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))

    def percentile_rank(self, scores: np.ndarray) -> np.ndarray:
        """Fraction of window scores strictly below each score, in [0, 1] (NaN when empty)."""
        if self._count == 0:
            return np.full(np.shape(scores), np.nan)
        s = self._sorted_values()
        return np.searchsorted(s, scores, side="left") / s.size

    def mean(self) -> float:
        """Mean score of the window (NaN when empty)."""
        return float(self._buf[: self._count].mean()) if self._count else float("nan")
