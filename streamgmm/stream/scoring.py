"""Scoring one batch: which events the detector learns and alerts, and what that sends.

The offsets decide per event (:meth:`~streamgmm.stream.offsets.Offsets.is_fresh`
and the learned and committed offsets): events not learned yet are learned,
events not committed yet are alerted, so a replay after a restart learns
without alerting and a redone batch alerts without learning twice. The
detector's refusals are dead-lettered one event at a time; the alerts and
dead letters are handed to the sinks (sent, not yet verified: the loop
verifies them before it commits).
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamgmm.model.base import InputRejected
from streamgmm.stream.alerts import event_id
from streamgmm.stream.audit import score_line
from streamgmm.stream.decode import Decoded, Decoder, Reason
from streamgmm.stream.offsets import Offsets, partition_of
from streamgmm.stream.outputs import alerts_of, dead_letter_of
from streamgmm.stream.protocols import TP, Detections, Detector, Sink
from streamgmm.stream.records import Record
from streamgmm.stream.transforms import show_number

log = logging.getLogger(__name__)

__all__ = ["BatchScorer", "Observer", "Outcome"]

#: observer(records, scored, flagged): indices into ``records`` of the events
#: scored by a ready model and of those flagged (the evaluation summary).
Observer = Callable[[Sequence[Record], np.ndarray, np.ndarray], None]

@dataclass
class Outcome:
    """What scoring a batch produced before delivery."""

    ids: list[str] = field(default_factory=list)  # of the alerted events, for the audit
    n_scored: int = 0
    n_flagged: int = 0
    n_replayed: int = 0
    n_alerts: int = 0
    n_dead: int = 0
    decode_errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class BatchScorer:
    """Runs a batch's events through the detector and sends their alerts and dead letters.

    Attributes
    ----------
    threshold : float
        The threshold the last scored event was judged by (NaN before any).
    model_version : int
        The version of the model that scored last.
    """

    def __init__(self, detector: Detector, decoder: Decoder, alerts: Sink, dead_letters: Sink,
                 observer: Observer | None = None) -> None:
        self.detector = detector
        self.decoder = decoder
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.observer = observer
        self.threshold = float("nan")
        self.model_version = 0

    def score(self, records: list[Record], decoded: Decoded, bounds: dict[TP, tuple[int, int]],
              offsets: Offsets, *, partitioned: bool, audit: str | None, include_features: bool,
              dead_letters_as_json: bool) -> Outcome:
        """Score, learn and alert what each event is due, and send the outputs.

        ``audit``: None, ``"ids"`` (the alerted events' ids, in ``Outcome.ids``)
        or ``"scores"`` (each id with its score, threshold, model version and flag).
        """
        learn, alert = self._classify(records, decoded.ok, bounds, offsets)
        out = Outcome()
        # Replay first (events older than the rest), then redo, then new events.
        for do_learn, do_alert in ((True, False), (False, True), (True, True)):
            rows = np.flatnonzero((learn == do_learn) & (alert == do_alert))
            if not rows.size:
                continue
            d, rows = self._process(decoded, rows, do_learn, do_alert)
            if d is None:
                continue
            self.model_version = int(d.model_version)
            if do_alert:
                self._alert(records, decoded, rows, d, out, partitioned, audit,
                            include_features)
            else:
                out.n_replayed += rows.size
        self._send_dead_letters(records, decoded, offsets, out, dead_letters_as_json,
                                partitioned)
        return out

    @staticmethod
    def _classify(records: list[Record], ok: np.ndarray, bounds: dict[TP, tuple[int, int]],
                  offsets: Offsets) -> tuple[np.ndarray, np.ndarray]:
        """Per scored row: learn it (not learned yet) and alert it (not committed yet)."""
        n = ok.size
        if offsets.is_fresh(bounds):  # the common case: nothing to replay or redo
            return np.ones(n, dtype=bool), np.ones(n, dtype=bool)
        tps = [partition_of(records[i]) for i in ok]
        at = np.fromiter((records[i].offset for i in ok), dtype=np.int64, count=n)
        learned = np.fromiter(map(offsets.learned_at, tps), dtype=np.int64, count=n)
        committed = np.fromiter(map(offsets.committed_at, tps), dtype=np.int64, count=n)
        return at >= learned, at >= committed

    def _process(self, decoded: Decoded, rows: np.ndarray, learn: bool,
                 alert: bool) -> tuple[Detections | None, np.ndarray]:
        """The detector's answer for ``rows``, with the events it refuses taken out."""
        while True:
            try:
                return self.detector.process(decoded.X[rows], learn=learn, alert=alert), rows
            except InputRejected as exc:
                # A value the detector refuses before changing anything (the
                # decoder's checks keep these out): dead-letter that event and go
                # on with the rest, rather than fail on this batch at every
                # restart. Any other error is not the event's doing and stops
                # the daemon.
                row = rows[exc.row]
                name = self.decoder.feature_names[exc.column]
                reason = Reason("rejected", f"{name}: {show_number(exc.value)} refused by "
                                            f"the detector ({exc})")
                log.warning("event refused by the detector, dead-lettered: %s", reason.detail)
                bisect.insort(decoded.errors, (int(decoded.ok[row]), reason))
                rows = rows[rows != row]
                if not rows.size:
                    return None, rows

    def _alert(self, records: list[Record], decoded: Decoded, rows: np.ndarray, d: Any,
               out: Outcome, partitioned: bool, audit: str | None,
               include_features: bool) -> None:
        record_idx = decoded.ok[rows]
        out.n_scored += rows.size
        if audit is not None:  # ids cost a string per event: only for the audit
            out.ids.extend(_audit_lines(records, record_idx, d, partitioned, audit == "scores"))
        flagged = np.flatnonzero(d.is_anomaly)
        out.n_flagged += flagged.size
        finite = np.isfinite(d.score)
        if finite.any():
            self.threshold = float(d.threshold[finite][-1])
        if self.observer is not None:
            self.observer(records, record_idx[finite], record_idx[flagged])
        if not flagged.size:
            return
        sent, latencies = alerts_of(records, decoded, rows, d, flagged,
                                    self.decoder.feature_names, partitioned, include_features)
        for value, key in zip(sent.values, sent.keys, strict=True):
            self.alerts.send(value, key=key)
        out.n_alerts += len(sent.values)
        out.latencies.extend(latencies)

    def _send_dead_letters(self, records: list[Record], decoded: Decoded, offsets: Offsets,
                           out: Outcome, as_json: bool, partitioned: bool) -> None:
        for i, reason in decoded.errors:
            record = records[i]
            if record.offset < offsets.committed_at(partition_of(record)):
                continue  # replayed: dead-lettered before
            out.decode_errors[reason.code] += 1
            value, key, headers = dead_letter_of(record, reason, as_json, partitioned)
            if headers is None:
                self.dead_letters.send(value)
            else:
                self.dead_letters.send(value, key=key, headers=headers)
            out.n_dead += 1


def _audit_lines(records: list[Record], record_idx: np.ndarray, d: Detections,
                 partitioned: bool, with_scores: bool) -> list[str]:
    """The audit lines of scored events: ids, with the score columns if asked."""
    events = [event_id(records[i], partitioned) for i in record_idx]
    if not with_scores:
        return events
    version = int(d.model_version)
    return [score_line(e, s, t, version, f) for e, s, t, f in zip(
        events, d.score.tolist(), d.threshold.tolist(), d.is_anomaly.tolist(), strict=True)]
