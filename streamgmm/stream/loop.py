"""The consumer loop: poll, decode, score, alert, flush, commit, checkpoint.

One micro-batch per poll, vectorised over the batch::

    poll -> decode -> detector.process(X) -> alerts for flagged events
         -> send alerts and dead letters -> flush and verify every send
         -> audit -> commit offsets (last + 1 per partition) -> checkpoint when due

A failed send or commit is counted and logged, and the batch is redone: the
loop seeks each partition back to the batch's first offset, so nothing is
skipped (at-least-once).

Two offsets per partition decide what happens to each event:

``learned`` (M)
    the next offset the model has not learned yet (from the checkpoint on
    start, then advanced by every batch);
``committed`` (K)
    the next offset not yet committed (asked from the group when a partition
    is assigned, then advanced by every commit).

An event at offset ``o`` is learned when ``o >= M`` and alerted (scored,
dead-lettered, audited) when ``o >= K``. So after a restart the events
between the checkpoint and the committed offsets are replayed into the model
without alerts (they were alerted before), a batch redone after a failed
commit alerts again without learning twice, and the model neither misses nor
double-learns an event. On assignment the loop seeks a partition to ``M``
when ``M < K``, and to ``K`` otherwise: the client may keep a partition's
position through a rebalance that gives it back, past records read ahead and
dropped with the revocation.

A partition taken away keeps its ``M`` (an eager rebalance revokes and gives
back the same partitions, and a batch whose commit the rebalance failed must
then be redone without learning it twice), together with the committed
offset last known. If it comes back and the group's committed offset has
moved meanwhile, another member processed it: ``M`` is raised to that offset,
so the partition goes on from the committed offset and this replica's model
does not replay events another replica handled.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import operator
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streamgmm.model.base import InputRejected
from streamgmm.stream.alerts import (
    build_alerts,
    dead_letter_headers,
    dead_letter_json,
    event_id,
)
from streamgmm.stream.audit import AuditLog, score_line
from streamgmm.stream.decode import Decoded, Decoder, Reason
from streamgmm.stream.records import Header, Record
from streamgmm.stream.transforms import show_number

log = logging.getLogger(__name__)

__all__ = ["ConsumerLoop", "LoopSettings", "LoopStats"]

TP = tuple[str, int]
#: observer(records, scored, flagged): indices into ``records`` of the events
#: scored by a ready model and of those flagged (the evaluation summary).
Observer = Callable[[Sequence[Record], np.ndarray, np.ndarray], None]


class Sink(Protocol):
    """What the loop needs of an alerts or dead-letter sink."""

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None: ...

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]: ...

    def seal(self) -> Any: ...

    def done(self, sealed: Any) -> bool: ...

    def verify(self, sealed: Any, timeout_s: float) -> tuple[int, list[str]]: ...


@dataclass(frozen=True)
class LoopSettings:
    """How the loop runs.

    Attributes
    ----------
    poll_timeout_s : float
        How long one poll waits for records (also how fast a stop is noticed).
    flush_timeout_s : float
        How long a flush may wait for the sinks to confirm delivery.
    include_features : bool
        Copy the feature vector into each alert.
    dead_letters_as_json : bool
        Write dead letters as JSON objects (files, stdout); otherwise send the
        original bytes and key with the reason in headers (Kafka).
    checkpoint_interval_s : float
        Seconds between checkpoints.
    progress_interval_s : float
        Seconds between progress log lines.
    """

    poll_timeout_s: float = 0.5
    flush_timeout_s: float = 30.0
    include_features: bool = True
    dead_letters_as_json: bool = True
    checkpoint_interval_s: float = 30.0
    progress_interval_s: float = 5.0


@dataclass
class LoopStats:
    """Counters of a run, for the progress lines and the final summary."""

    consumed: int = 0
    scored: int = 0
    alerts: int = 0
    dead_letters: int = 0
    replayed: int = 0
    send_failures: int = 0
    commit_failures: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the loop started."""
        return time.monotonic() - self.started

    @property
    def events_per_second(self) -> float:
        """Consumed records per second since the start."""
        return self.consumed / max(self.elapsed_s, 1e-9)


