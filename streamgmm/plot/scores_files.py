"""Timelines from what the daemon writes: an audit file with scores, or an alerts file.

- An audit file written with ``audit.scores: true`` holds every scored event
  (id, score, threshold, model version, alert flag; see
  :mod:`streamgmm.stream.audit`): the whole stream, in the order scored.
- An alerts file (JSON lines; the schema is in :mod:`streamgmm.stream.alerts`)
  holds the alerts only, each with its score, the threshold it fell below and
  the model version that scored it. Its horizontal axis is the events' time
  (``event_time``, else ``detected_at``, else the alerts' order), and a model
  swap is placed at the first alert the new model scored.

Duplicates that at-least-once delivery allows (a batch redone) are dropped by
id, the first kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from streamgmm.plot.timeline import Timeline
from streamgmm.stream.audit import read_audit_scores

__all__ = ["read_timeline"]


def read_timeline(path: str | os.PathLike[str]) -> Timeline:
    """The timeline in an audit file with scores or an alerts file (the kind is recognised)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    first = _first_line(path)
    if first is None:
        raise ValueError(f"{path}: empty: no events to draw")
    if first.lstrip().startswith("{"):
        return _from_alerts(path)
    if len(first.split("\t")) < 5:
        if "/" in first and not any(c in first for c in " ,;\t"):
            raise ValueError(
                f"{path}: an audit file of event ids only, without scores: run the daemon "
                "with audit.scores: true, or plot its alerts file")
        raise ValueError(
            f"{path}: line 1 holds no scores ({first[:60]!r}): expected an audit file "
            "written with audit.scores: true or an alerts file (JSON lines)")
    audit = read_audit_scores(path)
    return Timeline(audit.score, audit.threshold, audit.flagged, audit.model_version,
                    source=path.name)


def _first_line(path: Path) -> str | None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.rstrip("\n")
    return None


def _from_alerts(path: Path) -> Timeline:
    alerts = _read_alerts(path)
    scored = [a for a in alerts if a["score"] is not None and a["threshold"] is not None]
    if not scored:
        raise ValueError(f"{path}: no alert carries a score and a threshold: nothing to draw")
    x, label = _alert_times(scored)
    order = np.argsort(x, kind="stable")
    pick = [scored[i] for i in order]
    return Timeline(
        score=[a["score"] for a in pick], threshold=[a["threshold"] for a in pick],
        flagged=np.ones(len(pick), dtype=bool),
        model_version=[int(a.get("model_version") or 0) for a in pick],
        x=x[order], x_label=label, alerts_only=True, source=path.name)


def _read_alerts(path: Path) -> list[dict]:
    alerts, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number}: bad JSON ({exc})") from None
            if not isinstance(doc, dict) or "alert_id" not in doc:
                kind = "a dead letter" if isinstance(doc, dict) and "reason" in doc else \
                    "not an alert"
                raise ValueError(f"{path}: line {number}: {kind} (no 'alert_id'); "
                                 "expected streamgmm's alerts or an audit file with scores")
            for field in ("score", "threshold"):
                value = doc.get(field)
                if value is not None and not isinstance(value, (int, float)):
                    raise ValueError(f"{path}: line {number}: {field}: expected a number, "
                                     f"got {value!r}")
            if doc["alert_id"] not in seen:
                seen.add(doc["alert_id"])
                alerts.append(doc)
    return alerts


def _alert_times(alerts: list[dict]) -> tuple[np.ndarray, str]:
    for field, label in (("event_time", "event time (UTC)"),
                         ("detected_at", "detection time (UTC)")):
        values = [a.get(field) for a in alerts]
        if all(isinstance(v, str) for v in values):
            try:
                return np.array([v.rstrip("Z") for v in values], dtype="datetime64[ms]"), label
            except ValueError:
                continue
    return np.arange(len(alerts)), "alert (in the order written)"
