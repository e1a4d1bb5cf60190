"""The consumer process's side: a KafkaSource that reads ahead, serving the daemon's requests.

:func:`serve` is the process's main (spawned by
:class:`~streamgmm.stream.kafka_process.ProcessKafkaSource`);
:class:`ConsumerChild` reads slices into a buffer of one batch between
requests (the protocol is :mod:`~streamgmm.stream.kafka_pipe`).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

from streamgmm.stream.kafka_pipe import Batch, ChildState, merge_chunks
from streamgmm.stream.protocols import TP, CommitAnswer
from streamgmm.stream.records import Chunk

#: How long one slice of the child's poll may block before it looks for
#: requests: the longest a commit or seek waits when the topic is quiet.
_SLICE_S = 0.005
#: Records one slice reads at most: the longest a request waits when records flow.
_SLICE_RECORDS = 250
#: How often the child publishes when its broker connections last read.
_READS_PERIOD_S = 0.2


class ConsumerChild:
    """The child's side: a KafkaSource that reads ahead into a buffer of one batch.

    It keeps polling while the daemon works, so kafka-python's fetches stay
    in flight (they advance only inside ``poll``), and answers a poll request
    from the buffer at once when it holds records. Answers leave through a
    sender thread: a batch larger than the pipe's buffer waits there for the
    daemon to read it, not in the reading loop.
    """

    def __init__(self, conn: Any, kwargs: dict[str, Any]) -> None:
        from streamgmm.stream.kafka_source import KafkaSource

        self.conn = conn
        self.events: list[tuple[str, list[TP]]] = []
        self.source = KafkaSource(
            **kwargs,
            on_assign=lambda tps: self.events.append(("assign", list(tps))),
            on_revoke=lambda tps: self.events.append(("revoke", list(tps))),
        )
        self.capacity = int(kwargs["max_poll_records"])
        self.polling = False  # reads only once the daemon has asked for a batch
        # The poll request waiting for an answer: request id, deadline, most records.
        self.request: tuple[int, float, int] | None = None
        self.chunks: list[Chunk] = []
        self.n_gathered = 0
        self.drained = False  # the last slice found nothing more to read
        self.error: Exception | None = None  # a reading error, for the next poll request
        self.commits: deque[tuple[int, CommitAnswer]] = deque()
        self.outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.sender = threading.Thread(
            target=self._send_loop, name="streamgmm-answers", daemon=True
        )
        self.sender.start()

    def state(self) -> ChildState:
        s = self.source
        return ChildState(frozenset(s.assignment()), s.lag(), time.process_time(), s.rejoins)

    def reply(self, request: int, ok: bool, value: Any) -> None:
        self.outbox.put((request, ok, value, self.state()))

    def _send_loop(self) -> None:
        while (message := self.outbox.get()) is not None:
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the daemon is gone
                return
            except Exception:  # noqa: BLE001 - an answer that cannot be pickled
                request, _, value, state = message
                self.conn.send(
                    (request, False, RuntimeError(f"{type(value).__name__}: {value}"), state)
                )

    def run(self) -> None:
        try:
            while self.step():
                pass
        finally:
            self.outbox.put(None)
            self.sender.join(10.0)

    def step(self) -> bool:
        """Serve a request, or read a slice; False once closed or orphaned."""
        self.answer_commits()
        room = self.polling and self.n_gathered < self.capacity and self.error is None
        if self.conn.poll(0.0 if room else _SLICE_S):
            try:
                request, method, args = self.conn.recv()
            except EOFError:  # the daemon is gone
                self.source.close(5.0)
                return False
            if not self.serve(request, method, args):
                return False
        elif room:
            self.read_slice()
        self.maybe_answer()
        return True

    def answer_commits(self) -> None:
        """Answer the commits whose outcome is known, in the order they were asked."""
        while self.commits and self.commits[0][1].done():
            request, answer = self.commits.popleft()
            self.reply(request, True, answer.result())

    def serve(self, request: int, method: str, args: tuple) -> bool:
        if method == "poll":
            timeout_s, max_records = args
            self.request = (request, time.monotonic() + timeout_s, max_records)
            self.polling = True
            return True
        if method == "commit":
            # Sent now, answered when the broker has: reading goes on meanwhile.
            try:
                self.commits.append((request, self.source.commit_async(*args)))
            except Exception as exc:  # noqa: BLE001 - the caller raises it
                self.reply(request, False, exc)
            return True
        if method == "close":
            self.source.close(args[0])
            self.reply(request, True, self.take_events())
            return False
        if method == "next_offset" and (first := self.first_buffered(args[0], args[1])) is not None:
            # Read ahead, not handed over yet: the daemon's next record is the buffer's first.
            self.reply(request, True, first)
            return True
        try:
            value = None if method == "start" else getattr(self.source, method)(*args)
        except Exception as exc:  # noqa: BLE001 - the caller raises it
            self.reply(request, False, exc)
            return True
        if method == "seek":
            self.drop({(args[0], args[1])})
        self.reply(request, True, value)
        return True

    def read_slice(self) -> None:
        """Read up to one slice into the buffer."""
        # Block briefly only while the buffer is empty; then take what is buffered.
        wait = 0.0 if self.n_gathered else _SLICE_S
        want = min(self.capacity - self.n_gathered, _SLICE_RECORDS)
        seen = len(self.events)
        try:
            got = self.source.poll_columns(wait, max_records=want)
        except Exception as exc:  # noqa: BLE001 - the next poll request raises it
            self.error = exc
            return
        # A partition revoked during this poll: what was gathered of it before is
        # stale. Only this poll's revocations count: events wait here until a
        # batch carries them, and records gathered in an earlier slice after
        # the partition came back (an eager rebalance revokes and reassigns)
        # are the new position's; dropping them again lost them for good.
        revoked = {tp for kind, tps in self.events[seen:] if kind == "revoke" for tp in tps}
        if revoked:
            self.drop(revoked)
        self.chunks.extend(got)
        n_got = sum(len(chunk[2]) for chunk in got)
        self.n_gathered += n_got
        self.drained = n_got == 0

    def maybe_answer(self) -> None:
        """Answer the waiting poll request when there is a batch (or news, or its time is up)."""
        if self.request is None:
            return
        request, deadline, max_records = self.request
        if self.error is not None:
            self.request, error, self.error = None, self.error, None
            self.chunks, self.n_gathered = [], 0
            self.reply(request, False, error)
            return
        ready = self.n_gathered >= min(max_records, self.capacity) or (
            self.n_gathered and self.drained
        )
        if ready or self.events or time.monotonic() >= deadline:
            batch = Batch(merge_chunks(self.chunks), self.take_events())
            self.request, self.chunks, self.n_gathered = None, [], 0
            self.reply(request, True, batch)

    def first_buffered(self, topic: str, partition: int) -> int | None:
        """The first offset of a partition in the buffer, if it holds any of it."""
        for chunk in self.chunks:
            if chunk[0] == topic and chunk[1] == partition and chunk[2]:
                return chunk[2][0]
        return None

    def drop(self, partitions: set[TP]) -> None:
        """Forget gathered records of partitions sought or revoked meanwhile."""
        self.chunks = [c for c in self.chunks if (c[0], c[1]) not in partitions]
        self.n_gathered = sum(len(c[2]) for c in self.chunks)

    def take_events(self) -> list[tuple[str, list[TP]]]:
        events, self.events = self.events, []
        return events


def serve(
    conn: Any, kwargs: dict[str, Any], log_level: str, log_format: str, last_read: Any
) -> None:
    """The child process's main: build the source, then serve until closed."""
    # The daemon handles stop signals and closes us; Ctrl-C reaches the whole
    # process group, and the consumer must not go before the daemon commits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The reading loop holds the interpreter most of the time; the answering
    # thread must get it promptly (the daemon sets the same for its loop).
    sys.setswitchinterval(0.001)
    from streamgmm.stream.logs import setup_logging

    setup_logging(log_level, log_format)
    request, _, _ = conn.recv()
    try:
        child = ConsumerChild(conn, kwargs)
    except Exception as exc:  # noqa: BLE001 - the daemon raises it (and may retry)
        try:
            conn.send((request, False, exc, None))
        except Exception:  # noqa: BLE001 - an error that cannot be pickled
            conn.send((request, False, RuntimeError(f"{type(exc).__name__}: {exc}"), None))
        return
    threading.Thread(
        target=report_reads,
        args=(child.source, last_read),
        name="streamgmm-broker-reads",
        daemon=True,
    ).start()
    child.reply(request, True, None)
    child.run()


def report_reads(source: Any, last_read: Any) -> None:
    """Copy when the consumer's connections last received bytes, five times a second."""
    while True:
        try:
            read = source.last_broker_read()
        except Exception:  # noqa: BLE001 - connections changing under us: next time
            read = None
        if read is not None:
            last_read.value = read
        time.sleep(_READS_PERIOD_S)
