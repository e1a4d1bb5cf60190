"""Sources without Kafka: files, stdin and the built-in stream.

Every source here is a :class:`~streamgmm.stream.protocols.Source`, as
:class:`~streamgmm.stream.kafka_io.KafkaSource` is, with ``decode`` (CSV
needs the header) and ``exhausted`` (a file read to its end, stdin closed,
the generated stream done). A source has one
"partition": records carry the file path (``-`` for stdin, ``generate`` for
the built-in stream) as topic, partition 0, and the line number (from 1) or
the event's sequence number (from 1) as offset. Blank lines are not events
and are skipped.
Sinks without Kafka are in :mod:`streamgmm.stream.sinks`.
"""

from __future__ import annotations

import codecs
import csv
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, BinaryIO

import msgspec

from streamgmm.stream.decode import Decoded, Decoder
from streamgmm.stream.protocols import TP, Source
from streamgmm.stream.records import Record

log = logging.getLogger(__name__)

__all__ = ["FileSource", "GenerateSource", "StdinSource"]



class _LocalSource(Source):
    """What the single-partition sources share: offsets, seeking, decoding."""

    partitioned = False

    def __init__(self, topic: str, batch_size: int, fmt: str = "jsonl") -> None:
        if batch_size < 1:
            raise ValueError(f"source.batch_size: expected an integer >= 1, got {batch_size!r}")
        self.topic = topic
        self.batch_size = batch_size
        self.format = fmt
        self.header: list[str] | None = None
        self.exhausted = False
        self._skip_to = 0  # offsets below this are read and dropped (after a seek)

    def decode(self, decoder: Decoder, records: Sequence[Record]) -> Decoded:
        """Decode a batch: JSON objects, or CSV lines under the file's header."""
        if self.format == "csv":
            return decoder.decode_csv(records, self.header or [])
        return decoder.decode(records)

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Nothing to commit: a file has no consumer group (checkpoints keep the position)."""
        return True

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """No committed offsets outside Kafka."""
        return None

    def assignment(self) -> set[TP]:
        """The one partition of this source."""
        return {(self.topic, 0)}

    def lag(self) -> dict[TP, int]:
        """Unknown outside Kafka."""
        return {}

    def broker_reachable(self) -> bool:
        """No broker: always reachable."""
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Release the input."""


class _Lines(_LocalSource):
    """Turns raw lines into records: numbering, the CSV header, blank lines, seeks."""

    def __init__(self, topic: str, batch_size: int, fmt: str) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"source.file.format: expected 'jsonl' or 'csv', got {fmt!r}")
        super().__init__(topic, batch_size, fmt)
        self._line = 0

    def _record(self, raw: bytes) -> Record | None:
        """The record of the next line, or None when it is not an event."""
        self._line += 1
        value = raw.rstrip(b"\r\n")
        if self._line == 1 and value.startswith(codecs.BOM_UTF8):
            value = value[len(codecs.BOM_UTF8):]  # as spreadsheets save "CSV UTF-8"
        if self.format == "csv" and self.header is None:
            if value.strip():  # blank lines before the header are skipped too
                self.header = next(csv.reader([value.decode("utf-8", "replace")]), [])
            return None
        if not value.strip() or self._line < self._skip_to:
            return None
        return Record(self.topic, 0, self._line, None, value)


class FileSource(_Lines):
    """Events from a file of JSON lines or CSV, optionally followed as it grows.

    Parameters
    ----------
    path : str
        The file; its path is the records' topic and the first part of alert ids.
    fmt : {"jsonl", "csv"}
        One JSON object a line, or CSV with a header line.
    follow : bool
        Keep reading as the file grows (like ``tail -f``); a truncated file is
        read again from the start. Without it the source is exhausted at the
        end of the file.
    poll_interval_s : float
        How often a followed file is checked for new lines.
    batch_size : int
        Most records one poll returns.
    """

    def __init__(
        self,
        path: str,
        fmt: str = "jsonl",
        follow: bool = False,
        poll_interval_s: float = 0.5,
        batch_size: int = 500,
    ) -> None:
        super().__init__(path, batch_size, fmt)
        try:
            self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise OSError(exc.errno, f"source.file.path: cannot open {path!r}: {exc}") from exc
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self._partial = b""  # a line being written, in follow mode

    def poll(self, timeout_s: float) -> list[Record]:
        """Read up to ``batch_size`` records; wait up to ``timeout_s`` for a followed file."""
        deadline = time.monotonic() + timeout_s
        out: list[Record] = []
        while len(out) < self.batch_size and not self.exhausted:
            raw = self._handle.readline()
            if raw and not raw.endswith(b"\n") and self.follow:
                self._partial += raw  # the writer has not finished this line yet
                continue
            if not raw:
                if not self.follow:
                    self.exhausted = True
                    break
                self._check_truncated()
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    break
                time.sleep(min(self.poll_interval_s, remaining))
                continue
            record = self._record(self._partial + raw)
            self._partial = b""
            if record is not None:
                out.append(record)
        return out

    def _check_truncated(self) -> None:
        if os.fstat(self._handle.fileno()).st_size < self._handle.tell():
            log.warning("%s was truncated; reading it again from the start", self.topic)
            self._rewind()

    def _rewind(self) -> None:
        self._handle.seek(0)
        self._line, self._partial, self.header = 0, b"", None
        self.exhausted = False

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Go on reading from line ``offset`` (lines count from 1)."""
        if offset <= self._line:
            self._rewind()
        self._skip_to = offset

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the file."""
        self._handle.close()


