"""The record every source yields: one event with where it came from.

Kafka, file and stdin sources all produce :class:`Record` objects, so the
decoder and the consumer loop never see a source-specific type. For a file,
``topic`` is the file path, ``partition`` is 0 and ``offset`` is the line
number; for stdin, ``topic`` is ``"-"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import NamedTuple

#: A Kafka header: (name, raw value).
Header = tuple[str, bytes]


class Record(NamedTuple):
    """One raw event and its position in its source.

    Parameters
    ----------
    topic : str
        Kafka topic, or the file path for file sources.
    partition : int
        Kafka partition; 0 for files and stdin.
    offset : int
        Kafka offset, or the line number for files and stdin.
    key : bytes or None
        Kafka message key, if any.
    value : bytes
        The raw payload, undecoded.
    timestamp_ms : int or None
        Broker or producer timestamp in epoch milliseconds, if known.
    headers : sequence of (str, bytes)
        Kafka headers (a list, as kafka-python returns them); empty for other
        sources.

    Examples
    --------
    >>> r = Record("tx", 0, 41, None, b'{"amount": 12.5}')
    >>> r.position
    ('tx', 0, 41)
    >>> r.next_offset
    42
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    headers: Sequence[Header] = ()

    @property
    def position(self) -> tuple[str, int, int]:
        """(topic, partition, offset): the record's identity, used for alert ids."""
        return (self.topic, self.partition, self.offset)

    @property
    def next_offset(self) -> int:
        """The offset to commit once this record is done (Kafka commits the next one to read)."""
        return self.offset + 1


#: One partition's records as columns: (topic, partition, offsets, keys,
#: values, timestamps_ms, headers). How a consumer process hands a batch over:
#: a few lists pickle far faster than an object per record.
Chunk = tuple[str, int, list[int], list, list[bytes], list, list]


def records_from_chunks(chunks: Sequence[Chunk]) -> list[Record]:
    """The records of ``chunks``, partition after partition."""
    out: list[Record] = []
    for topic, partition, offsets, keys, values, stamps, headers in chunks:
        out.extend(map(Record, repeat(topic), repeat(partition), offsets, keys, values,
                       stamps, headers))
    return out
