"""The consumer group's rebalance events, as kafka-python 3.x reports them.

Rebalance listeners run on the client's IO thread, the same thread that sends
heartbeats. A blocking call from there (``commit()``, ``committed()``,
``end_offsets()``) raises ``RuntimeError``, and anything slow delays
heartbeats. :class:`QueueingListener` only queues the event; the
:class:`~streamgmm.stream.kafka_source.KafkaSource` replays it on the polling
thread, where seeking and committing are allowed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition

from streamgmm.stream.protocols import TP


class QueueingListener(ConsumerRebalanceListener):
    """Rebalance listener that only records what happened.

    It runs on kafka-python's IO thread, where a blocking broker call raises
    and a slow one starves heartbeats; ``KafkaSource.poll`` replays the
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


class JoinWatch:
    """How long this member has waited for a rebalance to end, and when that is too long.

    A Kafka coordinator ends a rebalance after the rebalance timeout
    whoever has not rejoined; one that does not (seen with three members
    restarted every few seconds: no member was assigned anything for nine
    minutes, until a new member joined) would otherwise leave the group
    idle for good. A join that has not ended within twice the time a
    coordinator allows a rebalance (the members' rebalance timeout,
    ``max_poll_interval_ms``, plus a session for the dead ones to expire) is
    taken for stuck: the member leaves and joins again as a new member, which
    makes the coordinator start the rebalance afresh. A member with no
    partitions in a stable group is not affected: its (empty) assignment ended
    the rebalance.

    Parameters
    ----------
    config : mapping
        The consumer's settings (kafka-python's defaults under the caller's).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.rejoin_after_s = (
            2.0 * (config["max_poll_interval_ms"] + config["session_timeout_ms"]) / 1000.0
        )
        self.since: float | None = time.monotonic()

    def began(self) -> None:
        """A rebalance began (or the member joined afresh): the clock starts."""
        self.since = time.monotonic()

    def ended(self) -> None:
        """The member was assigned partitions (or none): the rebalance ended."""
        self.since = None

    def overdue(self, broker_reachable: bool) -> float | None:
        """The seconds waited, once they reach ``rejoin_after_s`` while the broker answers.

        An unreachable broker is an outage, which rejoining cannot mend: None then.
        """
        if self.since is None:
            return None
        waited = time.monotonic() - self.since
        if waited < self.rejoin_after_s or not broker_reachable:
            return None
        return waited
