"""The interfaces of the stream layer: what the consumer loop needs of a source,
a sink and a detector, declared once.

Every source and sink of streamgmm subclasses these protocols, which gives it
the declared defaults of the optional capabilities (a source that does not
read ahead, has no reset position, commits synchronously...); a class that
only has the methods satisfies them structurally too, as test fakes do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from streamgmm.stream.decode import Decoded, Decoder
    from streamgmm.stream.records import Header, Record

__all__ = ["TP", "Answered", "CommitAnswer", "Detections", "Detector", "Sink", "Source"]

#: A partition: (topic, partition number).
TP = tuple[str, int]


class CommitAnswer(Protocol):
    """The answer to a commit asked for, arriving later (a future's two methods)."""

    def done(self) -> bool:
        """Whether the answer is there (``result`` would not wait)."""
        ...

    def result(self) -> bool:
        """True when the commit succeeded; waits for the answer if need be."""
        ...


class Answered:
    """A commit answer known at once (a source that commits synchronously)."""

    __slots__ = ("ok",)

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def done(self) -> bool:
        return True

    def result(self) -> bool:
        return self.ok


class Source(Protocol):
    """Where records come from: Kafka, a file, stdin or the generated stream.

    Attributes
    ----------
    partitioned : bool
        Records carry real partitions (Kafka); False for the one-partition
        local sources, whose event ids then leave the partition out.
    reads_ahead : bool
        ``poll`` returns at once with what was read meanwhile (the consumer
        process), so the loop need not shorten its polls while it waits.
    exhausted : bool
        The source has ended (a file read to its end, stdin closed).
    rejoins : int
        Times the consumer left and joined its group again (a rebalance that
        did not end).
    """

    partitioned: bool = True
    reads_ahead: bool = False
    exhausted: bool = False
    rejoins: int = 0

    def poll(self, timeout_s: float) -> list[Record]:
        """Up to one batch of records, waiting at most ``timeout_s``."""
        ...

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` on."""
        ...

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit next offsets; True when it succeeded."""
        ...

    def commit_async(self, offsets: Mapping[TP, int]) -> CommitAnswer:
        """Ask for a commit whose answer comes later (by default: commit now)."""
        return Answered(self.commit(offsets))

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset of a partition, None when it has none."""
        ...

    def next_offset(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """Where reading a partition with no committed offset starts (None: unknown)."""
        return None

    def assignment(self) -> set[TP]:
        """The partitions this member holds now."""
        ...

    def lag(self) -> dict[TP, int]:
        """Records between what was committed and the log end, per partition."""
        ...

    def broker_reachable(self) -> bool:
        """Whether the broker answered recently (always True without one)."""
        ...

    def decode(self, decoder: Decoder, records: Sequence[Record]) -> Decoded:
        """Decode a batch (a CSV file decodes under its header)."""
        return decoder.decode(records)

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group and release the connection or file."""
        ...


class Sink(Protocol):
    """Where alerts or dead letters go, with sends verified before a commit."""

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None:
        """Send one record (buffered until sealed)."""
        ...

    def seal(self) -> Any:
        """Close the group of sends since the last seal; what :meth:`verify` takes."""
        ...

    def done(self, sealed: Any) -> bool:
        """Whether every send of a seal has its answer (verify would not wait)."""
        ...

    def verify(self, sealed: Any, timeout_s: float) -> tuple[int, list[str]]:
        """Sends confirmed of a seal, and the errors of those that failed."""
        ...

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]:
        """Seal and verify at once."""
        return self.verify(self.seal(), timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and release."""
        ...


class Detections(Protocol):
    """What scoring a batch gives: arrays of the batch's length, and the model used."""

    score: np.ndarray
    is_anomaly: np.ndarray
    threshold: np.ndarray
    percentile: np.ndarray
    component: np.ndarray
    model_version: int

    def explanation(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top features and their shares, for some rows only."""
        ...


class Detector(Protocol):
    """What the loop needs of a detector (:class:`~streamgmm.detect.detector.AnomalyDetector`)."""

    @property
    def ready(self) -> bool:
        """A model exists and the threshold has enough scores."""
        ...

    @property
    def model_version(self) -> int:
        """The version of the model in use."""
        ...

    def process(self, X: np.ndarray, learn: bool = True, alert: bool = True) -> Detections:
        """Score a batch, then learn it (``learn``) and flag it (``alert``)."""
        ...

    def apply_finished_refit(self) -> bool:
        """Swap in a background refit that has finished; True when the model changed."""
        ...
