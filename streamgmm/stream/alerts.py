"""Alerts and dead letters: their schema, their ids, and how they are written.

Alert schema
------------
Each alert is one JSON object (one line in a file or on stdout, one record
value on a Kafka topic, keyed by the event key)::

    {
      "alert_id": "transactions/3/118204",
      "key": "t000118205",
      "event_time": "2024-03-05T02:14:09.120Z",
      "detected_at": "2024-03-05T02:14:09.207Z",
      "score": -41.27,
      "threshold": -22.9,
      "percentile": 0.004,
      "component": 2,
      "explanation": [
        {"feature": "amount", "share": 0.61},
        {"feature": "distance_km", "share": 0.22},
        {"feature": "hour_cos", "share": 0.07}
      ],
      "model_version": 3,
      "features": {"amount": 6.91, "hour_sin": -0.5, "...": 0.0}
    }

``alert_id``
    Deterministic id of the event: ``topic/partition/offset`` for Kafka,
    ``path/line`` for a file (lines count from 1), ``stdin/line`` for stdin,
    ``generate/n`` for the built-in stream. A replayed batch yields the same
    ids, so a consumer of alerts drops duplicates by id (delivery is
    at-least-once).
``key``
    The event's id (``features.key``, else the Kafka message key), or null.
``event_time``
    The event's time (``features.event_time``, else the record timestamp),
    ISO 8601 in UTC with milliseconds, or null when unknown.
``detected_at``
    When streamgmm scored the event, ISO 8601 in UTC.
``score``
    Log-density of the event under the mixture; lower is more unusual.
``threshold``
    The rolling threshold the score fell below.
``percentile``
    The fraction of the last ``window`` scores below this one, from 0 (lower
    than all of them) to 1.
``component``
    Index of the mixture component the event is closest to.
``explanation``
    The features that contribute most to the event's Mahalanobis distance
    from that component, each with its share of the distance (shares of all
    features sum to 1), largest first.
``model_version``
    Version of the model that scored the event (it grows on every model swap).
``features``
    The event's feature vector by column name; present only when
    ``alerts.include_features`` is true.

Dead letters
------------
On Kafka a dead letter keeps the original key and value bytes, and carries
the reason in headers: ``streamgmm.reason`` (a code of
:data:`streamgmm.stream.decode.REASONS`), ``streamgmm.detail``,
``streamgmm.source.topic``, ``streamgmm.source.partition``,
``streamgmm.source.offset``. In a file or on stdout it is one JSON object:
``{"id", "reason", "detail", "source": {"topic", "partition", "offset"},
"key", "value"}`` where ``value`` is the original payload as text, or
``value_base64`` when it is not UTF-8.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
import numpy as np

from streamgmm.stream.records import Header, Record

__all__ = [
    "AlertBatch",
    "build_alerts",
    "dead_letter_headers",
    "dead_letter_json",
    "event_id",
    "format_pretty",
    "iso_time",
]

_encoder = msgspec.json.Encoder()
_NAMED_TOPICS = {"-": "stdin"}


def event_id(record: Record, partitioned: bool) -> str:
    """The deterministic id of an event: ``topic/partition/offset`` or ``source/line``.

    Examples
    --------
    >>> event_id(Record("tx", 3, 41, None, b""), partitioned=True)
    'tx/3/41'
    >>> event_id(Record("-", 0, 7, None, b""), partitioned=False)
    'stdin/7'
    """
    if partitioned:
        return f"{record.topic}/{record.partition}/{record.offset}"
    return f"{_NAMED_TOPICS.get(record.topic, record.topic)}/{record.offset}"


def iso_time(epoch_ms: float) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds, or None when unknown.

    Examples
    --------
    >>> iso_time(1709510400000.0)
    '2024-03-04T00:00:00.000Z'
    >>> iso_time(float("nan")) is None
    True
    >>> iso_time(1e20) is None  # beyond the year 9999: unknown too
    True
    """
    if epoch_ms is None or not math.isfinite(epoch_ms):
        return None
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # beyond years 1-9999: unknown too
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class AlertBatch:
    """The alerts of one micro-batch, ready to send.

    Attributes
    ----------
    rows : ndarray of int64
        Index (into the batch's scored events) of each alert.
    values : list of bytes
        Each alert as JSON.
    keys : list of bytes or None
        Each alert's Kafka key (the event key), or None.
    docs : list of dict
        Each alert as a plain dict (for people-readable output and tests).
    """

    rows: np.ndarray
    values: list[bytes]
    keys: list[bytes | None]
    docs: list[dict[str, Any]]


