"""The daemon's configuration schema: frozen dataclasses, one per YAML section.

Every key the daemon reads is declared once, with its type, default, bounds
and a help string in the field's metadata (``stream/declare.py`` lists the
metadata keys). The sections live here, but for two declared beside the code
that reads them: the feature spec (``streamgmm.stream.features``, read by the
decoder) and the detector's (``detector_config.py``, built from the
detector's parameter table).
``streamgmm.service.config`` walks these declarations to validate a YAML
document; nothing else in the code base knows the shape of the YAML.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from streamgmm.service.detector_config import DetectorConfig
from streamgmm.stream.declare import option
from streamgmm.stream.features import FeaturesConfig
from streamgmm.stream.redact import redact_config

# --------------------------------------------------------------------------- source


@dataclass(frozen=True)
class KafkaConfig:
    """The Kafka connection, used by the Kafka source and by Kafka sinks."""

    bootstrap_servers: str | list[str] | None = option(
        None, help="Broker addresses, 'host:port' or a list of them (a comma-separated string too)."
    )
    topics: list[str] | None = option(
        None, help="Topics to consume; set this or 'pattern', not both.", min_items=1
    )
    pattern: str | None = option(None, help="Regular expression of topics to subscribe to.")
    group_id: str = option(
        "streamgmm", help="Consumer group; replicas in one group share partitions."
    )
    client_id: str = option("streamgmm", help="Client id shown in broker logs and quotas.")
    max_poll_records: int = option(
        2000,
        help="Most records one poll returns (one micro-batch). Larger batches cost less per "
        "event (one commit, one model update each) at the price of more duplicate alerts "
        "after a crash, which repeats the batches in flight.",
        min=1,
    )
    poll_timeout_ms: int = option(
        500, help="How long a poll waits for records; 0 would busy-loop.", min=1
    )
    consumer_process: bool = option(
        True,
        help="Run the consumer in a child process that reads the next batch while this one "
        "is scored (kafka-python unpacks records in Python, so in one process reading and "
        "scoring take turns). Costs one more process (~60 MB); false keeps the consumer "
        "in the daemon's process.",
    )
    session_timeout_ms: int = option(
        10_000, help="The broker drops a consumer silent for this long.", min=1
    )
    heartbeat_interval_ms: int = option(
        3_000, help="Heartbeat period; below a third of session_timeout_ms.", min=1
    )
    max_poll_interval_ms: int = option(
        300_000, help="Longest allowed gap between polls before the group evicts us.", min=1
    )
    auto_offset_reset: Literal["earliest", "latest"] = option(
        "earliest", help="Where a group without committed offsets starts."
    )
    broker_timeout_s: float = option(
        10.0,
        help="The broker counts as unreachable after this long without an answer "
        "(outage detection: readiness and the broker-up metric).",
        min=0,
        exclusive_min=True,
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = option(
        "PLAINTEXT", help="Transport security."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        option(None, help="SASL mechanism; required with SASL_PLAINTEXT and SASL_SSL.")
    )
    sasl_plain_username: str | None = option(None, help="SASL user name.")
    sasl_plain_password: str | None = option(
        None, help="SASL password; pass it through an environment override.", secret=True
    )
    ssl_cafile: str | None = option(None, help="CA bundle that signs the brokers' certificates.")
    ssl_certfile: str | None = option(None, help="Client certificate (mutual TLS).")
    ssl_keyfile: str | None = option(None, help="Client private key (mutual TLS).")
    ssl_password: str | None = option(
        None, help="Password of ssl_keyfile; pass it through an environment override.", secret=True
    )
    client_options: dict[str, str | int | float | bool | list[str]] = option(
        help="Further kafka-python settings passed through verbatim; keys that name a secret "
        "(containing 'password', 'secret', 'token', 'keyfile'...) are redacted in logs.",
        factory=dict,
    )

    def check(self) -> list[tuple[str, str]]:
        """Cross-field rules of the Kafka connection."""
        problems = []
        if self.topics is not None and self.pattern is not None:
            problems.append(("pattern", "set 'topics' or 'pattern', not both"))
        for i, topic in enumerate(self.topics or ()):
            problems.extend((f"topics[{i}]", p) for p in topic_problems(topic))
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                problems.append(("pattern", f"expected a regular expression ({exc}), "
                                            f"got {self.pattern!r}"))
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            problems.append(
                (
                    "heartbeat_interval_ms",
                    f"expected less than session_timeout_ms ({self.session_timeout_ms}), "
                    f"got {self.heartbeat_interval_ms}",
                )
            )
        if self.poll_timeout_ms >= self.max_poll_interval_ms:
            problems.append(
                (
                    "poll_timeout_ms",
                    f"expected less than max_poll_interval_ms ({self.max_poll_interval_ms}), "
                    f"got {self.poll_timeout_ms}",
                )
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            problems.append(
                ("sasl_mechanism", f"required with security_protocol {self.security_protocol}")
            )
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            for key in ("sasl_plain_username", "sasl_plain_password"):
                if getattr(self, key) is None:
                    hint = f" (pass it as STREAMGMM__SOURCE__KAFKA__{key.upper()})"
                    problems.append(
                        (
                            key,
                            f"required with sasl_mechanism {self.sasl_mechanism}"
                            + (hint if key.endswith("password") else ""),
                        )
                    )
        managed = {f.name for f in dataclasses.fields(self)} | {
            "enable_auto_commit",
            "key_deserializer",
            "value_deserializer",
        }
        for key in self.client_options:
            if key in managed:
                problems.append(
                    (
                        f"client_options.{key}",
                        "managed by streamgmm; set the dedicated key instead"
                        if key in {f.name for f in dataclasses.fields(self)}
                        else "managed by streamgmm and cannot be overridden",
                    )
                )
        return problems


@dataclass(frozen=True)
class FileSourceConfig:
    """A file of events (``source.type: file``); ``format`` also applies to stdin."""

    path: str | None = option(None, help="File to read; required with source.type file.")
    format: Literal["jsonl", "csv"] = option(
        "jsonl", help="One JSON object per line, or CSV with a header line."
    )
    follow: bool = option(False, help="Keep reading as the file grows, like 'tail -f'.")
    poll_interval_s: float = option(
        0.5, help="How often a followed file is checked for new lines.", min=0, exclusive_min=True
    )


@dataclass(frozen=True)
class GenerateConfig:
    """The embedded synthetic card-transaction stream (``source.type: generate``)."""

    n_events: int = option(100_000, help="Events to generate; 0 runs until stopped.", min=0)
    seed: int = option(0, help="Seed of the generator; the same seed gives the same stream.")
    events_per_second: float = option(
        0.0, help="Rate limit; 0 generates as fast as the loop consumes.", min=0
    )
    fraud_rate: float = option(
        0.01,
        help="Share of fraudulent transactions in the stream.",
        min=0,
        max=1,
        exclusive_max=True,
    )


@dataclass(frozen=True)
class SourceConfig:
    """Where events come from."""

    type: Literal["kafka", "file", "stdin", "generate"] = option(
        help="kafka, file, stdin, or generate (the synthetic card stream, no Kafka needed)."
    )
    kafka: KafkaConfig = option(help="Kafka connection settings.", factory=KafkaConfig)
    file: FileSourceConfig = option(help="File source settings.", factory=FileSourceConfig)
    generate: GenerateConfig = option(help="Synthetic stream settings.", factory=GenerateConfig)
    batch_size: int = option(
        500, help="Events per micro-batch for the file, stdin and generate sources.", min=1
    )

    def check(self) -> list[tuple[str, str]]:
        """A Kafka source needs brokers and topics; a file source needs a path."""
        problems = []
        if self.type == "kafka":
            if self.kafka.bootstrap_servers in (None, "", []):
                problems.append(("kafka.bootstrap_servers", "required with source.type kafka"))
            if self.kafka.topics is None and self.kafka.pattern is None:
                problems.append(("kafka.topics", "required with source.type kafka (or 'pattern')"))
        if self.type == "file" and not self.file.path:
            problems.append(("file.path", "required with source.type file"))
        return problems


# ---------------------------------------------------------------------------- sinks


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go."""

    sink: Literal["kafka", "stdout", "file", "none"] = option(
        "stdout", help="kafka (a topic), stdout, file (JSON lines) or none."
    )
    topic: str | None = option(None, help="Alerts topic; required with sink kafka.")
    path: str | None = option(None, help="Alerts file; required with sink file.")
    include_features: bool = option(True, help="Copy the event's feature vector into each alert.")

    def check(self) -> list[tuple[str, str]]:
        """A Kafka sink needs a topic, a file sink a path."""
        return _sink_rules(self.sink, self.topic, self.path)


