"""The learning gate and the burst hold: which scored events the model learns from.

In the manner of River's ``QuantileFilter(detector, q,
protect_anomaly_detector=True)``, the gate sits between the scores and the
learner: events scoring below the ``trim`` percentile of the window are held
out of learning and out of refits, so a burst of fraud cannot teach the model
that fraud is normal. Unlike River's global quantile, the percentile is of the
rolling window, and a surge of held events freezes it (the hold) until the
surge is over, or turns out not to be a burst at all.

Choosing ``trim``: ``contamination`` is the alert budget; ``trim`` is how much
of the stream is not taken as normal. Robust estimates need the trimmed share
to exceed the share of anomalous events: a stream with more anomalies than the
alerts should name (a 5 % fraud rate, one alert per 200 events) learns them as
normal unless ``trim`` is set above that rate. It keeps out anomalies that are
scattered or spread wide; a compact group that recurs all over the window is
taken back by refits as a mode of its own, as a small legitimate mode would be
(``groups.py``: such a mode would otherwise be flagged, never learned, and
flagged for good). Trimming more than the stream needs costs the model its
tails and small modes (they are not learned), so it stays at
``contamination`` unless the rate is known to be higher. At most 0.25: a
quarter trimmed is the usual bound of robust estimates, and the window must
keep room to tell a surge of low scores, and a change of regime, from the
trimmed share. Novelty mode ignores it: its reference is clean, and it does
not learn.
"""

from __future__ import annotations

import numpy as np

from streamgmm.detect.threshold import RollingThreshold
from streamgmm.detect.window import FeatureWindow

# Share of the window's scored events (those the model was not fitted on) that
# events kept out of learning may reach before they are taken as a change of
# regime rather than a burst of anomalies: half, when they are as many as the rest.
REGIME_SHARE = 0.5
# Held events spread over this share of the window's tenths are a recurring
# pattern or a partial change of the stream, not a burst.
SPREAD_SHARE = 0.75


class LearningGate:
    """The score below which an event is kept out of learning, with the burst hold.

    Parameters
    ----------
    trim_level : float
        The share of the window kept out of learning (``trim``, or
        ``contamination`` when unset).
    contamination : float
        The alert budget; the least margin of a surge (``surge_margin``).
    protect : bool, default=True
        Keep held events out of the online update (``learn_from_anomalies``
        False); they stay out of refits either way.

    Attributes
    ----------
    hold : float or None
        The gate frozen at the start of a surge; None when there is none.
    first_scored : int
        Sequence number of the first event scored by a model not fitted on it
        (the first after the warm-up): the window's older events are in-sample.
    """

    def __init__(self, trim_level: float, contamination: float, protect: bool = True) -> None:
        self.trim_level = trim_level
        self.contamination = contamination
        self.protect = protect
        self.hold: float | None = None
        self.first_scored = 0

    def level(self, threshold: RollingThreshold, frozen: float | None = None) -> float:
        """The gate: the ``trim_level`` quantile of the window's scores.

        About that share of the window is then kept out of learning; when many
        more events score low (``surge_margin`` more), the window's percentile
        would soon sit inside them and let the rest of them in: a burst of
        1,000 near-identical attacks would teach the model that it is normal.
        So while such a surge lasts, the gate stays where it was when the
        surge began (``hold``). ``frozen``: a novelty threshold, fixed.
        """
        if self.hold is not None:
            return self.hold
        if frozen is not None:
            return frozen
        return threshold.quantile(self.trim_level)

    def weights(self, held: np.ndarray) -> np.ndarray | None:
        """Per-event learning weights (n,) for the online update; None: all learned."""
        return (~held).astype(np.float64) if self.protect else None

    def surge_margin(self, n: int) -> float:
        """How far above the trimmed share the held events may go before a hold
        starts: ``contamination``, or with a larger trimmed share at least three
        binomial standard deviations of the held count in a window of ``n`` (a
        large trimmed share varies more than a small budget from window to
        window, and a clean stream must not look like a surge)."""
        t = self.trim_level
        if t == self.contamination:
            return self.contamination
        return max(self.contamination, 3.0 * np.sqrt(t * (1.0 - t) / max(n, 1)))

    def after_batch(self, window: FeatureWindow, level: float) -> bool:
        """Start, keep or end a hold after a batch scored against ``level``;
        True when what was held is taken as normal and a refit should come soon.

        A hold ends when the held events leave the window (the burst is over),
        or when they are not a burst: when they fill ``REGIME_SHARE`` of the
        window's scored events (an abrupt change of regime): they are taken as
        normal, the gate returns to its percentile and a refit comes next.
        Scored events, not the whole window: the warm-up's events were fitted,
        so few of them are held (its lowest-scoring trimmed share), and early
        on they would hide a change that every fresh event shows (the warm-up
        of a card stream that began at midnight has no evening in it). This is
        judged before a hold starts, so a change seen in the first batches
        after the warm-up never freezes the gate at the warm-up's threshold.
        Held events spread over the window rather than bunched in time (more
        than the trimmed share plus its margin in ``SPREAD_SHARE`` of its
        tenths) are a recurring pattern, or a part of the traffic that
        changed: they are taken as normal too, except in tenths that are
        mostly held (a burst still in the window stays out).
        """
        n, held = len(window), window.unlearned()
        budget = self.trim_level + self.surge_margin(n)
        if held <= budget * n:
            self.hold = None
        elif self._changed_regime(window):
            window.mark_learned()
            self.hold = None
            return True
        elif self.hold is None:
            self.hold = level
        else:
            share = _held_by_tenth(window)
            if np.mean(share > budget) >= SPREAD_SHARE:
                window.mark_learned(np.repeat(share <= REGIME_SHARE, _tenths(window)))
                return True
        return False

    def carry_over(self, old_scores: np.ndarray, threshold: RollingThreshold) -> None:
        """Move a hold onto a re-scored window (a model swap) by rank: the same
        share of the window stays below it."""
        if self.hold is not None:
            self.hold = threshold.quantile(np.mean(old_scores < self.hold))

    def _changed_regime(self, window: FeatureWindow) -> bool:
        """Whether held events are ``REGIME_SHARE`` of the window's scored events."""
        scored, held = window.count_since(self.first_scored)
        return held >= REGIME_SHARE * scored


def _tenths(window: FeatureWindow) -> np.ndarray:
    """Sizes of the window's tenths, oldest first."""
    return np.diff(np.linspace(0, len(window), 11).astype(int))


def _held_by_tenth(window: FeatureWindow) -> np.ndarray:
    """Share of held events in each tenth of the window, oldest first."""
    sizes = _tenths(window)
    held = ~window.learned_ordered()
    return np.add.reduceat(held, np.r_[0, np.cumsum(sizes)[:-1]]) / np.maximum(sizes, 1)
