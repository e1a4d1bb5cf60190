"""The Kafka producer side: :class:`KafkaSink` and the producer it sends with.

:class:`KafkaSink` wraps a ``KafkaProducer`` and keeps the future of every
send, because ``flush()`` does not raise for records that failed: only their
futures say so.

- ``KafkaProducer`` connects in its constructor and raises
  ``KafkaTimeoutError`` after ``bootstrap_timeout_ms`` when no broker answers.
- An idempotent producer (the kafka-python 3.x default) was seen to stop
  delivering for good after a delivery timeout; the sink turns idempotence off
  unless the caller asks for it. Alerts carry deterministic ids, so a retried
  duplicate is harmless downstream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from streamgmm.stream.kafka_client import PRODUCER_RESERVED, check_options
from streamgmm.stream.protocols import Sink
from streamgmm.stream.records import Header
from streamgmm.stream.redact import redact_options

log = logging.getLogger(__name__)

#: Producer defaults: acknowledged by all replicas, bounded delivery time, no
#: idempotence (see the module docstring).
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": False,
    "linger_ms": 5,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "max_block_ms": 10_000,
}


class KafkaSink(Sink):
    """Producer side of one topic that can tell which sends were delivered.

    Parameters
    ----------
    bootstrap_servers : str or list of str, optional
        Brokers; unused when ``producer`` is given.
    topic : str
        Where :meth:`send` writes.
    client_options : dict, optional
        Further kafka-python producer settings, over :data:`PRODUCER_DEFAULTS`.
    producer : KafkaProducer, optional
        An existing producer to share (e.g. between the alert and dead-letter
        sinks, see :meth:`sibling`). A shared producer is closed by the sink
        that created it, not by its siblings.

    Examples
    --------
    >>> sink = KafkaSink("127.0.0.1:9092", "alerts")  # doctest: +SKIP
    >>> dlq = sink.sibling("alerts-dlq")               # doctest: +SKIP
    >>> sink.send(b'{"id": "tx/0/41"}', key=b"tx/0/41")  # doctest: +SKIP
    >>> n_ok, errors = sink.flush_and_verify(10.0)      # doctest: +SKIP
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str] | None,
        topic: str,
        client_options: Mapping[str, Any] | None = None,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.topic = topic
        self._owns_producer = producer is None
        if producer is None:
            if bootstrap_servers is None:
                raise ValueError("bootstrap_servers: expected brokers when no producer is given")
            producer = make_producer(bootstrap_servers, client_options)
        self._producer = producer
        self._futures: list[Any] = []
        self._send_errors: list[str] = []

    def sibling(self, topic: str) -> KafkaSink:
        """A sink on another topic that shares this sink's producer."""
        return KafkaSink(None, topic, producer=self._producer)

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[Header] | None = None
    ) -> None:
        """Queue one record; its outcome is known after :meth:`flush_and_verify`."""
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            # send() raises itself when metadata or buffer space is not to be
            # had within max_block_ms.
            self._send_errors.append(f"{self.topic}: {type(exc).__name__}: {exc}")
            return
        self._futures.append(future)

    @property
    def pending(self) -> int:
        """Records sent since the last :meth:`flush_and_verify`."""
        return len(self._futures) + len(self._send_errors)

    def flush_and_verify(self, timeout_s: float) -> tuple[int, list[str]]:
        """Flush and check every record sent since the last call.

        Returns
        -------
        n_ok : int
            Records the broker acknowledged.
        errors : list of str
            One message per record that failed or was not acknowledged within
            ``timeout_s``. Commit offsets only when this is empty.
        """
        return self.verify(self.seal(), timeout_s)

    def seal(self) -> tuple[list[Any], list[str]]:
        """The records sent since the last seal, to :meth:`verify` later.

        Records sent after the seal are not waited for by its verification, so
        a caller can send the next batch before checking this one.
        """
        sealed = (self._futures, self._send_errors)
        self._futures, self._send_errors = [], []
        return sealed

    def done(self, sealed: tuple[list[Any], list[str]]) -> bool:
        """Whether every record of a seal has its answer (verify would not wait)."""
        return all(f.is_done for f in sealed[0])

    def verify(
        self, sealed: tuple[list[Any], list[str]], timeout_s: float
    ) -> tuple[int, list[str]]:
        """Wait up to ``timeout_s`` for a seal's records; the same answer as flush_and_verify."""
        futures, send_errors = sealed
        errors = list(send_errors)
        if not futures:
            return 0, errors
        if not all(f.is_done for f in futures):
            # Records still lingering in the producer go out now; a flush that
            # times out leaves futures pending, reported below.
            with contextlib.suppress(KafkaTimeoutError):
                self._producer.flush(timeout=timeout_s)
        n_ok = 0
        for future in futures:
            if not future.is_done:
                errors.append(f"{self.topic}: not acknowledged within {timeout_s:g}s")
            elif future.failed():
                exc = future.exception
                errors.append(f"{self.topic}: {type(exc).__name__}: {exc}")
            else:
                n_ok += 1
        if errors:
            log.warning(
                "%s: %d of %d record(s) not delivered; first: %s",
                self.topic,
                len(errors),
                len(futures),
                errors[0],
            )
        return n_ok, errors

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued within ``timeout_s``, then close the producer.

        Records still undelivered then are dropped (and logged). A sink that
        shares another sink's producer leaves it open.
        """
        if self._owns_producer:
            close_producer(self._producer, timeout_s)


def make_producer(
    bootstrap_servers: str | list[str], client_options: Mapping[str, Any] | None = None
) -> KafkaProducer:
    """Build a raw-bytes producer with :data:`PRODUCER_DEFAULTS` under ``client_options``."""
    options = dict(client_options or {})
    check_options(options, KafkaProducer.DEFAULT_CONFIG, PRODUCER_RESERVED, "producer")
    config = {**PRODUCER_DEFAULTS, **options}
    log.info("kafka producer: servers=%s options=%s", bootstrap_servers, redact_options(config))
    return KafkaProducer(bootstrap_servers=bootstrap_servers, **config)


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close a producer in bounded time even when records are still queued.

    ``KafkaProducer.close(timeout)`` flushes first and raises
    ``KafkaTimeoutError`` if that flush times out, leaving the producer open
    (and its exit hook raising again later). Here the sender is then told to
    drop what is queued, which fails those futures, and the close completes.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaTimeoutError:
        log.warning("producer: records still undelivered after %gs; dropping them", timeout_s)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(max(timeout_s, 1.0))
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:
        log.warning("producer: could not be closed cleanly; its sender thread is a daemon")
