"""Kafka source and sinks for the consumer loop (kafka-python 3.x): where to import them from.

The pieces live in modules of one idea each:

- :mod:`~streamgmm.stream.kafka_source`: :class:`KafkaSource`, the
  group-managed consumer that yields raw record batches;
- :mod:`~streamgmm.stream.kafka_group`: the rebalance listener that queues
  events on the client's IO thread for the polling thread;
- :mod:`~streamgmm.stream.kafka_commit`: :class:`PendingCommit`, a commit sent
  without waiting;
- :mod:`~streamgmm.stream.kafka_sink`: :class:`KafkaSink` (verified sends),
  :func:`make_producer`, :func:`close_producer`;
- :mod:`~streamgmm.stream.kafka_client`: the option checks and what is read
  of kafka-python's clients' insides.

The consumer in a child process that reads ahead is
:mod:`~streamgmm.stream.kafka_process`.
"""

from __future__ import annotations

from streamgmm.stream.kafka_commit import PendingCommit
from streamgmm.stream.kafka_group import QueueingListener
from streamgmm.stream.kafka_records import flatten_records
from streamgmm.stream.kafka_sink import PRODUCER_DEFAULTS, KafkaSink, close_producer, make_producer
from streamgmm.stream.kafka_source import KafkaSource, PartitionCallback
from streamgmm.stream.redact import redact_options

__all__ = [
    "PRODUCER_DEFAULTS",
    "KafkaSink",
    "KafkaSource",
    "PartitionCallback",
    "PendingCommit",
    "QueueingListener",
    "close_producer",
    "flatten_records",
    "make_producer",
    "redact_options",
]