@dataclass(frozen=True)
class DeadLetterConfig:
    """Where undecodable messages go, with the reason."""

    sink: Literal["kafka", "file", "stdout", "none"] = option(
        "stdout", help="kafka (a topic), file (JSON lines), stdout or none (counted only)."
    )
    topic: str | None = option(None, help="Dead-letter topic; required with sink kafka.")
    path: str | None = option(None, help="Dead-letter file; required with sink file.")

    def check(self) -> list[tuple[str, str]]:
        """A Kafka sink needs a topic, a file sink a path."""
        return _sink_rules(self.sink, self.topic, self.path)


#: What Kafka accepts as a topic name.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def topic_problems(topic: str) -> list[str]:
    """Why Kafka would refuse ``topic`` as a name (none when it is legal)."""
    if _TOPIC.fullmatch(topic) and topic not in (".", ".."):
        return []
    return [f"expected a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got {topic!r}"]


def _matches(pattern: str | None, topic: str | None) -> bool:
    """Whether a subscription ``pattern`` takes ``topic`` as the Kafka client does
    (``re.match``: a prefix match) (False for a bad pattern)."""
    if pattern is None or topic is None:
        return False
    try:
        return re.match(pattern, topic) is not None
    except re.error:
        return False


def _sink_rules(sink: str, topic: str | None, path: str | None) -> list[tuple[str, str]]:
    if sink == "kafka" and topic is not None and (problems := topic_problems(topic)):
        return [("topic", p) for p in problems]
    if sink == "kafka" and not topic:
        return [("topic", "required with sink kafka")]
    if sink == "file" and not path:
        return [("path", "required with sink file")]
    return []


