"""Kafka source and sinks for the consumer loop (kafka-python 3.x).

:class:`KafkaSource` wraps a group-managed ``KafkaConsumer`` with auto-commit
off and raw bytes, and turns each poll into a flat list of
:class:`~streamgmm.stream.records.Record`. :class:`KafkaSink` wraps a
``KafkaProducer`` and keeps the future of every send, because ``flush()``
does not raise for records that failed: only their futures say so.

What kafka-python 3.x does that shapes this module:

- Rebalance listeners run on the client's IO thread, the same thread that
  sends heartbeats. A blocking call from there (``commit()``, ``committed()``,
  ``end_offsets()``) raises ``RuntimeError``, and anything slow delays
  heartbeats. The listener here only queues the event; the user's
  ``on_assign`` / ``on_revoke`` run on the polling thread right after
  ``poll()`` returns, where seeking and committing are allowed.
- ``KafkaConsumer`` and ``KafkaProducer`` connect in their constructors and
  raise ``KafkaTimeoutError`` after ``bootstrap_timeout_ms`` when no broker
  answers.
- An idempotent producer (the 3.x default) was seen to stop delivering for
  good after a delivery timeout; the sink turns idempotence off unless the
  caller asks for it. Alerts carry deterministic ids, so a retried duplicate
  is harmless downstream.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import KafkaError, KafkaTimeoutError

from streamgmm.stream.protocols import TP, CommitAnswer, Sink, Source
from streamgmm.stream.records import Chunk, Header, Record
from streamgmm.stream.redact import redact_options

log = logging.getLogger(__name__)

#: (topic, partition): how partitions are named outside this module.
PartitionCallback = Callable[[list[TP]], None]

_POLL_ERROR_LOG_INTERVAL_S = 10.0

# Options the source sets itself: overriding them would break at-least-once
# delivery (auto-commit) or the raw-bytes contract (deserializers).
_CONSUMER_RESERVED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "max_poll_records",
    }
)
_PRODUCER_RESERVED = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})

#: Producer defaults: acknowledged by all replicas, bounded delivery time, no
#: idempotence (see the module docstring).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": False,
    "linger_ms": 5,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "max_block_ms": 10_000,
}


def _check_options(
    options: Mapping[str, Any], known: Iterable[str], reserved: frozenset[str], what: str
) -> None:
    """Reject options kafka-python does not know or that streamgmm sets itself."""
    known = set(known)
    for name in options:
        if name in reserved:
            raise ValueError(f"client_options.{name}: set by streamgmm for the {what}; remove it")
        if name not in known:
            raise ValueError(
                f"client_options.{name}: not a kafka-python {what} option "
                f"(expected one of the KafkaConsumer/KafkaProducer settings)"
            )


def flatten_records(polled: Mapping[Any, Iterable[Any]]) -> list[Record]:
    """Turn ``poll()``'s ``{TopicPartition: [ConsumerRecord]}`` into one list.

    Partitions come in (topic, partition) order and records in offset order
    within each, so a batch is reproducible whatever order the fetches
    completed in.

    Parameters
    ----------
    polled : mapping of TopicPartition to list of ConsumerRecord
        What ``KafkaConsumer.poll`` returned.

    Returns
    -------
    list of Record
    """
    out: list[Record] = []
    for tp in sorted(polled, key=_tp_key):
        out.extend(
            Record(
                r.topic,
                r.partition,
                r.offset,
                r.key,
                r.value,
                r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None,
                r.headers if r.headers is not None else (),
            )
            for r in polled[tp]
        )
    return out


def _tp_key(tp: Any) -> TP:
    return (tp[0], tp[1])


class _QueueingListener(ConsumerRebalanceListener):
    """Rebalance listener that only records what happened.

    It runs on kafka-python's IO thread, where a blocking broker call raises
    and a slow one starves heartbeats; :meth:`KafkaSource.poll` replays the
    events on the polling thread.
    """

    def __init__(self, events: deque[tuple[str, list[TP]]]) -> None:
        self._events = events

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._events.append(("revoke", sorted((tp.topic, tp.partition) for tp in revoked)))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._events.append(("assign", sorted((tp.topic, tp.partition) for tp in assigned)))

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        # Lost partitions were taken by the group already: for the loop this
        # is a revocation whose offsets can no longer be committed.
        self._events.append(("revoke", sorted((tp.topic, tp.partition) for tp in lost)))


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
        _check_options(options, KafkaConsumer.DEFAULT_CONFIG, _CONSUMER_RESERVED, "consumer")
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
        self._commit_timeout_ms = int(commit_timeout_s * 1000)
        self._events: deque[tuple[str, list[TP]]] = deque()
        self._positions: dict[TP, int] = {}
        self._pending_seeks: dict[TP, int] = {}
        self._polled_from: dict[TP, int] = {}
        self._seeked_since_fetch: set[TP] = set()
        self.commit_failures = 0
        self.commit_skipped_partitions = 0
        self.poll_errors = 0
        self._last_poll_error = float("-inf")
        self._listener = _QueueingListener(self._events)
        self._subscription = ({"topics": list(topics)} if topics is not None
                              else {"pattern": pattern})
        # A join that has not ended within twice the time a group coordinator
        # allows a rebalance (the members' rebalance timeout, max_poll_interval,
        # plus a session for the dead ones to expire) is stuck: the member
        # leaves and joins again as a new member, which makes the coordinator
        # start the rebalance afresh (see _check_join).
        merged = {**KafkaConsumer.DEFAULT_CONFIG, **options}
        self.rejoin_after_s = 2.0 * (merged["max_poll_interval_ms"]
                                     + merged["session_timeout_ms"]) / 1000.0
        self.rejoins = 0
        self._unjoined_since: float | None = time.monotonic()
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
        chunks = []
        for tp in sorted(polled := self._poll(timeout_s, max_records), key=_tp_key):
            batch = polled[tp]
            chunks.append((
                tp.topic, tp.partition,
                [r.offset for r in batch],
                [r.key for r in batch],
                [r.value for r in batch],
                [r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None
                 for r in batch],
                [r.headers if r.headers is not None else () for r in batch],
            ))
        return chunks

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
        self._polled_from = {(tp.topic, tp.partition): batch[0].offset
                             for tp, batch in polled.items() if batch}
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
            log.warning("poll: %s: %s (retrying; the client reconnects by itself)",
                        type(exc).__name__, exc)
            self._last_poll_error = now
        self.poll_errors += 1

    def _dispatch_events(self) -> None:
        """Replay queued rebalance events on this (the polling) thread."""
        while self._events:
            kind, partitions = self._events.popleft()
            if kind == "revoke":
                self._unjoined_since = time.monotonic()  # a rebalance began
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
                self._unjoined_since = None  # the rebalance ended, if with nothing
                for tp in partitions:
                    if tp in self._pending_seeks:
                        self.seek(tp[0], tp[1], self._pending_seeks.pop(tp))
                if self._on_assign is not None:
                    self._on_assign(partitions)

    def _check_join(self) -> None:
        """Leave and join the group again when a rebalance has not ended for
        ``rejoin_after_s`` while the broker answers.

        A Kafka coordinator ends a rebalance after the rebalance timeout
        whoever has not rejoined; one that does not (seen with three members
        restarted every few seconds: no member was assigned anything for nine
        minutes, until a new member joined) would otherwise leave the group
        idle for good. A member with no partitions in a stable group is not
        affected: its (empty) assignment ended the rebalance.
        """
        if self._unjoined_since is None:
            return
        waited = time.monotonic() - self._unjoined_since
        if waited < self.rejoin_after_s or not self.broker_reachable():
            return
        log.warning("no rebalance of the group has ended for %.0f s while the broker "
                    "answers; leaving the group and joining it again", waited)
        self.rejoins += 1
        self._unjoined_since = time.monotonic()
        try:
            self._consumer.unsubscribe()
            self._consumer.subscribe(listener=self._listener, **self._subscription)
        except KafkaError as exc:
            log.warning("rejoining the group failed (%s: %s); retrying later",
                        type(exc).__name__, exc)

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
        """Commit next-to-read offsets for the partitions still assigned.

        Parameters
        ----------
        offsets : mapping of (topic, partition) to int
            The offset to resume from, i.e. last processed offset + 1.

        Returns
        -------
        bool
            True if every assigned partition's offset was committed. A
            failure (rebalance under way, timeout, broker gone) is logged and
            counted in ``commit_failures``; the batch will be redone
            (at-least-once). Partitions no longer assigned are left out and
            counted in ``commit_skipped_partitions``.
        """
        to_commit = self._assigned_offsets(offsets)
        if not to_commit:
            return True
        try:
            self._consumer.commit(offsets=to_commit, timeout_ms=self._commit_timeout_ms)
        except KafkaError as exc:
            self.commit_failures += 1
            log.warning(
                "commit of %d partition(s) failed: %s: %s", len(to_commit), type(exc).__name__, exc
            )
            return False
        return True

    def commit_async(self, offsets: Mapping[TP, int]) -> CommitAnswer:
        """Send a commit (as :meth:`commit`) without waiting for its answer."""
        to_commit = self._assigned_offsets(offsets)
        if not to_commit:
            return PendingCommit(None, self, 0)
        return PendingCommit(self._consumer.commit_async(offsets=to_commit), self, len(to_commit))

    def _assigned_offsets(self, offsets: Mapping[TP, int]) -> dict[TopicPartition, Any]:
        """The offsets of partitions still assigned, as kafka-python commits them."""
        assigned = self.assignment()
        to_commit = {
            TopicPartition(t, p): OffsetAndMetadata(off, "", -1)
            for (t, p), off in offsets.items()
            if (t, p) in assigned
        }
        skipped = len(offsets) - len(to_commit)
        if skipped:
            self.commit_skipped_partitions += skipped
            log.info("commit: %d partition(s) no longer assigned, not committed", skipped)
        return to_commit

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for a partition (a broker round trip)."""
        return self._consumer.committed(
            TopicPartition(topic, partition), timeout_ms=int(timeout_s * 1000)
        )

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
            return self._consumer.position(TopicPartition(topic, partition),
                                           timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            log.warning("%s/%d: position unknown: %s: %s", topic, partition,
                        type(exc).__name__, exc)
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
                pos = self._fetch_position(tp)
            if high is not None and pos is not None:
                out[key] = max(0, high - pos)
        return out

    def _fetch_position(self, tp: TopicPartition) -> int | None:
        # KafkaConsumer.position() may block on a broker call; the
        # subscription state holds the same number without one.
        try:
            position = self._consumer._subscription.assignment[tp].position
        except (AttributeError, KeyError):
            return None
        return None if position is None else position.offset

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
        # kafka-python 3.x keeps its connections in the network manager; read
        # the time of the last received bytes from each live transport.
        try:
            conns = list(self._consumer._manager._conns.values())
        except AttributeError:
            return None
        reads = [
            c.transport.last_read
            for c in conns
            if getattr(c, "connected", False) and getattr(c, "transport", None) is not None
        ]
        return max(reads) if reads else None

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


class PendingCommit:
    """A commit sent without waiting: :meth:`done` says whether it is answered, :meth:`result`
    waits for the answer (True when committed; a failure is logged and counted by the source)."""

    def __init__(self, future: Any, source: KafkaSource, n_partitions: int) -> None:
        self._future, self._source, self._n = future, source, n_partitions
        self._answered = threading.Event()
        self._ok: bool | None = None
        if future is None:  # nothing to commit
            self._ok = True
            self._answered.set()
        else:
            future.add_both(lambda _: self._answered.set())

    def done(self) -> bool:
        """Whether the broker has answered (or there was nothing to commit)."""
        return self._answered.is_set()

    def result(self, timeout_s: float | None = None) -> bool:
        """True when the offsets were committed; waits up to the source's commit timeout."""
        if self._ok is None:
            wait = timeout_s if timeout_s is not None else self._source._commit_timeout_ms / 1000
            if not self._answered.wait(wait):
                self._fail(f"no answer within {wait:g}s")
            elif self._future.failed():
                exc = self._future.exception
                self._fail(f"{type(exc).__name__}: {exc}")
            else:
                self._ok = True
        return bool(self._ok)

    def _fail(self, why: str) -> None:
        self._ok = False
        self._source.commit_failures += 1
        log.warning("commit of %d partition(s) failed: %s", self._n, why)


class KafkaSink(Sink):
    """Producer side of one topic that can tell which sends were delivered.

    Parameters
    ----------
    bootstrap_servers : str or list of str, optional
        Brokers; unused when ``producer`` is given.
    topic : str
        Where :meth:`send` writes.
    client_options : dict, optional
        Further kafka-python producer settings, over :data:`PRODUCER_DEFAULTS`.
    producer : KafkaProducer, optional
        An existing producer to share (e.g. between the alert and dead-letter
        sinks, see :meth:`sibling`). A shared producer is closed by the sink
        that created it, not by its siblings.

    Examples
    --------
    >>> sink = KafkaSink("127.0.0.1:9092", "alerts")  # doctest: +SKIP
    >>> dlq = sink.sibling("alerts-dlq")               # doctest: +SKIP
    >>> sink.send(b'{"id": "tx/0/41"}', key=b"tx/0/41")  # doctest: +SKIP
    >>> n_ok, errors = sink.flush_and_verify(10.0)      # doctest: +SKIP
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str] | None,
        topic: str,
        client_options: Mapping[str, Any] | None = None,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.topic = topic
        self._owns_producer = producer is None
        if producer is None:
            if bootstrap_servers is None:
                raise ValueError("bootstrap_servers: expected brokers when no producer is given")
            producer = make_producer(bootstrap_servers, client_options)
        self._producer = producer
        self._futures: list[Any] = []
        self._send_errors: list[str] = []

    def sibling(self, topic: str) -> KafkaSink:
        """A sink on another topic that shares this sink's producer."""
        return KafkaSink(None, topic, producer=self._producer)

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None:
        """Queue one record; its outcome is known after :meth:`flush_and_verify`."""
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            # send() raises itself when metadata or buffer space is not to be
            # had within max_block_ms.
            self._send_errors.append(f"{self.topic}: {type(exc).__name__}: {exc}")
            return
        self._futures.append(future)

    @property
    def pending(self) -> int:
        """Records sent since the last :meth:`flush_and_verify`."""
        return len(self._futures) + len(self._send_errors)

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]:
        """Flush and check every record sent since the last call.

        Returns
        -------
        n_ok : int
            Records the broker acknowledged.
        errors : list of str
            One message per record that failed or was not acknowledged within
            ``timeout_s``. Commit offsets only when this is empty.
        """
        return self.verify(self.seal(), timeout_s)

    def seal(self) -> tuple[list[Any], list[str]]:
        """The records sent since the last seal, to :meth:`verify` later.

        Records sent after the seal are not waited for by its verification, so
        a caller can send the next batch before checking this one.
        """
        sealed = (self._futures, self._send_errors)
        self._futures, self._send_errors = [], []
        return sealed

    def done(self, sealed: tuple[list[Any], list[str]]) -> bool:
        """Whether every record of a seal has its answer (verify would not wait)."""
        return all(f.is_done for f in sealed[0])

    def verify(
        self, sealed: tuple[list[Any], list[str]], timeout_s: float
    ) -> tuple[int, list[str]]:
        """Wait up to ``timeout_s`` for a seal's records; the same answer as flush_and_verify."""
        futures, send_errors = sealed
        errors = list(send_errors)
        if not futures:
            return 0, errors
        if not all(f.is_done for f in futures):
            # Records still lingering in the producer go out now; a flush that
            # times out leaves futures pending, reported below.
            with contextlib.suppress(KafkaTimeoutError):
                self._producer.flush(timeout=timeout_s)
        n_ok = 0
        for future in futures:
            if not future.is_done:
                errors.append(f"{self.topic}: not acknowledged within {timeout_s:g}s")
            elif future.failed():
                exc = future.exception
                errors.append(f"{self.topic}: {type(exc).__name__}: {exc}")
            else:
                n_ok += 1
        if errors:
            log.warning(
                "%s: %d of %d record(s) not delivered; first: %s",
                self.topic,
                len(errors),
                len(futures),
                errors[0],
            )
        return n_ok, errors

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued within ``timeout_s``, then close the producer.

        Records still undelivered then are dropped (and logged). A sink that
        shares another sink's producer leaves it open.
        """
        if self._owns_producer:
            close_producer(self._producer, timeout_s)


def make_producer(
    bootstrap_servers: str | list[str], client_options: Mapping[str, Any] | None = None
) -> KafkaProducer:
    """Build a raw-bytes producer with :data:`PRODUCER_DEFAULTS` under ``client_options``."""
    options = dict(client_options or {})
    _check_options(options, KafkaProducer.DEFAULT_CONFIG, _PRODUCER_RESERVED, "producer")
    config = {**PRODUCER_DEFAULTS, **options}
    log.info("kafka producer: servers=%s options=%s", bootstrap_servers, redact_options(config))
    return KafkaProducer(bootstrap_servers=bootstrap_servers, **config)


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close a producer in bounded time even when records are still queued.

    ``KafkaProducer.close(timeout)`` flushes first and raises
    ``KafkaTimeoutError`` if that flush times out, leaving the producer open
    (and its exit hook raising again later). Here the sender is then told to
    drop what is queued, which fails those futures, and the close completes.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaTimeoutError:
        log.warning("producer: records still undelivered after %gs; dropping them", timeout_s)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(max(timeout_s, 1.0))
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:
        log.warning("producer: could not be closed cleanly; its sender thread is a daemon")
