"""kafka-python client settings from the ``source.kafka`` section of the configuration."""

from __future__ import annotations

from typing import Any

from streamgmm.service.schema import KafkaConfig

__all__ = ["consumer_options", "producer_options", "reconnect_backoff_max_ms", "servers"]


def servers(kafka: KafkaConfig) -> list[str]:
    """The bootstrap servers as a list (the configuration allows a comma-separated string)."""
    given = kafka.bootstrap_servers
    if isinstance(given, str):
        return [s.strip() for s in given.split(",") if s.strip()]
    return list(given or [])


_SECURITY_KEYS = (
    "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password",
)


def security(kafka: KafkaConfig) -> dict[str, Any]:
    """The SASL and TLS settings that are set, passed through to the clients as they are."""
    return {key: getattr(kafka, key) for key in _SECURITY_KEYS if getattr(kafka, key) is not None}


def reconnect_backoff_max_ms(kafka: KafkaConfig) -> int:
    """The longest wait between reconnection attempts: a quarter of ``broker_timeout_s``, 1-5 s.

    kafka-python backs off up to 30 s by default, so after an outage a
    consumer could sit idle for half a minute with the broker back; this
    keeps recovery within a few seconds of the broker's return while an
    outage costs a handful of connection attempts a second at most.
    """
    return int(1000 * min(5.0, max(1.0, kafka.broker_timeout_s / 4)))


def consumer_options(kafka: KafkaConfig) -> dict[str, Any]:
    """kafka-python consumer settings from the ``source.kafka`` section."""
    return {
        "client_id": kafka.client_id,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
        "auto_offset_reset": kafka.auto_offset_reset,
        "reconnect_backoff_max_ms": reconnect_backoff_max_ms(kafka),
        **security(kafka),
        **kafka.client_options,
    }


def producer_options(kafka: KafkaConfig) -> dict[str, Any]:
    """kafka-python producer settings: the connection's security and the shared client options.

    Of ``client_options``, only those a producer knows (timeouts, backoffs,
    metadata age...) are passed; consumer-only ones stay with the consumer.
    """
    from kafka import KafkaProducer

    shared = {k: v for k, v in kafka.client_options.items() if k in KafkaProducer.DEFAULT_CONFIG}
    return {"client_id": f"{kafka.client_id}-producer",
            "reconnect_backoff_max_ms": reconnect_backoff_max_ms(kafka),
            **security(kafka), **shared}
