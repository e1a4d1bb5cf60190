"""The consumer loop: poll, decode, score, alert, flush, commit, checkpoint.

One micro-batch per poll, vectorised over the batch::

    poll -> decode -> detector.process(X) -> alerts for flagged events
         -> send alerts and dead letters -> flush and verify every send
         -> audit -> commit offsets (last + 1 per partition) -> checkpoint when due

A failed send or commit is counted and logged, and the batch is redone: the
loop seeks each partition back to the batch's first offset, so nothing is
skipped (at-least-once). Which events of a batch are learned, alerted and
committed, and where a partition resumes after a rebalance or a restart, is
decided by :class:`~streamgmm.stream.offsets.Offsets`; this module does the
I/O those decisions call for, :class:`~streamgmm.stream.scoring.BatchScorer`
scores and sends, and :class:`~streamgmm.stream.commit.Committer` is the one
place that commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamgmm.stream.audit import AuditLog
from streamgmm.stream.commit import Batch, Committer
from streamgmm.stream.decode import Decoder
from streamgmm.stream.offsets import Offsets, partition_bounds
from streamgmm.stream.protocols import TP, Detector, Sink, Source
from streamgmm.stream.records import Record
from streamgmm.stream.scoring import BatchScorer, Observer, Outcome

log = logging.getLogger(__name__)

__all__ = ["ConsumerLoop", "LoopSettings", "LoopStats"]


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


#: How long a poll waits while a batch's acknowledgements are awaited (a source
#: that does not read ahead would otherwise hold them up by a whole poll).
_NUDGE_S = 0.005


class ConsumerLoop:
    """Runs micro-batches from a source through the detector to the sinks.

    Parameters
    ----------
    source : Source
        Where records come from (:class:`~streamgmm.stream.protocols.Source`).
    decoder : Decoder
        Turns records into feature vectors.
    detector : Detector
        Scores, learns and flags (``process(X, learn=, alert=)``).
    alerts, dead_letters : Sink
        Where alerts and dead letters go.
    settings : LoopSettings
    metrics : Metrics, optional
    health : HealthState, optional
    audit : AuditLog, optional
        Receives the id of every scored event before each commit.
    checkpoint : callable, optional
        ``checkpoint(offsets)`` saves the detector's state with the loop's
        :class:`Offsets` (read them during the call; do not keep them); called
        after a commit when due and by :meth:`finish`.
    observer : callable, optional
        Sees every batch's scored and flagged events (the evaluation summary).
    offsets : Offsets, optional
        Where the model stands on each partition (from a checkpoint).
    """

    def __init__(
        self,
        source: Source,
        decoder: Decoder,
        detector: Detector,
        alerts: Sink,
        dead_letters: Sink,
        settings: LoopSettings | None = None,
        metrics: Any = None,
        health: Any = None,
        audit: AuditLog | None = None,
        checkpoint: Callable[[Offsets], None] | None = None,
        observer: Observer | None = None,
        offsets: Offsets | None = None,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.detector = detector
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.settings = settings or LoopSettings()
        self.metrics = metrics
        self.health = health
        self._audit = audit
        self._checkpoint = checkpoint
        self.observer = observer
        self.offsets = offsets if offsets is not None else Offsets()
        if metrics is not None:
            metrics.watch_model(detector)  # its gauges are read at scrape time
        self.scorer = BatchScorer(detector, decoder, alerts, dead_letters, observer)
        self.committer = Committer(source, self.offsets, audit, self.settings.flush_timeout_s,
                                   settled=self._settled, failed=self._count_failures)
        self.stats = LoopStats()
        self._last_checkpoint = time.monotonic()
        self._dirty = False  # learned or committed something since the last checkpoint
        self._last_progress = time.monotonic()
        self._progress_mark = (self.stats.consumed, time.monotonic())

    @property
    def audit(self) -> AuditLog | None:
        """Where each committed batch's event ids (and scores) are written."""
        return self._audit

    @audit.setter
    def audit(self, audit: AuditLog | None) -> None:
        self._audit = self.committer.audit = audit

    @property
    def model_version(self) -> int:
        """The version of the model that scored last."""
        return self.scorer.model_version

    @property
    def threshold(self) -> float:
        """The threshold the last scored event was judged by (NaN before any)."""
        return self.scorer.threshold

    @property
    def learned(self) -> dict[TP, int]:
        """Per partition, the next offset the model has not learned."""
        return self.offsets.learned

    @property
    def redo_offsets(self) -> dict[TP, int]:
        """Per partition, where a failed batch is to be redone from until a commit covers it."""
        return dict(self.offsets.redo)

    def restore(self, learned: dict[TP, int], redo: dict[TP, int] | None = None) -> None:
        """Take the offsets a restored model has learned up to, and its redo points."""
        self.offsets.restore(learned, redo)

    # ------------------------------------------------------------- partitions

    def on_assign(self, partitions: list[TP]) -> None:
        """Ask the committed offsets and seek back to what the model has not learned.

        Runs on the polling thread (the sources replay rebalance events there),
        where broker calls and seeks are allowed.
        """
        started = False
        for topic, partition in partitions:
            tp = (topic, partition)
            place = self.offsets.assign(tp, self._ask_committed(tp),
                                        lambda tp=tp: self.source.next_offset(*tp))
            started |= place.started
            if place.why == "redo":
                log.warning("%s/%d: no committed offset; redoing from %d (learned up to %d), "
                            "alerting again", *tp, place.seek, self.offsets.learned[tp])
            elif place.why == "replay":
                log.info("%s/%d: replaying offsets %d..%d into the model without alerts",
                         *tp, place.seek, self.offsets.committed[tp] - 1)
            if place.seek is not None:
                self.source.seek(topic, partition, place.seek)
        if started and self._checkpoint is not None:
            # Record where the model starts on these partitions before it learns
            # any of them: a crash before the next checkpoint would otherwise leave
            # them out of it, and the restart would skip what was learned and
            # committed meanwhile instead of replaying it.
            self._dirty = True
            self._maybe_checkpoint(force=True)
        self._set_assignment()

    def _ask_committed(self, tp: TP) -> int | None:
        try:
            return self.source.committed(tp[0], tp[1])
        except Exception as exc:  # noqa: BLE001 - any client error: the loop goes on
            # Unknown committed offset: alert everything from where we are (at-least-once).
            log.warning("%s/%d: committed offset unknown (%s): %s", *tp, type(exc).__name__, exc)
            return None

    def on_revoke(self, partitions: list[TP]) -> None:
        """Forget the committed offsets of partitions taken away (no broker calls here)."""
        self.offsets.revoke(partitions)
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
        flight: list[Batch] = []  # oldest first
        while not stop.is_set():
            # With sends to verify, look only at what is there already, unless
            # the source reads ahead (its poll is then ready at once).
            unverified = any(b.commit is None for b in flight)
            nudge = unverified and not self.source.reads_ahead
            records = self.source.poll(_NUDGE_S if nudge else self.settings.poll_timeout_s)
            self._mark_iteration()
            if records:
                flight.append(self._begin(records))
            else:
                self._apply_quiet_refit()
            flight, _ = self.committer.advance(flight, keep=1 if records else 0)
            self._maybe_checkpoint()
            self._maybe_progress()
            if not records and not flight and self.source.exhausted:
                break
        self.committer.advance(flight, keep=0, drain=True)
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
            self.metrics.set_rejoins(int(self.source.rejoins))

    # ---------------------------------------------------------------- a batch

    def process(self, records: list[Record]) -> bool:
        """Process one batch end to end; True when its offsets were committed.

        On a failed send or commit the partitions are sought back to the
        batch's first offsets and False is returned: the next polls redo it.
        """
        return self.committer.advance([self._begin(records)], keep=0, drain=True)[1]

    def _begin(self, records: list[Record]) -> Batch:
        """Decode, score, learn and send one batch; seal its sends for verification."""
        start = time.perf_counter()
        bounds = partition_bounds(records)
        decoded = self.source.decode(self.decoder, records)
        outcome = self.scorer.score(
            records, decoded, bounds, self.offsets, partitioned=self.source.partitioned,
            audit=None if self.audit is None else "scores" if self.audit.scores else "ids",
            include_features=self.settings.include_features,
            dead_letters_as_json=self.settings.dead_letters_as_json)
        self.offsets.learn(bounds)
        self._dirty = True
        sealed = [(sink, sink.seal(), expected)
                  for sink, expected in ((self.alerts, outcome.n_alerts),
                                         (self.dead_letters, outcome.n_dead))]
        return Batch(records, bounds, outcome, sealed, start)

    # --------------------------------------------------------------- accounts

    def _settled(self, batch: Batch, ok: bool) -> None:
        self._account(batch.records, batch.outcome, ok, batch.seconds)

    def _count_failures(self, what: str, n: int) -> None:
        """Count ``n`` failed sends or commits (``what``: "send" or "commit")."""
        name = f"{what}_failures"
        setattr(self.stats, name, getattr(self.stats, name) + n)
        if self.metrics is not None:
            getattr(self.metrics, name).inc(n)

    def _account(self, records: list[Record], out: Outcome, ok: bool, seconds: float) -> None:
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

    def _publish_metrics(self, records, out: Outcome, ok: bool, seconds: float) -> None:
        m = self.metrics
        m.observe_batch(n_consumed=len(records), n_scored=out.n_scored,
                        n_anomalies=out.n_flagged, seconds=seconds,
                        latencies=out.latencies if ok else ())
        m.count_decode_errors(out.decode_errors)
        if out.n_replayed:
            m.events_replayed.inc(out.n_replayed)
        if ok:
            m.dead_letters.inc(out.n_dead)
            m.alerts_published.inc(out.n_alerts)
        m.set_lag(self.source.lag())

    def _apply_quiet_refit(self) -> None:
        """Swap in a refit that finished after the last batch: on a quiet
        stream there is no next batch to do it, and the model and the next
        checkpoint would lag behind until traffic resumes."""
        if not self.detector.apply_finished_refit():
            return
        self.scorer.model_version = int(self.detector.model_version)
        self._dirty = True

    def _maybe_checkpoint(self, force: bool = False) -> None:
        if self._checkpoint is None or not self._dirty:
            return
        due = time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_interval_s
        if not (force or due):
            return
        self._checkpoint(self.offsets)
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
            "done" if final else "progress", s.consumed,
            s.events_per_second if final else rate, s.alerts, s.dead_letters, s.replayed,
            "warming up" if self.threshold != self.threshold else f"{self.threshold:.2f}",
            extra={"fields": {
                "events": s.consumed, "events_per_s": round(rate, 1), "alerts": s.alerts,
                "dead_letters": s.dead_letters, "replayed": s.replayed,
                "model_version": self.model_version,
            }},
        )