def build_alerts(
    detections: Any,
    rows: np.ndarray,
    ids: Sequence[str],
    keys: Sequence[str | None],
    event_time_ms: np.ndarray,
    X: np.ndarray,
    feature_names: Sequence[str],
    include_features: bool,
    detected_at_ms: float,
) -> AlertBatch:
    """Build the alerts of the flagged events of one batch.

    Parameters
    ----------
    detections : Detections
        What ``AnomalyDetector.process`` returned for the scored events.
    rows : ndarray of int
        Indices of the flagged events in ``detections`` (and in ``X``).
    ids, keys : sequence of str, length n_alerts
        Each flagged event's :func:`event_id` and key.
    event_time_ms : ndarray of shape (n_alerts,)
        Each flagged event's time in epoch milliseconds (NaN when unknown).
    X : ndarray of shape (n_events, n_features)
        The scored feature vectors.
    feature_names : sequence of str
        Column names of ``X``.
    include_features : bool
        Copy the feature vector into each alert.
    detected_at_ms : float
        Detection time in epoch milliseconds.
    """
    detected_at = iso_time(detected_at_ms)
    names = list(feature_names)
    score = detections.score[rows].tolist()
    threshold = detections.threshold[rows].tolist()
    percentile = detections.percentile[rows].tolist()
    component = detections.component[rows].tolist()
    top_idx, top_shares = detections.explanation(rows)
    top, shares = top_idx.tolist(), top_shares.tolist()
    features = X[rows].tolist() if include_features else None
    docs = []
    for j, alert_id in enumerate(ids):
        doc = {
            "alert_id": alert_id,
            "key": keys[j],
            "event_time": iso_time(float(event_time_ms[j])),
            "detected_at": detected_at,
            "score": _finite(score[j]),
            "threshold": _finite(threshold[j]),
            "percentile": _finite(percentile[j]),
            "component": int(component[j]),
            "explanation": [
                {"feature": names[f], "share": round(s, 4)}
                for f, s in zip(top[j], shares[j], strict=True)
                if 0 <= f < len(names)
            ],
            "model_version": int(detections.model_version),
        }
        if features is not None:
            doc["features"] = dict(zip(names, features[j], strict=True))
        docs.append(doc)
    return AlertBatch(
        rows=np.asarray(rows, dtype=np.int64),
        values=[_encoder.encode(doc) for doc in docs],
        keys=[None if k is None else k.encode("utf-8") for k in keys],
        docs=docs,
    )


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def format_pretty(alert: dict[str, Any]) -> str:
    """One readable line for an alert (stdout on a terminal).

    Examples
    --------
    >>> print(format_pretty({"alert_id": "tx/0/5", "key": "t1", "event_time": "2024-03-04T00:00Z",
    ...     "score": -40.0, "threshold": -20.0, "percentile": 0.1, "component": 2,
    ...     "explanation": [{"feature": "amount", "share": 0.7}], "model_version": 1}))
    ALERT t1 (tx/0/5) 2024-03-04T00:00Z score -40.0 < -20.0 (p0.10) component 2: amount 70%
    """
    reasons = ", ".join(
        f"{item['feature']} {round(100 * item['share'])}%" for item in alert["explanation"]
    )
    score = "?" if alert["score"] is None else f"{alert['score']:.1f}"
    threshold = "?" if alert["threshold"] is None else f"{alert['threshold']:.1f}"
    percentile = "" if alert["percentile"] is None else f" (p{alert['percentile']:.2f})"
    key = alert["key"] if alert["key"] is not None else "-"
    when = alert["event_time"] or "unknown time"
    return (
        f"ALERT {key} ({alert['alert_id']}) {when} score {score} < {threshold}{percentile}"
        f" component {alert['component']}: {reasons or 'no explanation'}"
    )


def dead_letter_headers(record: Record, code: str, detail: str) -> list[Header]:
    """Kafka headers of a dead letter: the reason and where the record came from."""
    return [
        ("streamgmm.reason", code.encode()),
        ("streamgmm.detail", detail.encode("utf-8", "replace")[:1000]),
        ("streamgmm.source.topic", record.topic.encode("utf-8", "replace")),
        ("streamgmm.source.partition", str(record.partition).encode()),
        ("streamgmm.source.offset", str(record.offset).encode()),
    ]


def dead_letter_json(record: Record, code: str, detail: str, partitioned: bool) -> bytes:
    """A dead letter as one JSON object, for files and stdout (schema in the module docstring)."""
    doc: dict[str, Any] = {
        "id": event_id(record, partitioned),
        "reason": code,
        "detail": detail,
        "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
    }
    if record.value is None:  # a tombstone
        doc["value"] = None
        return _encoder.encode(doc)
    try:
        doc["value"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        doc["value_base64"] = base64.b64encode(record.value).decode("ascii")
    return _encoder.encode(doc)
