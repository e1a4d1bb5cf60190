"""The group-managed Kafka consumer: :class:`KafkaSource` (kafka-python 3.x).

:class:`KafkaSource` wraps a ``KafkaConsumer`` with auto-commit off and raw
bytes, and turns each poll into a flat list of
:class:`~streamgmm.stream.records.Record` (or one column
:data:`~streamgmm.stream.records.Chunk` per partition). Rebalance events are
queued by :class:`~streamgmm.stream.kafka_group.QueueingListener` on the
client's IO thread and replayed here, on the polling thread, after ``poll()``
returns; a commit sent without waiting is a
:class:`~streamgmm.stream.kafka_commit.PendingCommit`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streamgmm.stream.kafka_client import (
    CONSUMER_RESERVED,
    check_options,
    fetch_position,
    last_broker_read,
)
from streamgmm.stream.kafka_commit import GroupCommits
from streamgmm.stream.kafka_group import JoinWatch, QueueingListener
from streamgmm.stream.kafka_records import chunks_from_polled, flatten_records
from streamgmm.stream.protocols import TP, CommitAnswer, Source
from streamgmm.stream.records import Chunk, Record
from streamgmm.stream.redact import redact_options

log = logging.getLogger(__name__)

#: (topic, partition): how partitions are named outside this module.
PartitionCallback = Callable[[list[TP]], None]

_POLL_ERROR_LOG_INTERVAL_S = 10.0


class KafkaSource(Source):
    """Group-managed Kafka consumer that yields raw :class:`Record` batches.

    Parameters
    ----------
    bootstrap_servers : str or list of str
        ``host:port`` of one or more brokers.
    group_id : str
        Consumer group; partitions are spread over its members.
    topics : list of str, optional
        Topics to subscribe to. Exactly one of ``topics`` and ``pattern``.
    pattern : str, optional
        Regular expression of topics to subscribe to.
    client_options : dict, optional
        Further kafka-python consumer settings (SASL/SSL, timeouts,
        ``auto_offset_reset``...), passed through. Never logged unredacted.
    max_poll_records : int
        Upper bound on the records one :meth:`poll` returns; bounds the work
        per poll well under ``max_poll_interval_ms``.
    on_assign, on_revoke : callable, optional
        Called with a sorted list of (topic, partition) on the polling thread,
        inside :meth:`poll`, after a rebalance. ``on_assign`` may call
        :meth:`seek` (e.g. to a checkpoint's offsets); ``on_revoke`` should
        only drop per-partition state. Both may commit, since they no longer
        run on the IO thread, but the partitions in ``on_revoke`` already
        belong to the group again.
    reachability_window_s : float
        :meth:`broker_reachable` is true while some broker connection has
        delivered bytes within this many seconds. Keep it above the heartbeat
        interval and ``fetch_max_wait_ms``.
    commit_timeout_s : float
        Upper bound on one :meth:`commit`.

    Raises
    ------
    ValueError
        A client option is unknown to kafka-python or set by streamgmm.
    kafka.errors.KafkaTimeoutError
        No broker answered within ``bootstrap_timeout_ms`` (the consumer
        connects in its constructor).
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        group_id: str,
        topics: list[str] | None = None,
        pattern: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        max_poll_records: int = 500,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
        reachability_window_s: float = 15.0,
        commit_timeout_s: float = 10.0,
    ) -> None:
        if (topics is None) == (pattern is None):
            raise ValueError(
                f"topics / pattern: expected exactly one, got topics={topics!r}, "
                f"pattern={pattern!r}"
            )
        options = dict(client_options or {})
        check_options(options, KafkaConsumer.DEFAULT_CONFIG, CONSUMER_RESERVED, "consumer")
        options.setdefault("auto_offset_reset", "earliest")
        log.info(
            "kafka source: servers=%s group=%s topics=%s pattern=%s options=%s",
            bootstrap_servers,
            group_id,
            topics,
            pattern,
            redact_options(options),
        )
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            max_poll_records=max_poll_records,
            **options,
        )
        self._max_poll_records = max_poll_records
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._reachability_window_s = reachability_window_s
        self._events: deque[tuple[str, list[TP]]] = deque()
        self._positions: dict[TP, int] = {}
        self._pending_seeks: dict[TP, int] = {}
        self._polled_from: dict[TP, int] = {}
        self._seeked_since_fetch: set[TP] = set()
        self.poll_errors = 0
        self._last_poll_error = float("-inf")
        self._commits = GroupCommits(self._consumer, self.assignment, commit_timeout_s)
        self._listener = QueueingListener(self._events)
        self._subscription = (
            {"topics": list(topics)} if topics is not None else {"pattern": pattern}
        )
        self.join_watch = JoinWatch({**KafkaConsumer.DEFAULT_CONFIG, **options})
        self.rejoins = 0
        self._consumer.subscribe(listener=self._listener, **self._subscription)

    # -- reading -------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[Record]:
        """Fetch the next batch, flattened; run rebalance callbacks first.

        Returns an empty list when nothing arrived within ``timeout_s`` (also
        while the broker is unreachable: the consumer retries by itself, and
        a retriable client error is logged, counted in ``poll_errors`` and
        taken for an empty poll).
        Records of a partition that ``on_assign`` seeked are dropped from this
        batch; the next poll reads them from the new position.
        """
        return flatten_records(self._poll(timeout_s, None))

    def poll_columns(self, timeout_s: float, max_records: int | None = None) -> list[Chunk]:
        """As :meth:`poll`, one :data:`Chunk` of columns per partition instead of records.

        No object per record: what a process that hands batches to another sends.
        """
        return chunks_from_polled(self._poll(timeout_s, max_records))

    def _poll(self, timeout_s: float, max_records: int | None) -> dict[Any, list[Any]]:
        """kafka-python's poll, callbacks run, sought partitions left out, positions noted."""
        started = time.monotonic()
        try:
            polled = self._consumer.poll(
                timeout_ms=max(0, int(timeout_s * 1000)),
                max_records=max_records or self._max_poll_records,
            )
        except KafkaError as exc:
            if not exc.retriable:
                raise
            # A broker outage surfaces here too (e.g. the coordinator lookup's
            # metadata refresh fails on a reset connection): an empty poll,
            # not a crash. The client reconnects with backoff by itself.
            self._log_poll_error(exc)
            time.sleep(max(0.0, timeout_s - (time.monotonic() - started)))
            polled = {}
        self._seeked_since_fetch = set()
        # The consumer's positions are already past these records; next_offset()
        # answers from them while this poll's rebalance callbacks run.
        self._polled_from = {
            (tp.topic, tp.partition): batch[0].offset for tp, batch in polled.items() if batch
        }
        self._dispatch_events()
        self._polled_from = {}
        self._check_join()
        out = {}
        for tp, batch in polled.items():
            key = (tp.topic, tp.partition)
            if batch and key not in self._seeked_since_fetch:
                out[tp] = batch
                self._positions[key] = batch[-1].offset + 1
        return out

    def _log_poll_error(self, exc: KafkaError) -> None:
        # Once per outage rather than once per poll.
        now = time.monotonic()
        if now - self._last_poll_error >= _POLL_ERROR_LOG_INTERVAL_S:
            log.warning(
                "poll: %s: %s (retrying; the client reconnects by itself)", type(exc).__name__, exc
            )
            self._last_poll_error = now
        self.poll_errors += 1

    def _dispatch_events(self) -> None:
        """Replay queued rebalance events on this (the polling) thread."""
        while self._events:
            kind, partitions = self._events.popleft()
            if kind == "revoke":
                self.join_watch.began()
            # An empty assignment still counts: the replica joined and is idle.
            if not partitions and kind == "revoke":
                continue
            if kind == "revoke":
                log.info("partitions revoked: %s", partitions)
                for tp in partitions:
                    self._positions.pop(tp, None)
                if self._on_revoke is not None:
                    self._on_revoke(partitions)
            else:
                log.info("partitions assigned: %s", partitions)
                self.join_watch.ended()  # if with nothing
                for tp in partitions:
                    if tp in self._pending_seeks:
                        self.seek(tp[0], tp[1], self._pending_seeks.pop(tp))
                if self._on_assign is not None:
                    self._on_assign(partitions)

    def _check_join(self) -> None:
        """Leave and join the group again when :class:`JoinWatch` says the join is stuck."""
        waited = self.join_watch.overdue(self.broker_reachable())
        if waited is None:
            return
        log.warning(
            "no rebalance of the group has ended for %.0f s while the broker "
            "answers; leaving the group and joining it again",
            waited,
        )
        self.rejoins += 1
        self.join_watch.began()
        try:
            self._consumer.unsubscribe()
            self._consumer.subscribe(listener=self._listener, **self._subscription)
        except KafkaError as exc:
            log.warning(
                "rejoining the group failed (%s: %s); retrying later", type(exc).__name__, exc
            )

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``(topic, partition)`` from ``offset`` on.

        A partition not assigned now is remembered and sought when it is
        assigned (before ``on_assign`` runs, which may override it).
        """
        tp = (topic, partition)
        if tp not in self.assignment():
            self._pending_seeks[tp] = offset
            return
        self._consumer.seek(TopicPartition(topic, partition), offset)
        self._positions[tp] = offset
        self._seeked_since_fetch.add(tp)

    def assignment(self) -> set[TP]:
        """The partitions this member owns now."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    # -- committing ----------------------------------------------------------

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit next-to-read offsets for the partitions still assigned (see GroupCommits)."""
        return self._commits.commit(offsets)

    def commit_async(self, offsets: Mapping[TP, int]) -> CommitAnswer:
        """Send a commit (as :meth:`commit`) without waiting for its answer."""
        return self._commits.commit_async(offsets)

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for a partition (a broker round trip)."""
        return self._commits.committed(topic, partition, timeout_s)

    @property
    def commit_failures(self) -> int:
        """Commits that failed (the batch is redone)."""
        return self._commits.failures

    @property
    def commit_skipped_partitions(self) -> int:
        """Partitions left out of a commit because they were no longer assigned."""
        return self._commits.skipped_partitions

    def next_offset(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The next offset this member will read from an assigned partition.

        The committed offset, or where ``auto_offset_reset`` puts a partition
        without one (a broker round trip). Inside :meth:`poll`'s callbacks, a
        partition that the poll returned records of answers its first one's
        offset: those records are yet to be used. None when it cannot be had now.
        """
        if (topic, partition) in self._polled_from:
            return self._polled_from[(topic, partition)]
        try:
            return self._consumer.position(
                TopicPartition(topic, partition), timeout_ms=int(timeout_s * 1000)
            )
        except KafkaError as exc:
            log.warning(
                "%s/%d: position unknown: %s: %s", topic, partition, type(exc).__name__, exc
            )
            return None

    # -- observing -----------------------------------------------------------

    def end_offsets(
        self, partitions: Iterable[TP] | None = None, timeout_s: float = 10.0
    ) -> dict[TP, int]:
        """Next offset to be written per partition (a broker round trip).

        Defaults to the assigned partitions. For per-batch lag use
        :meth:`lag`, which needs no round trip.
        """
        tps = [TopicPartition(t, p) for t, p in (partitions or self.assignment())]
        if not tps:
            return {}
        ends = self._consumer.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}

    def lag(self) -> dict[TP, int]:
        """Records behind the high watermark, per assigned partition.

        Uses the high watermark that each fetch response carries, so it costs
        no broker call. Partitions not fetched yet are absent.
        """
        out: dict[TP, int] = {}
        for tp in self._consumer.assignment():
            key = (tp.topic, tp.partition)
            high = self._consumer.highwater(tp)
            pos = self._positions.get(key)
            if pos is None:
                pos = fetch_position(self._consumer, tp)
            if high is not None and pos is not None:
                out[key] = max(0, high - pos)
        return out

    def broker_reachable(self) -> bool:
        """True while some broker connection has answered recently.

        Cheap enough for every readiness probe: it reads when bytes last
        arrived on the consumer's connections (fetch responses every
        ``fetch_max_wait_ms`` while polling, heartbeats otherwise) and makes
        no call of its own. A stopped or partitioned broker leaves sockets
        open but silent, which a plain "connected" check would miss.
        """
        last = self.last_broker_read()
        return last is not None and time.monotonic() - last <= self._reachability_window_s

    def last_broker_read(self) -> float | None:
        """When a broker connection last received bytes (``time.monotonic()``), if any."""
        return last_broker_read(self._consumer)

    # -- closing -------------------------------------------------------------

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group and close connections within ``timeout_s``.

        Does not commit: the loop commits explicitly before closing. The
        revocation that closing causes is passed to ``on_revoke``.
        """
        try:
            self._consumer.close(autocommit=False, timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            log.warning("closing the consumer: %s: %s", type(exc).__name__, exc)
        self._dispatch_events()
