"""The evaluation summary of the generated stream: precision and recall of the alerts.

The generated card stream injects fraud with labels the detector never sees
(the decoder reads only the configured features); a run on it ends with how
the alerts compare with those labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamgmm.stream.file_io import GenerateSource
from streamgmm.stream.records import Record

__all__ = ["Evaluation", "format_summary"]


class Evaluation:
    """Precision and recall of the alerts against the generated stream's fraud labels.

    The labels never reach the detector: the decoder reads only the configured
    features. Only events scored by a ready model count (the warm-up events
    are not scored).
    """

    def __init__(self, source: GenerateSource) -> None:
        self.source = source
        self.scored = 0
        self.flagged = 0
        self.true_positives = 0
        self.frauds: Counter[str] = Counter()
        self.caught: Counter[str] = Counter()

    def __call__(self, records: Sequence[Record], scored: np.ndarray, flagged: np.ndarray) -> None:
        """Count one batch: ``scored`` and ``flagged`` index ``records``."""
        patterns = self.source.pop_labels([records[i] for i in scored])
        hit = set(flagged.tolist())
        self.scored += len(scored)
        self.flagged += len(hit)
        for i, pattern in zip(scored.tolist(), patterns, strict=True):
            if pattern is None:
                continue
            self.frauds[pattern] += 1
            if i in hit:
                self.caught[pattern] += 1
                self.true_positives += 1

    def summary(self) -> dict[str, Any]:
        """Precision, recall and recall per fraud pattern, as plain values."""
        n_fraud = sum(self.frauds.values())
        return {
            "evaluated": self.scored,
            "frauds": n_fraud,
            "precision": round(self.true_positives / self.flagged, 4) if self.flagged else None,
            "recall": round(self.true_positives / n_fraud, 4) if n_fraud else None,
            "recall_by_pattern": {
                p: round(self.caught[p] / n, 4) for p, n in sorted(self.frauds.items())
            },
        }


def format_summary(fields: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    lines = [
        "",
        "streamgmm summary",
        f"  events        {fields['events']} in {fields['seconds']:.1f} s "
        f"({fields['events_per_s']:.0f} events/s)",
        f"  alerts        {fields['alerts']}",
        f"  dead letters  {fields['dead_letters']}",
    ]
    if fields.get("replayed"):
        lines.append(f"  replayed      {fields['replayed']} (learned again after restart, "
                     "no alerts)")
    if "precision" in fields:
        pct = _percent
        lines += [
            f"  evaluated     {fields['evaluated']} events after warm-up, "
            f"{fields['frauds']} of them fraud (labels injected by the generator)",
            f"  precision     {pct(fields['precision'])}  (alerts that are fraud)",
            f"  recall        {pct(fields['recall'])}  (fraud that was alerted)",
        ]
        for pattern, recall in fields["recall_by_pattern"].items():
            lines.append(f"    {pattern:<18} recall {pct(recall)}")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
