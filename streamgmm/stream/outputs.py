"""What a batch sends: its alerts and its dead letters, built from the records and detections.

The consumer loop decides which events are alerted and which are
dead-lettered; this module turns them into the records the sinks take, in
the formats :mod:`streamgmm.stream.alerts` defines, and measures each
alert's event-to-alert latency.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamgmm.stream.alerts import build_alerts, dead_letter_headers, dead_letter_json, event_id
from streamgmm.stream.decode import Decoded, Reason
from streamgmm.stream.protocols import Detections
from streamgmm.stream.records import Header, Record

__all__ = ["Outgoing", "alerts_of", "dead_letter_of"]


@dataclass
class Outgoing:
    """Records for a sink: values, keys and headers, index by index."""

    values: list[bytes]
    keys: list[bytes | None]
    headers: list[list[Header] | None]


def alerts_of(
    records: Sequence[Record],
    decoded: Decoded,
    rows: np.ndarray,
    detections: Detections,
    flagged: np.ndarray,
    feature_names: Sequence[str],
    partitioned: bool,
    include_features: bool,
) -> tuple[Outgoing, list[float]]:
    """The alerts of a scored group of a batch, and their latencies in seconds.

    Parameters
    ----------
    records : sequence of Record
        The batch.
    decoded : Decoded
        Its decoding; ``rows`` index its decoded events.
    rows : ndarray of int
        The decoded events scored together (``detections`` is theirs).
    detections : Detections
        What the detector gave for ``rows``.
    flagged : ndarray of int
        Indices into ``rows`` of the events flagged.
    feature_names : sequence of str
        The decoded features' names, in column order.
    partitioned : bool
        Whether alert ids carry the partition (Kafka) or not (local sources).
    include_features : bool
        Copy each flagged event's feature vector into its alert.
    """
    src = decoded.ok[rows[flagged]]
    batch = build_alerts(
        detections,
        flagged,
        ids=[event_id(records[i], partitioned) for i in src],
        keys=[decoded.keys[j] for j in rows[flagged]],
        event_time_ms=decoded.event_time_ms[rows[flagged]],
        X=decoded.X[rows],
        feature_names=feature_names,
        include_features=include_features,
        detected_at_ms=time.time() * 1000.0,
    )
    now_ms = time.time() * 1000.0
    latencies = []
    for j, i in enumerate(src):
        # The record timestamp (producer or broker time) measures the pipeline;
        # the event's own time may be business time, long past.
        stamp = records[i].timestamp_ms
        stamp = stamp if stamp is not None else decoded.event_time_ms[rows[flagged][j]]
        if stamp == stamp:  # not NaN
            latencies.append((now_ms - float(stamp)) / 1000.0)
    return Outgoing(batch.values, batch.keys, [None] * len(batch.values)), latencies


def dead_letter_of(record: Record, reason: Reason, as_json: bool,
                   partitioned: bool) -> tuple[bytes, bytes | None, list[Header] | None]:
    """One undecodable record as a dead letter: a JSON object with the reason
    (files, stdout), or the original bytes and key with the reason in headers
    (Kafka)."""
    if as_json:
        return dead_letter_json(record, reason.code, reason.detail, partitioned), None, None
    headers = dead_letter_headers(record, reason.code, reason.detail)
    # A tombstone's dead letter is empty, not a tombstone: on a compacted
    # dead-letter topic that would delete the key.
    value = b"" if record.value is None else record.value
    return value, record.key, headers