@dataclass
class _Outcome:
    """What processing a batch produced before delivery."""

    ids: list[str]
    n_scored: int
    n_flagged: int
    n_replayed: int
    n_alerts: int
    n_dead: int
    decode_errors: Counter
    latencies: list[float]


@dataclass
class _Started:
    """A batch scored and sent, waiting for its sends to be verified and its offsets committed."""

    records: list[Record]
    bounds: dict[TP, tuple[int, int]]
    outcome: _Outcome
    sealed: list[tuple[Any, Any, int]]  # (sink, its seal of this batch's sends, records sent)
    started: float
    commit: Any = None  # the commit asked for, once the sends are verified (has .result())
    offsets: dict[TP, int] = field(default_factory=dict)  # what that commit commits


class _Done:
    """A commit answered at once (a source that commits synchronously)."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def done(self) -> bool:
        return True

    def result(self) -> bool:
        return self.ok


#: How long a poll waits while a batch's acknowledgements are awaited (a source
#: that does not read ahead would otherwise hold them up by a whole poll).
_NUDGE_S = 0.005
#: Batches begun and not yet committed beyond which the loop waits for the
#: oldest: what a crash may repeat, and what is held in memory meanwhile.
MAX_BATCHES_IN_FLIGHT = 3


class ConsumerLoop:
    """Runs micro-batches from a source through the detector to the sinks.

    Parameters
    ----------
    source : KafkaSource, FileSource, StdinSource or GenerateSource
        Where records come from (see :mod:`streamgmm.stream.file_io` for the interface).
    decoder : Decoder
        Turns records into feature vectors.
    detector : AnomalyDetector
        Scores, learns and flags (``process(X, learn=, alert=)``).
    alerts, dead_letters : sink
        Where alerts and dead letters go (``send``, ``flush_and_verify``).
    settings : LoopSettings
    metrics : Metrics, optional
    health : HealthState, optional
    audit : AuditLog, optional
        Receives the id of every scored event before each commit.
    checkpoint : callable, optional
        ``checkpoint(learned_offsets)`` saves the detector's state with the
        offsets it has learned up to; called after a commit when due and by
        :meth:`finish`.
    observer : callable, optional
        Sees every batch's scored and flagged events (the evaluation summary).
    """

    def __init__(
        self,
        source: Any,
        decoder: Decoder,
        detector: Any,
        alerts: Sink,
        dead_letters: Sink,
        settings: LoopSettings | None = None,
        metrics: Any = None,
        health: Any = None,
        audit: AuditLog | None = None,
        checkpoint: Callable[[dict[TP, int]], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.detector = detector
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.settings = settings or LoopSettings()
        self.metrics = metrics
        self.health = health
        self.audit = audit
        self._checkpoint = checkpoint
        self.observer = observer
        self.partitioned = bool(getattr(source, "partitioned", True))
        self.learned: dict[TP, int] = {}
        self.committed: dict[TP, int | None] = {}
        # Partitions taken away: the committed offset known when they left.
        self._released: dict[TP, int | None] = {}
        # Where a failed batch sought its partitions back to, until a commit
        # covers it: a rejoin that finds no committed offset resumes there.
        self._redo_from: dict[TP, int] = {}
        self.stats = LoopStats()
        self.threshold = float("nan")
        self.model_version = 0
        self._last_checkpoint = time.monotonic()
        self._dirty = False  # learned or committed something since the last checkpoint
        self._last_progress = time.monotonic()
        self._progress_mark = (self.stats.consumed, time.monotonic())
        self._refit_seen: dict[str, int] = {}

    # ------------------------------------------------------------- partitions

    def restore(self, learned: dict[TP, int], redo: dict[TP, int] | None = None) -> None:
        """Take the offsets the restored model has learned up to (from a checkpoint),
        and where failed batches were still to be redone (``redo_offsets``)."""
        self.learned.update(learned)
        self._redo_from.update(redo or {})

    @property
    def redo_offsets(self) -> dict[TP, int]:
        """Per partition, where a failed batch is to be redone from until a commit
        covers it; a checkpoint keeps it, for a restart that finds no committed
        offset (a broker restarted empty after a stop that could not commit)."""
        return dict(self._redo_from)

    def on_assign(self, partitions: list[TP]) -> None:
        """Ask the committed offsets and seek back to what the model has not learned.

        Runs on the polling thread (KafkaSource replays rebalance events there),
        where broker calls and seeks are allowed.
        """
        started = []
        for topic, partition in partitions:
            tp = (topic, partition)
            committed = self._ask_committed(tp)
            self.committed[tp] = committed
            if committed is not None and committed >= self._redo_from.get(tp, committed):
                self._redo_from.pop(tp, None)  # the group committed past it (here or elsewhere)
            self._take_back(tp, committed)
            learned = self.learned.get(tp)
            if learned is None:
                if self._start_learning(tp, committed):
                    started.append(tp)
            elif committed is None and tp in self._redo_from:
                # The group lost its commits (a broker restarted empty) while a
                # failed batch was to be redone: redo it, not skip to learned.
                redo = min(self._redo_from[tp], learned)
                log.warning("%s/%d: no committed offset; redoing from %d (learned up to %d), "
                            "alerting again", topic, partition, redo, learned)
                self.source.seek(topic, partition, redo)
            elif committed is None or learned < committed:
                self.source.seek(topic, partition, learned)
                if committed is not None:
                    log.info(
                        "%s/%d: replaying offsets %d..%d into the model without alerts",
                        topic, partition, learned, committed - 1,
                    )
            else:
                # Resume where the group committed, whatever position the
                # client kept: kafka-python keeps a partition's position through
                # a rebalance that gives it back to this member, past records
                # read ahead and dropped with the revocation (they would be
                # lost). What was learned but not committed is alerted again.
                self.source.seek(topic, partition, committed)
        if started and self._checkpoint is not None:
            # Record where the model starts on these partitions before it learns
            # any of them: a crash before the next checkpoint would otherwise leave
            # them out of it, and the restart would skip what was learned and
            # committed meanwhile instead of replaying it.
            self._dirty = True
            self._maybe_checkpoint(force=True)
        self._set_assignment()

    def _start_learning(self, tp: TP, committed: int | None) -> bool:
        """Take the partition's next offset as learned (nothing of it learned yet)."""
        start = committed
        if start is None:
            next_offset = getattr(self.source, "next_offset", None)
            start = next_offset(*tp) if next_offset is not None else None
        if start is None:
            return False
        self.learned[tp] = start
        return True

    def _ask_committed(self, tp: TP) -> int | None:
        try:
            return self.source.committed(tp[0], tp[1])
        except Exception as exc:  # noqa: BLE001 - any client error: the loop goes on
            # Unknown committed offset: alert everything from where we are (at-least-once).
            log.warning("%s/%d: committed offset unknown (%s): %s", *tp, type(exc).__name__, exc)
            return None

    def _take_back(self, tp: TP, committed: int | None) -> None:
        """Skip what another member processed while ``tp`` was away from this one."""
        if tp not in self._released:
            return
        before = self._released.pop(tp)
        if committed is None or committed == before or tp not in self.learned:
            return  # nobody else committed: keep replay and redo as they were
        if self.learned[tp] < committed:
            log.info("%s/%d: processed elsewhere up to %d meanwhile; going on from there",
                     *tp, committed)
        self.learned[tp] = max(self.learned[tp], committed)

    def on_revoke(self, partitions: list[TP]) -> None:
        """Forget the committed offsets of partitions taken away (no broker calls here)."""
        for tp in partitions:
            self._released[tp] = self.committed.pop(tp, None)
        if self.metrics is not None:
            self.metrics.drop_partitions(partitions)
        self._set_assignment()

    def _set_assignment(self) -> None:
        if self.health is not None:
            self.health.set_assignment(len(self.source.assignment()))

    # -------------------------------------------------------------------- run

    def run(self, stop: threading.Event) -> LoopStats:
        """Poll and process until ``stop`` is set or the source is exhausted, then finish.

        Batches overlap: batch N+1 is scored and its alerts sent before batch
        N's sends are verified, and N's commit is answered while N+2 is
        worked on, so acknowledgements and commits arrive while the loop
        works instead of making it wait. Offsets are still committed only for
        verified batches, in order; when a batch fails, it and the batches
        after it are redone (their alerts may then repeat: they were in flight).
        """
        flight: list[_Started] = []  # oldest first
        reads_ahead = bool(getattr(self.source, "reads_ahead", False))
        while not stop.is_set():
            # With sends to verify, look only at what is there already, unless
            # the source reads ahead (its poll is then ready at once).
            unverified = any(b.commit is None for b in flight)
            wait = _NUDGE_S if unverified and not reads_ahead else self.settings.poll_timeout_s
            records = self.source.poll(wait)
            self._mark_iteration()
            if records:
                flight.append(self._begin(records))
            else:
                self._apply_quiet_refit()
            flight, _ = self._advance(flight, keep=1 if records else 0)
            self._maybe_checkpoint()
            self._maybe_progress()
            if not records and not flight and getattr(self.source, "exhausted", False):
                break
        self._advance(flight, keep=0, drain=True)
        self.finish()
        return self.stats

    def finish(self) -> None:
        """Write a last checkpoint and a last progress line."""
        self._maybe_checkpoint(force=True)
        self._progress(final=True)

    def _mark_iteration(self) -> None:
        if self.health is not None:
            self.health.mark_iteration()
            self.health.set_broker_reachable(self.source.broker_reachable())
        if self.metrics is not None:
            # Every iteration, not every batch: rejoins happen while no batch comes.
            self.metrics.set_rejoins(int(getattr(self.source, "rejoins", 0)))

    # ---------------------------------------------------------------- a batch

    def process(self, records: list[Record]) -> bool:
        """Process one batch end to end; True when its offsets were committed.

        On a failed send or commit the partitions are sought back to the
        batch's first offsets and False is returned: the next polls redo it.
        """
        return self._advance([self._begin(records)], keep=0, drain=True)[1]

    def _begin(self, records: list[Record]) -> _Started:
        """Decode, score, learn and send one batch; seal its sends for verification."""
        start = time.perf_counter()
        bounds = _partition_bounds(records)
        decoded = self._decode(records)
        outcome = self._score_and_send(records, decoded, bounds)
        for tp, (_, last) in bounds.items():
            self.learned[tp] = max(self.learned.get(tp, 0), last + 1)
        self._dirty = True
        sealed = [
            (sink, sink.seal(), expected)
            for sink, expected in ((self.alerts, outcome.n_alerts),
                                   (self.dead_letters, outcome.n_dead))
        ]
        return _Started(records, bounds, outcome, sealed, start)

    def _advance(
        self, flight: list[_Started], keep: int, drain: bool = False
    ) -> tuple[list[_Started], bool]:
        """Move batches on, oldest first: settle asked commits, verify and commit sent batches.

        The newest ``keep`` batches not yet verified stay as they are; with
        ``drain`` every commit asked for is also settled. Returns the batches
        still under way, and False when one failed (it and every later batch
        are then sought back to be redone).
        """
        remaining: list[_Started] = []
        to_verify = sum(b.commit is None for b in flight) - keep
        # Waiting is for when it is due: draining, or more batches in flight
        # than allowed. Otherwise a batch moves on only once what it waits for
        # (acknowledgements, then its commit's answer) has arrived, in order.
        force = drain or len(flight) > MAX_BATCHES_IN_FLIGHT
        waiting = False  # an older batch is still waiting: later ones keep their turn
        for i, batch in enumerate(flight):
            ripe = force and i == 0 or drain
            if batch.commit is not None:
                if waiting or not (ripe or batch.commit.done()):
                    waiting = True
                    remaining.append(batch)
                    continue
                ok = self._settle(batch)
            elif to_verify > 0 and not waiting and (ripe or self._delivered(batch)):
                to_verify -= 1
                ok = self._verify_and_ask_commit(batch)
                if ok and not drain:
                    remaining.append(batch)  # settled later: the commit runs meanwhile
                    waiting = True
                    continue
                ok = ok and self._settle(batch)
            else:
                waiting = True
                remaining.append(batch)
                continue
            if not ok:
                self._redo(flight[i:])
                return remaining, False
        return remaining, True

    def _delivered(self, batch: _Started) -> bool:
        """Whether every sink has the answers to this batch's sends (nothing to wait for)."""
        return all(sink.done(seal) for sink, seal, _ in batch.sealed)

    def _verify_and_ask_commit(self, batch: _Started) -> bool:
        """Check a batch's sends; audit it and ask for its commit when they all arrived."""
        if not self._deliver(batch.sealed):
            return False
        if self.audit is not None:
            self.audit.write(batch.outcome.ids)
        batch.offsets = {
            tp: last + 1
            for tp, (_, last) in batch.bounds.items()
            if last + 1 > (self.committed.get(tp) or 0)
        }
        commit_async = getattr(self.source, "commit_async", None)
        if not batch.offsets:
            batch.commit = _Done(True)
        elif commit_async is not None:
            batch.commit = commit_async(batch.offsets)
        else:
            batch.commit = _Done(self.source.commit(batch.offsets))
        return True

    def _settle(self, batch: _Started) -> bool:
        """Take a batch's commit answer; account the batch when it is done."""
        if not batch.commit.result():
            self.stats.commit_failures += 1
            if self.metrics is not None:
                self.metrics.commit_failures.inc()
            log.warning("commit failed; the batch will be redone")
            return False
        assigned = self.source.assignment()
        for tp, offset in batch.offsets.items():
            if tp in assigned:
                self.committed[tp] = max(self.committed.get(tp) or 0, offset)
            if offset > self._redo_from.get(tp, offset):
                del self._redo_from[tp]  # the redone batch is committed
        self._account(batch.records, batch.outcome, True, time.perf_counter() - batch.started)
        return True

    def _redo(self, batches: list[_Started]) -> None:
        """Seek every partition of ``batches`` back to its earliest offset among them."""
        first: dict[TP, int] = {}
        for batch in batches:
            for tp, (low, _) in batch.bounds.items():
                first[tp] = min(first.get(tp, low), low)
            self._account(batch.records, batch.outcome, False,
                          time.perf_counter() - batch.started)
        for (topic, partition), offset in first.items():
            self.source.seek(topic, partition, offset)
            tp = (topic, partition)
            # From what the group has not committed (a replayed part is not redone).
            offset = max(offset, self.committed.get(tp) or 0)
            self._redo_from[tp] = min(self._redo_from.get(tp, offset), offset)

    def _decode(self, records: list[Record]) -> Decoded:
        # A CSV source decodes under its header; everything else is JSON.
        source_decode = getattr(self.source, "decode", None)
        if source_decode is not None:
            return source_decode(self.decoder, records)
        return self.decoder.decode(records)

    def _score_and_send(
        self, records: list[Record], decoded: Decoded, bounds: dict[TP, tuple[int, int]]
    ) -> _Outcome:
        learn, alert = self._classify(records, decoded.ok, bounds)
        out = _Outcome([], 0, 0, 0, 0, 0, Counter(), [])
        # Replay first (events older than the rest), then redo, then new events.
        for do_learn, do_alert in ((True, False), (False, True), (True, True)):
            rows = np.flatnonzero((learn == do_learn) & (alert == do_alert))
            if rows.size:
                self._run_group(records, decoded, rows, do_learn, do_alert, out)
        self._send_dead_letters(records, decoded, bounds, out)
        return out

    def _classify(
        self, records: list[Record], ok: np.ndarray, bounds: dict[TP, tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per scored row: learn it (not learned yet) and alert it (not committed yet)."""
        n = ok.size
        fresh = all(
            first >= self.learned.get(tp, 0) and first >= (self.committed.get(tp) or 0)
            for tp, (first, _) in bounds.items()
        )
        if fresh:  # the common case: nothing to replay or redo
            return np.ones(n, dtype=bool), np.ones(n, dtype=bool)
        offsets = np.fromiter((records[i].offset for i in ok), dtype=np.int64, count=n)
        learned = np.fromiter(
            (self.learned.get((records[i].topic, records[i].partition), 0) for i in ok),
            dtype=np.int64, count=n,
        )
        committed = np.fromiter(
            (self.committed.get((records[i].topic, records[i].partition)) or 0 for i in ok),
            dtype=np.int64, count=n,
        )
        return offsets >= learned, offsets >= committed

    def _run_group(
        self,
        records: list[Record],
        decoded: Decoded,
        rows: np.ndarray,
        learn: bool,
        alert: bool,
        out: _Outcome,
    ) -> None:
        while True:
            X = decoded.X[rows]
            try:
                d = self.detector.process(X, learn=learn, alert=alert)
                break
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
                    return
        self.model_version = int(d.model_version)
        if not alert:
            out.n_replayed += rows.size
            return
        record_idx = decoded.ok[rows]
        out.n_scored += rows.size
        if self.audit is not None:  # ids cost a string per event: only for the audit
            out.ids.extend(self._audit_lines(records, record_idx, d))
        flagged = np.flatnonzero(d.is_anomaly)
        out.n_flagged += flagged.size
        finite = np.isfinite(d.score)
        if finite.any():
            self.threshold = float(d.threshold[finite][-1])
        if self.observer is not None:
            self.observer(records, record_idx[finite], record_idx[flagged])
        if flagged.size:
            self._send_alerts(records, decoded, rows, record_idx, d, flagged, out)

    def _audit_lines(self, records, record_idx, d) -> list[str]:
        """The audit lines of scored events: ids, with the score columns if asked."""
        events = [event_id(records[i], self.partitioned) for i in record_idx]
        if not getattr(self.audit, "scores", False):
            return events
        version = int(d.model_version)
        return [score_line(e, s, t, version, f) for e, s, t, f in zip(
            events, d.score.tolist(), d.threshold.tolist(), d.is_anomaly.tolist(), strict=True)]

    def _send_alerts(self, records, decoded, rows, record_idx, d, flagged, out) -> None:
        src = record_idx[flagged]
        batch = build_alerts(
            d,
            flagged,
            ids=[event_id(records[i], self.partitioned) for i in src],
            keys=[decoded.keys[j] for j in rows[flagged]],
            event_time_ms=decoded.event_time_ms[rows[flagged]],
            X=decoded.X[rows],
            feature_names=self.decoder.feature_names,
            include_features=self.settings.include_features,
            detected_at_ms=time.time() * 1000.0,
        )
        for value, key in zip(batch.values, batch.keys, strict=True):
            self.alerts.send(value, key=key)
        out.n_alerts += len(batch.values)
        now_ms = time.time() * 1000.0
        for j, i in enumerate(src):
            # The record timestamp (producer or broker time) measures the pipeline;
            # the event's own time may be business time, long past.
            stamp = records[i].timestamp_ms
            stamp = stamp if stamp is not None else decoded.event_time_ms[rows[flagged][j]]
            if stamp == stamp:  # not NaN
                out.latencies.append((now_ms - float(stamp)) / 1000.0)

    def _send_dead_letters(self, records, decoded, bounds, out: _Outcome) -> None:
        for i, reason in decoded.errors:
            record = records[i]
            committed = self.committed.get((record.topic, record.partition)) or 0
            if record.offset < committed:
                continue  # replayed: dead-lettered before
            out.decode_errors[reason.code] += 1
            if self.settings.dead_letters_as_json:
                value = dead_letter_json(record, reason.code, reason.detail, self.partitioned)
                self.dead_letters.send(value)
            else:
                headers = dead_letter_headers(record, reason.code, reason.detail)
                # A tombstone's dead letter is empty, not a tombstone: on a
                # compacted dead-letter topic that would delete the key.
                value = b"" if record.value is None else record.value
                self.dead_letters.send(value, key=record.key, headers=headers)
            out.n_dead += 1

    def _deliver(self, sealed: list[tuple[Any, Any, int]]) -> bool:
        """Check every send of a batch; False when any failed."""
        timeout = self.settings.flush_timeout_s
        failures: list[str] = []
        for sink, seal, expected in sealed:
            n_ok, errors = sink.verify(seal, timeout)
            failures.extend(errors)
            if not errors and n_ok != expected:
                failures.append(f"{type(sink).__name__}: {n_ok} of {expected} confirmed")
        if failures:
            self.stats.send_failures += len(failures)
            if self.metrics is not None:
                self.metrics.send_failures.inc(len(failures))
            log.warning(
                "%d send(s) failed; the batch will be redone; first: %s",
                len(failures), failures[0],
            )
            return False
        return True

    # --------------------------------------------------------------- accounts

    def _account(self, records: list[Record], out: _Outcome, ok: bool, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.consumed += len(records)
        stats.replayed += out.n_replayed
        if ok:
            stats.scored += out.n_scored
            stats.alerts += out.n_alerts
            stats.dead_letters += out.n_dead
        if self.metrics is not None:
            self._publish_metrics(records, out, ok, seconds)
        if self.health is not None:
            self.health.set_model_ready(bool(self.detector.ready))

    def _publish_metrics(self, records, out: _Outcome, ok: bool, seconds: float) -> None:
        m = self.metrics
        m.observe_batch(
            n_consumed=len(records),
            n_scored=out.n_scored,
            n_anomalies=out.n_flagged,
            seconds=seconds,
            latencies=out.latencies if ok else (),
        )
        m.count_decode_errors(out.decode_errors)
        if out.n_replayed:
            m.events_replayed.inc(out.n_replayed)
        if ok:
            m.dead_letters.inc(out.n_dead)
            m.alerts_published.inc(out.n_alerts)
        self._publish_model()
        m.set_lag(self.source.lag())

    def _publish_model(self) -> None:
        det = self.detector
        if det.ready:
            self.metrics.observe_model(
                self.model_version,
                np.asarray(det.weights, dtype=float).tolist(),
                _float_or_none(det.threshold_value),
                _float_or_none(det.mean_score),
            )
        self._publish_refits()

    def _apply_quiet_refit(self) -> None:
        """Swap in a refit that finished after the last batch: on a quiet
        stream there is no next batch to do it, and the model, its metrics and
        the next checkpoint would lag behind until traffic resumes."""
        if not self.detector.apply_finished_refit():
            return
        self.model_version = int(self.detector.model_version)
        self._dirty = True
        if self.metrics is not None:
            self._publish_model()

    def _publish_refits(self) -> None:
        stats = getattr(self.detector, "refit_stats", None) or {}
        seconds = _float_or_none(stats.get("last_seconds")) or 0.0
        for outcome in self.metrics.refit_outcomes:
            total = int(stats.get(outcome, 0) or 0)
            for _ in range(total - self._refit_seen.get(outcome, 0)):
                self.metrics.observe_refit(outcome, seconds)
            self._refit_seen[outcome] = total

    def _maybe_checkpoint(self, force: bool = False) -> None:
        if self._checkpoint is None or not self._dirty:
            return
        due = time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval_s
        if not (force or due):
            return
        self._checkpoint(dict(self.learned))
        self._last_checkpoint = time.monotonic()
        self._dirty = False

    def _maybe_progress(self) -> None:
        if time.monotonic() - self._last_progress >= self.settings.progress_interval_s:
            self._progress()

    def _progress(self, final: bool = False) -> None:
        now = time.monotonic()
        consumed, since = self._progress_mark
        rate = (self.stats.consumed - consumed) / max(now - since, 1e-9)
        self._progress_mark = (self.stats.consumed, now)
        self._last_progress = now
        s = self.stats
        log.info(
            "%s: %d events (%.0f/s), %d alerts, %d dead letters, %d replayed, threshold %s",
            "done" if final else "progress",
            s.consumed,
            s.events_per_second if final else rate,
            s.alerts,
            s.dead_letters,
            s.replayed,
            "warming up" if self.threshold != self.threshold else f"{self.threshold:.2f}",
            extra={"fields": {
                "events": s.consumed, "events_per_s": round(rate, 1), "alerts": s.alerts,
                "dead_letters": s.dead_letters, "replayed": s.replayed,
                "model_version": self.model_version,
            }},
        )


def _partition_bounds(records: Sequence[Record]) -> dict[TP, tuple[int, int]]:
    """First and last offset of each partition in a batch."""
    bounds: dict[TP, tuple[int, int]] = {}
    # Sources give each partition's records together and in offset order, so a
    # group is one run; groupby walks the batch at C speed.
    for tp, group in itertools.groupby(records, key=_partition_of):
        offsets = [r.offset for r in group]
        low, high = min(offsets), max(offsets)
        seen = bounds.get(tp)
        bounds[tp] = (low, high) if seen is None else (min(seen[0], low), max(seen[1], high))
    return bounds


_partition_of = operator.attrgetter("topic", "partition")


def _float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None