class StdinSource(_Lines):
    """Events from standard input, JSON lines or CSV; exhausted when stdin closes.

    A reader thread feeds a queue so that :meth:`poll` can wait with a timeout
    (and the loop stays live while no input arrives). Stdin cannot be
    re-read: :meth:`seek` only skips forward.
    """

    def __init__(
        self, fmt: str = "jsonl", batch_size: int = 500, stream: IO[bytes] | None = None
    ) -> None:
        super().__init__("-", batch_size, fmt)
        self._stream = stream if stream is not None else sys.stdin.buffer
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4 * batch_size)
        self._thread = threading.Thread(target=self._read, name="streamgmm-stdin", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._stream:
                self._queue.put(raw)
        finally:
            self._queue.put(None)

    def poll(self, timeout_s: float) -> list[Record]:
        """Up to ``batch_size`` records; waits up to ``timeout_s`` for the first."""
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < self.batch_size and not self.exhausted:
            try:
                if out:
                    raw = self._queue.get_nowait()
                else:
                    raw = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if raw is None:
                self.exhausted = True
                break
            record = self._record(raw)
            if record is not None:
                out.append(record)
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Skip forward to line ``offset``; stdin cannot go back."""
        if offset <= self._line:
            log.warning("stdin cannot be read again; going on from line %d", self._line + 1)
            return
        self._skip_to = offset


class GenerateSource(_LocalSource):
    """The built-in synthetic card-transaction stream (:mod:`streamgmm.synth`) as records.

    Records are the events as JSON, keyed by ``card_id``, with the generation
    time as timestamp and the sequence number (from 1) as offset. The events
    carry the labels ``is_fraud`` and ``fraud_pattern``; the decoder never
    reads them (they are not features), and :meth:`pop_labels` hands them to
    the evaluation summary.

    Parameters
    ----------
    n_events : int
        Events to generate; 0 runs until stopped.
    seed : int
        The same seed gives the same stream.
    events_per_second : float
        Rate limit; 0 generates as fast as the loop consumes.
    fraud_rate : float
        Share of fraudulent events.
    batch_size : int
        Most records one poll returns.
    """

    def __init__(
        self,
        n_events: int = 100_000,
        seed: int = 0,
        events_per_second: float = 0.0,
        fraud_rate: float = 0.01,
        batch_size: int = 500,
    ) -> None:
        from streamgmm.synth import generate_events

        super().__init__("generate", batch_size)
        self.n_events = n_events
        self.events_per_second = events_per_second
        self._events: Iterator[dict] = generate_events(
            n_events or None, seed=seed, fraud_rate=fraud_rate
        )
        self._encode = msgspec.json.Encoder().encode
        self._next = 1
        self._emitted = 0
        self._started = time.monotonic()
        self._labels: dict[int, str] = {}  # offset -> fraud pattern, for unread fraud events

    def poll(self, timeout_s: float) -> list[Record]:
        """The next events, at most ``batch_size`` (fewer when rate-limited)."""
        want = self._allowance(timeout_s)
        out: list[Record] = []
        if want == 0:
            return out
        now_ms = int(time.time() * 1000)
        for event in self._events:
            offset = self._next
            self._next += 1
            if offset < self._skip_to:
                continue
            if event.get("is_fraud"):
                self._labels[offset] = event.get("fraud_pattern") or "unknown"
            key = str(event.get("card_id", "")).encode()
            out.append(Record(self.topic, 0, offset, key, self._encode(event), now_ms))
            self._emitted += 1
            if len(out) >= want:
                break
        else:
            self.exhausted = True
        return out

    def _allowance(self, timeout_s: float) -> int:
        """Events the rate limit allows now, waiting up to ``timeout_s`` for at least one."""
        if self.events_per_second <= 0:
            return self.batch_size
        deadline = time.monotonic() + timeout_s
        while True:
            due = (time.monotonic() - self._started) * self.events_per_second
            allowed = int(due) - self._emitted
            if allowed >= 1 or time.monotonic() >= deadline:
                return max(0, min(self.batch_size, allowed))
            time.sleep(min(1.0 / self.events_per_second, max(0.0, deadline - time.monotonic())))

    def pop_labels(self, records: Sequence[Record]) -> list[str | None]:
        """The fraud pattern of each record (None for a normal event), forgotten afterwards."""
        return [self._labels.pop(r.offset, None) for r in records]

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Go on from event ``offset`` (events count from 1); the stream cannot go back."""
        if offset < self._next:
            log.warning("the generated stream cannot go back; going on from %d", self._next)
            return
        self._skip_to = offset
