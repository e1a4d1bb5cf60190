"""kafka-python's poll answer as streamgmm's records: a list of Record, or a Chunk per partition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streamgmm.stream.protocols import TP
from streamgmm.stream.records import Chunk, Record


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
    for tp in sorted(polled, key=tp_key):
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


def tp_key(tp: Any) -> TP:
    return (tp[0], tp[1])


def chunks_from_polled(polled: Mapping[Any, list[Any]]) -> list[Chunk]:
    """As :func:`flatten_records`, one :data:`Chunk` of columns per partition.

    No object per record: what a process that hands batches to another sends.
    """
    chunks = []
    for tp in sorted(polled, key=tp_key):
        batch = polled[tp]
        chunks.append(
            (
                tp.topic,
                tp.partition,
                [r.offset for r in batch],
                [r.key for r in batch],
                [r.value for r in batch],
                [
                    r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None
                    for r in batch
                ],
                [r.headers if r.headers is not None else () for r in batch],
            )
        )
    return chunks
