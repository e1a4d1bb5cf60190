"""What the daemon and its consumer process say to each other over their pipe.

A request is ``(request id, method, args)``, sent by the daemon's
:class:`~streamgmm.stream.kafka_process.ProcessKafkaSource`; an answer is
``(request id, ok, value or exception, ChildState)``, sent by the child's
:class:`~streamgmm.stream.kafka_child.ConsumerChild`. A poll is answered with
a :class:`Batch`. The methods are ``start``, ``poll``, ``seek``,
``commit``, ``committed``, ``next_offset``, ``end_offsets`` and ``close``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamgmm.stream.protocols import TP
from streamgmm.stream.records import Chunk, Record, records_from_chunks


@dataclass(frozen=True)
class ChildState:
    """What the child reports with every reply."""

    assignment: frozenset[TP] = frozenset()
    lag: dict[TP, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # the child's processor time so far (benchmarks read it)
    rejoins: int = 0  # times the consumer rejoined its group (see KafkaSource)


@dataclass
class Batch:
    """A poll's answer: the records, a chunk per partition, and the rebalance events before them."""

    chunks: list[Chunk]
    events: list[tuple[str, list[TP]]]
    stale: set[TP] = field(default_factory=set)  # sought by the caller after the child read them

    def records(self) -> list[Record]:
        return records_from_chunks([c for c in self.chunks if (c[0], c[1]) not in self.stale])


def merge_chunks(chunks: list[Chunk]) -> list[Chunk]:
    """One chunk per partition, in (topic, partition) order, offsets in the order read."""
    by_tp: dict[TP, Chunk] = {}
    for chunk in chunks:
        tp = (chunk[0], chunk[1])
        if tp not in by_tp:
            by_tp[tp] = (chunk[0], chunk[1], *(list(col) for col in chunk[2:]))
        else:
            for mine, more in zip(by_tp[tp][2:], chunk[2:], strict=True):
                mine.extend(more)
    return [by_tp[tp] for tp in sorted(by_tp)]
