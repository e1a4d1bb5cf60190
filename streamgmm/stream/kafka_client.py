"""What streamgmm checks of kafka-python's options and reads of its clients' insides.

The options a caller passes through are checked against the client's own
``DEFAULT_CONFIG``, less those streamgmm sets itself. Two numbers that
kafka-python 3.x keeps but does not publish are read here, in one place: when
a broker connection last received bytes, and a partition's fetch position
(``KafkaConsumer.position()`` may block on a broker call; the subscription
state holds the same number without one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Options the source sets itself: overriding them would break at-least-once
# delivery (auto-commit) or the raw-bytes contract (deserializers).
CONSUMER_RESERVED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "max_poll_records",
    }
)
PRODUCER_RESERVED = frozenset({"bootstrap_servers", "key_serializer", "value_serializer"})


def check_options(
    options: Mapping[str, Any], known: Iterable[str], reserved: frozenset[str], what: str
) -> None:
    """Reject options kafka-python does not know or that streamgmm sets itself."""
    known = set(known)
    for name in options:
        if name in reserved:
            raise ValueError(f"client_options.{name}: set by streamgmm for the {what}; remove it")
        if name not in known:
            raise ValueError(
                f"client_options.{name}: not a kafka-python {what} option "
                f"(expected one of the KafkaConsumer/KafkaProducer settings)"
            )


def last_broker_read(client: Any) -> float | None:
    """When a connection of ``client`` last received bytes (``time.monotonic()``), if any."""
    # kafka-python 3.x keeps its connections in the network manager; read
    # the time of the last received bytes from each live transport.
    try:
        conns = list(client._manager._conns.values())
    except AttributeError:
        return None
    reads = [
        c.transport.last_read
        for c in conns
        if getattr(c, "connected", False) and getattr(c, "transport", None) is not None
    ]
    return max(reads) if reads else None


def fetch_position(consumer: Any, tp: Any) -> int | None:
    """The consumer's fetch position of an assigned partition, without a broker call."""
    try:
        position = consumer._subscription.assignment[tp].position
    except (AttributeError, KeyError):
        return None
    return None if position is None else position.offset
