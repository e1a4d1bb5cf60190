"""A Kafka source whose consumer runs in a child process and reads ahead.

kafka-python unpacks every record in Python on the thread that polls. In one
process that work shares the interpreter lock with decoding and scoring, so
the pipeline runs at the sum of the two costs. :class:`ProcessKafkaSource`
runs a :class:`~streamgmm.stream.kafka_io.KafkaSource` in a child process that
keeps reading into a buffer of one batch, so the child reads batch N+1 on one
core while the loop scores batch N on another.

It has the KafkaSource interface and the same delivery semantics, because
every decision stays in the caller:

- the child commits, seeks and answers ``committed`` only when asked, between
  two slices of its reading; commits go out without waiting and are answered
  when the broker has answered (``commit_async``);
- rebalance events travel with the batch they came with and the caller's
  ``on_assign`` / ``on_revoke`` run on the caller's thread, as with
  KafkaSource; records of a partition the caller seeks after the child read
  them are dropped (the next poll reads them from the new position), and so
  are buffered records of a partition revoked meanwhile;
- ``assignment`` and ``lag`` answer from the state the child sends with every
  reply, ``broker_reachable`` from a value a thread of the child keeps fresh,
  so health probes never wait for the child.

The child ignores SIGINT and SIGTERM (the daemon finishes its batch and then
closes the source, which makes the child leave the group) and exits when the
daemon's end of the pipe closes, so a killed daemon leaves no consumer behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from streamgmm.stream.kafka_child import serve
from streamgmm.stream.kafka_pipe import Batch, ChildState
from streamgmm.stream.protocols import TP, CommitAnswer, Source
from streamgmm.stream.records import Record

log = logging.getLogger(__name__)

__all__ = ["ProcessKafkaSource"]


class StartAborted(Exception):
    """The consumer process was told to stop before it had connected."""


class ProcessKafkaSource(Source):
    """:class:`~streamgmm.stream.kafka_io.KafkaSource` in a child process, reading ahead.

    Takes KafkaSource's parameters, plus:

    Parameters
    ----------
    log_level, log_format : str
        The child's logging (``logging.level`` and ``logging.format`` of the
        daemon's configuration), so its lines look like the daemon's.
    start_timeout_s : float
        How long the child may take to start and connect, on top of the
        consumer's own ``bootstrap_timeout_ms``.
    abort : threading.Event, optional
        Set (the daemon told to stop) while the child still connects: the
        child is killed at once and :class:`StartAborted` raised, rather than
        waiting out the consumer's bootstrap timeout.

    Raises
    ------
    ValueError, kafka.errors.KafkaTimeoutError
        As KafkaSource's constructor, raised here from the child.
    """

    partitioned = True
    #: The loop may verify and commit batch N after starting N+1: this
    #: source's poll hands over a batch read while the caller worked.
    reads_ahead = True

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        group_id: str,
        topics: list[str] | None = None,
        pattern: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        max_poll_records: int = 500,
        on_assign: Any = None,
        on_revoke: Any = None,
        reachability_window_s: float = 15.0,
        commit_timeout_s: float = 10.0,
        log_level: str | None = None,
        log_format: str = "text",
        start_timeout_s: float = 60.0,
        abort: threading.Event | None = None,
    ) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._max_poll_records = max_poll_records
        self._lock = threading.RLock()
        self._next_id = 0
        self._ahead: int | None = None  # id of the poll request the child will answer next
        self._stash: dict[int, tuple[bool, Any]] = {}  # answers not yet asked for
        self._state = ChildState()
        self._current: Batch | None = None  # the batch whose callbacks are running
        self._closed = False
        kwargs = dict(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            topics=topics,
            pattern=pattern,
            client_options=dict(client_options or {}),
            max_poll_records=max_poll_records,
            reachability_window_s=reachability_window_s,
            commit_timeout_s=commit_timeout_s,
        )
        level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._conn, child_end = ctx.Pipe()
        self._reachability_window_s = reachability_window_s
        # When the child's broker connections last received bytes (monotonic
        # seconds, one clock for all processes), kept fresh by a thread of the
        # child even while its main thread waits on a commit in an outage.
        self._last_read = ctx.Value("d", float("-inf"), lock=False)
        self._process = ctx.Process(
            target=serve,
            args=(child_end, kwargs, level, log_format, self._last_read),
            name="streamgmm-kafka-consumer",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        try:
            self._wait_start(self._send("start"), start_timeout_s, abort)
        except StartAborted:
            self._process.kill()  # it ignores SIGTERM, and would be joined at exit
            self._stop_process(5.0)
            raise
        except BaseException:
            self._stop_process(5.0)
            raise

    def _wait_start(self, request: int, timeout_s: float, abort: threading.Event | None) -> None:
        """The child's answer to ``start``, looking at ``abort`` every 0.1 s."""
        deadline = time.monotonic() + timeout_s
        while True:
            if abort is not None and abort.is_set():
                raise StartAborted("stopped while the Kafka consumer process was connecting")
            remaining = deadline - time.monotonic()
            try:
                self._wait(request, timeout_s=max(0.0, min(0.1, remaining)))
                return
            except TimeoutError:
                if remaining <= 0.1:
                    raise TimeoutError(
                        f"the Kafka consumer process did not answer within {timeout_s:.0f}s"
                    ) from None

    # -- reading -------------------------------------------------------------

    def poll(self, timeout_s: float) -> list[Record]:
        """The next batch (read ahead by the child); rebalance callbacks run first.

        Asks the child for the batch after this one before returning, so it
        is read while the caller works on this one.
        """
        with self._lock:
            request = self._ahead if self._ahead is not None else self._ask_poll(timeout_s)
            self._ahead = None
            batch = self._wait(request, timeout_s=timeout_s + 60.0)
            self._dispatch(batch)
            records = batch.records()
            self._ahead = self._ask_poll(timeout_s)
            return records

    def _ask_poll(self, timeout_s: float) -> int:
        return self._send("poll", timeout_s, self._max_poll_records)

    def _dispatch(self, batch: Batch) -> None:
        """Run the caller's rebalance callbacks, in order, on this thread."""
        for kind, partitions in batch.events:
            hook = self._on_revoke if kind == "revoke" else self._on_assign
            if hook is not None:
                # Seeks the hook makes mark this batch's records of those partitions stale.
                self._current = batch
                try:
                    hook(partitions)
                finally:
                    self._current = None

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``(topic, partition)`` from ``offset`` on (see KafkaSource.seek)."""
        with self._lock:
            self._call("seek", topic, partition, offset)
            # Records the child read before the seek are not at the new position.
            tp = (topic, partition)
            for ok, batch in self._stash.values():
                if ok:
                    batch.stale.add(tp)
            if self._current is not None:
                self._current.stale.add(tp)

    def assignment(self) -> set[TP]:
        """The partitions this member owns, as of the child's last reply."""
        return set(self._state.assignment)

    def next_offset(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """See KafkaSource.next_offset; inside a callback, the batch's first offset."""
        batch = self._current
        for chunk in batch.chunks if batch is not None else ():
            if chunk[0] == topic and chunk[1] == partition:
                return chunk[2][0]
        return self._call("next_offset", topic, partition, timeout_s)

    # -- committing ----------------------------------------------------------

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit next-to-read offsets (see KafkaSource.commit); True when done."""
        return bool(self._call("commit", dict(offsets)))

    def commit_async(self, offsets: Mapping[TP, int]) -> CommitAnswer:
        """Ask for a commit and go on; ``.result()`` is its answer (as :meth:`commit`'s).

        The child commits between two slices of its reading, so the caller can
        work on the next batch meanwhile.
        """
        with self._lock:
            return _Answer(self, self._send("commit", dict(offsets)))

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for a partition."""
        return self._call("committed", topic, partition, timeout_s)

    # -- observing -----------------------------------------------------------

    def end_offsets(
        self, partitions: Iterable[TP] | None = None, timeout_s: float = 10.0
    ) -> dict[TP, int]:
        """Next offset to be written per partition (a broker round trip)."""
        parts = None if partitions is None else list(partitions)
        return self._call("end_offsets", parts, timeout_s)

    def lag(self) -> dict[TP, int]:
        """Records behind the high watermark per partition, as of the child's last reply."""
        return dict(self._state.lag)

    @property
    def rejoins(self) -> int:
        """Times the child's consumer rejoined its group, as of its last reply."""
        return self._state.rejoins

    @property
    def child_cpu_s(self) -> float:
        """Processor time the child had used at its last reply."""
        return self._state.cpu_s

    def broker_reachable(self) -> bool:
        """True while the child is alive and its broker connections answered recently."""
        recent = time.monotonic() - self._last_read.value <= self._reachability_window_s
        return recent and self._process.is_alive()

    # -- closing -------------------------------------------------------------

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group (the revocation reaches ``on_revoke``) and stop the child."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            deadline = time.monotonic() + timeout_s
            try:
                if self._ahead is not None:  # a batch read ahead and never handed over
                    self._wait(self._ahead, timeout_s=max(0.1, deadline - time.monotonic()))
                    self._ahead = None
                events = self._call(
                    "close",
                    max(0.1, deadline - time.monotonic() - 0.5),
                    timeout_s=max(0.5, deadline - time.monotonic()),
                )
                self._dispatch(Batch((), events))
            except (RuntimeError, OSError, TimeoutError) as exc:
                log.warning("closing the consumer process: %s", exc)
            finally:
                self._stop_process(max(0.5, deadline - time.monotonic()))

    def _stop_process(self, timeout_s: float) -> None:
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5.0)
        self._conn.close()

    # -- the pipe ------------------------------------------------------------

    def _send(self, method: str, *args: Any) -> int:
        self._next_id += 1
        try:
            self._conn.send((self._next_id, method, args))
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
        return self._next_id

    def _call(self, method: str, *args: Any, timeout_s: float = 120.0) -> Any:
        with self._lock:
            return self._wait(self._send(method, *args), timeout_s=timeout_s)

    def _wait(self, request: int, timeout_s: float) -> Any:
        """The answer to ``request``; answers to polls that come first are kept."""
        deadline = time.monotonic() + timeout_s
        while request not in self._stash:
            remaining = deadline - time.monotonic()
            try:
                ready = self._conn.poll(max(0.0, remaining))
                if ready:
                    answer_id, ok, value, state = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise self._gone() from exc
            if not ready:  # (TimeoutError is an OSError: raised outside the try)
                raise TimeoutError(
                    f"the Kafka consumer process did not answer within {timeout_s:.0f}s"
                )
            if state is not None:
                self._state = state
            # A read-ahead batch that comes in while waiting for something
            # else is kept for the poll that asked for it.
            self._stash[answer_id] = (ok, value)
        ok, value = self._stash.pop(request)
        if not ok:
            raise value
        return value

    def _answered(self, request: int) -> bool:
        """Whether the answer to ``request`` is in; reads what has arrived, never waits."""
        with self._lock:
            try:
                while request not in self._stash and self._conn.poll(0):
                    answer_id, ok, value, state = self._conn.recv()
                    if state is not None:
                        self._state = state
                    self._stash[answer_id] = (ok, value)
            except (EOFError, OSError) as exc:
                raise self._gone() from exc
            return request in self._stash

    def _gone(self) -> RuntimeError:
        self._process.join(1.0)
        return RuntimeError(
            f"the Kafka consumer process exited (exit code {self._process.exitcode})"
        )


class _Answer:
    """A request whose answer is taken later (a commit the loop settles after the next batch)."""

    def __init__(self, source: ProcessKafkaSource, request: int) -> None:
        self._source, self._request = source, request

    def done(self) -> bool:
        """Whether the answer is in (takes what the pipe holds, without waiting)."""
        return self._source._answered(self._request)

    def result(self, timeout_s: float = 120.0) -> bool:
        with self._source._lock:
            return bool(self._source._wait(self._request, timeout_s))