# ---------------------------------------------------------------------- operations


@dataclass(frozen=True)
class CheckpointConfig:
    """Model and offset checkpoints."""

    dir: str | None = option(None, help="Checkpoint directory; unset = no checkpoints.")
    interval_s: float = option(30.0, help="Seconds between checkpoints.", min=0, exclusive_min=True)
    keep: int = option(3, help="Checkpoints kept (older ones are deleted).", min=1)


@dataclass(frozen=True)
class MetricsConfig:
    """The HTTP server for /metrics, /healthz and /readyz."""

    enabled: bool = option(True, help="Serve metrics and health endpoints.")
    host: str = option("0.0.0.0", help="Address to listen on.")
    port: int = option(9108, help="Port to listen on (0 picks a free one).", min=0, max=65535)


@dataclass(frozen=True)
class HealthConfig:
    """Liveness."""

    stall_timeout_s: float = option(
        60.0,
        help="/healthz fails when the loop has not iterated for this long.",
        min=0,
        exclusive_min=True,
    )


@dataclass(frozen=True)
class LoggingConfig:
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = option("INFO", help="Log level.")
    format: Literal["text", "json"] = option("text", help="Plain text, or one JSON object a line.")


@dataclass(frozen=True)
class AuditConfig:
    """A record of every processed event id."""

    path: str | None = option(
        None, help="File where the loop appends every processed event id (tests, audits)."
    )
    scores: bool = option(
        False, help="Also write each event's score, threshold, model version and alert flag "
        "beside its id (tab-separated), which 'streamgmm plot scores' draws."
    )


@dataclass(frozen=True)
class ShutdownConfig:
    """Graceful shutdown."""

    timeout_s: float = option(
        20.0,
        help="Budget to finish the batch, flush, commit, checkpoint and close; keep "
        "it under the container's grace period (Kubernetes: 30 s).",
        min=0,
        exclusive_min=True,
    )


# --------------------------------------------------------------------------- root


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration."""

    source: SourceConfig = option(help="Where events come from.")
    features: FeaturesConfig = option(help="How an event becomes a feature vector.")
    detector: DetectorConfig = option(help="The mixture and threshold.", factory=DetectorConfig)
    alerts: AlertsConfig = option(help="Where alerts go.", factory=AlertsConfig)
    dead_letter: DeadLetterConfig = option(
        help="Where undecodable messages go.", factory=DeadLetterConfig
    )
    checkpoint: CheckpointConfig = option(help="Checkpoints.", factory=CheckpointConfig)
    metrics: MetricsConfig = option(help="Metrics and health server.", factory=MetricsConfig)
    health: HealthConfig = option(help="Liveness.", factory=HealthConfig)
    logging: LoggingConfig = option(help="Log output.", factory=LoggingConfig)
    audit: AuditConfig = option(help="Processed-event audit file.", factory=AuditConfig)
    shutdown: ShutdownConfig = option(help="Graceful shutdown.", factory=ShutdownConfig)

    def check(self) -> list[tuple[str, str]]:
        """Rules that span sections."""
        problems = []
        for section in ("alerts", "dead_letter"):
            sink = getattr(self, section)
            if sink.sink == "kafka" and not self.source.kafka.bootstrap_servers:
                problems.append(
                    ("source.kafka.bootstrap_servers", f"required with {section}.sink kafka")
                )
            read = self.source.type == "kafka" and sink.sink == "kafka" and (
                sink.topic in (self.source.kafka.topics or ())
                or _matches(self.source.kafka.pattern, sink.topic))
            if read:  # its records would come back as events: one bad event would loop
                problems.append((f"{section}.topic", f"expected a topic the source does not "
                                                     f"read, got {sink.topic!r}"))
        return problems

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data with secrets replaced, for logs."""
        return redact_config(self)
