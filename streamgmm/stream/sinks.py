"""Sinks without Kafka: stdout (or any text stream), JSON-lines files, and nothing.

Every sink has :class:`~streamgmm.stream.protocols.Sink`'s ``send``, ``seal``,
``done``, ``verify``, ``flush_and_verify`` and ``close``, as
:class:`~streamgmm.stream.kafka_io.KafkaSink` does, so the loop treats all of
them alike. A line is written once flushed, at the seal, so every send of a
seal is answered at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from streamgmm.stream.protocols import Sink
from streamgmm.stream.records import Header

__all__ = ["JsonlFileSink", "NullSink", "StreamSink"]


class StreamSink(Sink):
    """Writes each record value as one line to a text stream (stdout by default).

    Parameters
    ----------
    stream : text stream, optional
        Where lines go; ``sys.stdout`` at write time by default.
    render : callable, optional
        Turns a value into the line written (e.g. an alert as a readable
        line); by default the value is written as UTF-8 text.
    """

    def __init__(
        self, stream: TextIO | None = None, render: Callable[[bytes], str] | None = None
    ) -> None:
        self._stream = stream
        self._render = render
        self._sent = 0
        self._errors: list[str] = []

    @property
    def stream(self) -> TextIO:
        """The stream written to."""
        return self._stream if self._stream is not None else sys.stdout

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None:
        """Write one line (buffered until :meth:`flush_and_verify`)."""
        line = self._render(value) if self._render else value.decode("utf-8", "replace")
        try:
            self.stream.write(line + "\n")
        except BrokenPipeError:
            raise  # the reader went away: stop, do not redo batches forever
        except OSError as exc:
            self._errors.append(f"{_name(self.stream)}: {exc}")
            return
        self._sent += 1

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]:
        """Flush; return the lines written since the last call and any write errors."""
        return self.verify(self.seal(), timeout_s)

    def seal(self) -> tuple[int, list[str]]:
        """Flush the lines written since the last seal; what :meth:`verify` reports of them."""
        errors, self._errors = self._errors, []
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            errors.append(f"{_name(self.stream)}: {exc}")
        sent, self._sent = self._sent, 0
        return (0, errors) if errors else (sent, [])

    def done(self, sealed: tuple[int, list[str]]) -> bool:
        """Always: a line is written once flushed, at the seal."""
        return True

    def verify(self, sealed: tuple[int, list[str]], timeout_s: float) -> tuple[int, list[str]]:
        """Lines written and errors of one seal (a write is done once flushed)."""
        return sealed

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered; stdout itself stays open."""
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


class JsonlFileSink(StreamSink):
    """Appends each record value as one line to a file (alerts or dead letters).

    The file is opened for appending, so a restart adds to it; alert ids tell
    the duplicates of a replayed batch apart.
    """

    def __init__(self, path: str, what: str = "alerts") -> None:
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise OSError(exc.errno, f"{what}.path: cannot open {path!r}: {exc}") from exc
        super().__init__(handle)
        self.path = path

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close the file."""
        super().close(timeout_s)
        self.stream.close()


class NullSink(Sink):
    """Counts what it is given and keeps nothing (``sink: none``)."""

    def __init__(self) -> None:
        self._sent = 0

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None:
        """Count one record."""
        self._sent += 1

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]:
        """Records counted since the last call."""
        return self.verify(self.seal(), timeout_s)

    def seal(self) -> int:
        """Records counted since the last seal."""
        sent, self._sent = self._sent, 0
        return sent

    def done(self, sealed: int) -> bool:
        """Always: nothing to wait for."""
        return True

    def verify(self, sealed: int, timeout_s: float) -> tuple[int, list[str]]:
        """All of a seal's records, no error."""
        return sealed, []

    def close(self, timeout_s: float = 10.0) -> None:
        """Nothing to release."""


def _name(stream: Any) -> str:
    if isinstance(stream, io.TextIOWrapper):
        return str(getattr(stream, "name", "stream"))
    return getattr(stream, "name", type(stream).__name__)
