"""Unit tests of the Kafka I/O helpers that need no broker."""

from __future__ import annotations

import logging

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streamgmm.stream import kafka_source
from streamgmm.stream.kafka_group import QueueingListener
from streamgmm.stream.kafka_io import (
    KafkaSink,
    KafkaSource,
    flatten_records,
    make_producer,
    redact_options,
)
from streamgmm.stream.records import Record


def consumer_record(topic: str, partition: int, offset: int, *, timestamp: int = 1000,
                    key: bytes | None = None, headers: list | None = None) -> ConsumerRecord:
    return ConsumerRecord(
        topic, partition, 0, offset, timestamp, 0, key, f"v{offset}".encode(),
        headers if headers is not None else [], None, -1, 2, -1,
    )


def test_redact_masks_every_secret_kind_and_keeps_the_rest():
    options = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "fraud-team",
        "sasl_plain_password": "hunter2",
        "ssl_password": "p",
        "ssl_keyfile": "/etc/key.pem",
        "sasl_oauth_token_provider": object(),
        "client_secret": "s",
        "ssl_cafile": None,
    }
    out = redact_options(options)
    assert out["security_protocol"] == "SASL_SSL"
    assert out["sasl_plain_username"] == "fraud-team"
    for name in ("sasl_plain_password", "ssl_password", "ssl_keyfile",
                 "sasl_oauth_token_provider", "client_secret"):
        assert out[name] == "***", name
    assert out["ssl_cafile"] is None
    assert "hunter2" not in repr(out)
    assert options["sasl_plain_password"] == "hunter2", "the input must not be changed"


def test_redact_handles_none():
    assert redact_options(None) == {}


def test_secrets_never_reach_the_log(caplog):
    caplog.set_level("DEBUG", logger="streamgmm.stream.kafka_source")
    with pytest.raises(ValueError):
        # Rejected before connecting, but after logging nothing secret.
        KafkaSource("127.0.0.1:1", "g", topics=["t"],
                    client_options={"sasl_plain_password": "hunter2", "enable_auto_commit": True})
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("name", ["enable_auto_commit", "value_deserializer", "group_id"])
def test_source_rejects_options_it_sets_itself(name):
    with pytest.raises(ValueError, match=f"client_options.{name}: set by streamgmm"):
        KafkaSource("127.0.0.1:1", "g", topics=["t"], client_options={name: None})


def test_source_rejects_unknown_option_by_name():
    with pytest.raises(ValueError, match="client_options.sasl_pasword: not a kafka-python"):
        KafkaSource("127.0.0.1:1", "g", topics=["t"], client_options={"sasl_pasword": "x"})


def test_source_needs_exactly_one_of_topics_and_pattern():
    with pytest.raises(ValueError, match="topics / pattern"):
        KafkaSource("127.0.0.1:1", "g")
    with pytest.raises(ValueError, match="topics / pattern"):
        KafkaSource("127.0.0.1:1", "g", topics=["a"], pattern="a.*")


def test_producer_rejects_serializers():
    with pytest.raises(ValueError, match="client_options.value_serializer"):
        make_producer("127.0.0.1:1", {"value_serializer": str.encode})


def test_sink_needs_brokers_or_a_producer():
    with pytest.raises(ValueError, match="bootstrap_servers"):
        KafkaSink(None, "alerts")


def test_flatten_orders_partitions_and_keeps_offsets_in_order():
    polled = {
        TopicPartition("b", 0): [consumer_record("b", 0, 7)],
        TopicPartition("a", 2): [consumer_record("a", 2, 3), consumer_record("a", 2, 4)],
        TopicPartition("a", 0): [consumer_record("a", 0, 10, key=b"k",
                                                 headers=[("src", b"x")])],
    }
    out = flatten_records(polled)
    assert [r.position for r in out] == [("a", 0, 10), ("a", 2, 3), ("a", 2, 4), ("b", 0, 7)]
    first = out[0]
    assert isinstance(first, Record)
    assert (first.key, first.value, first.timestamp_ms) == (b"k", b"v10", 1000)
    assert list(first.headers) == [("src", b"x")]


def test_flatten_leaves_unknown_timestamps_out():
    polled = {
        TopicPartition("a", 1): [consumer_record("a", 1, 0)],
        TopicPartition("a", 0): [consumer_record("a", 0, 0, timestamp=-1)],
    }
    out = flatten_records(polled)
    assert [r.position for r in out] == [("a", 0, 0), ("a", 1, 0)]
    assert out[0].timestamp_ms is None and out[1].timestamp_ms is not None


def test_flatten_of_an_empty_poll_is_empty():
    assert flatten_records({}) == []


def test_record_defaults_and_positions():
    r = Record("tx.csv", 0, 12, None, b"1,2")
    assert r.headers == ()
    assert r.timestamp_ms is None
    assert r.position == ("tx.csv", 0, 12)
    assert r.next_offset == 13


def test_listener_only_queues_events_as_plain_tuples():
    from collections import deque

    events: deque = deque()
    listener = QueueingListener(events)
    listener.on_partitions_assigned({TopicPartition("t", 1), TopicPartition("t", 0)})
    listener.on_partitions_lost({TopicPartition("t", 1)})
    listener.on_partitions_revoked(set())
    assert list(events) == [
        ("assign", [("t", 0), ("t", 1)]),
        ("revoke", [("t", 1)]),
        ("revoke", []),
    ]
    assert all(type(tp) is tuple for _, tps in events for tp in tps)


def _chunk(partition: int, offsets: list[int]):
    n = len(offsets)
    return ("events", partition, offsets, [None] * n, [b"v"] * n, [None] * n, [()] * n)


def test_the_consumer_process_keeps_records_read_after_a_partition_came_back():
    # The child reads slices while the daemon works; rebalance events wait in
    # it until a batch carries them. A revocation drops what was gathered of
    # the partition before it, once: records of the partition read after it
    # was assigned again (in the same poll or a later slice) are the new
    # position's and must reach the daemon (dropping them again lost a
    # batch's share of a partition in a two-member handover).
    from streamgmm.stream.kafka_child import ConsumerChild

    child = ConsumerChild.__new__(ConsumerChild)
    child.events, child.chunks, child.n_gathered = [], [], 0
    child.capacity, child.error, child.drained = 100, None, False

    class Slices:
        def __init__(self):
            self.calls = 0

        def poll_columns(self, wait, max_records):
            self.calls += 1
            if self.calls == 1:
                return [_chunk(3, [200, 201])]  # before the rebalance
            if self.calls == 2:  # an eager rebalance: 3 revoked and assigned back
                child.events.extend([("revoke", [("events", 3)]),
                                     ("assign", [("events", 3)])])
                return [_chunk(3, [195, 196])]  # from the committed offset
            return [_chunk(3, [197])]

    child.source = Slices()
    for _ in range(3):
        child.read_slice()
    offsets = [o for c in child.chunks for o in c[2]]
    assert offsets == [195, 196, 197]  # the stale 200-201 gone, nothing else
    assert child.n_gathered == 3


class StuckConsumer:
    """A consumer whose group never ends a rebalance: polls return nothing."""

    DEFAULT_CONFIG = KafkaConsumer.DEFAULT_CONFIG

    def __init__(self, **config):
        self.calls: list[str] = []
        self.listener = None

    def subscribe(self, topics=None, pattern=None, listener=None):
        self.calls.append("subscribe")
        self.listener = listener

    def unsubscribe(self):
        self.calls.append("unsubscribe")

    def poll(self, timeout_ms, max_records):
        return {}

    def assignment(self):
        return set()


def _stuck_source(monkeypatch, reachable=True) -> KafkaSource:
    monkeypatch.setattr(kafka_source, "KafkaConsumer", StuckConsumer)
    source = KafkaSource("127.0.0.1:1", "g", topics=["t"], client_options={
        "max_poll_interval_ms": 1000, "session_timeout_ms": 500, "heartbeat_interval_ms": 100})
    monkeypatch.setattr(source, "broker_reachable", lambda: reachable)
    return source


def test_a_member_whose_rebalance_never_ends_leaves_and_joins_again(monkeypatch, caplog):
    source = _stuck_source(monkeypatch)
    assert source.join_watch.rejoin_after_s == 3.0  # twice (max_poll_interval + session timeout)
    source.poll(0)
    assert source._consumer.calls == ["subscribe"]  # not yet
    source.join_watch.since -= 3.5
    with caplog.at_level(logging.WARNING, logger="streamgmm.stream.kafka_source"):
        source.poll(0)
    assert source._consumer.calls == ["subscribe", "unsubscribe", "subscribe"]
    assert source.rejoins == 1 and "leaving the group and joining it again" in caplog.text
    source.poll(0)  # the clock starts again after a rejoin
    assert source.rejoins == 1


def test_a_member_with_an_empty_assignment_or_no_broker_stays(monkeypatch):
    source = _stuck_source(monkeypatch)
    source._consumer.listener.on_partitions_assigned([])  # joined, with nothing
    source.poll(0)
    assert source.join_watch.since is None
    source.poll(0)
    assert source.rejoins == 0
    # A rebalance that begins, even of nothing, is timed again.
    source._consumer.listener.on_partitions_revoked([])
    source.poll(0)
    assert source.join_watch.since is not None
    # An unreachable broker is an outage, which rejoining cannot mend.
    down = _stuck_source(monkeypatch, reachable=False)
    down.join_watch.since -= 60
    down.poll(0)
    assert down.rejoins == 0 and down._consumer.calls == ["subscribe"]


def test_the_consumer_process_reports_its_rejoins_with_every_reply():
    from streamgmm.stream.kafka_child import ConsumerChild
    from streamgmm.stream.kafka_pipe import ChildState
    from streamgmm.stream.kafka_process import ProcessKafkaSource

    class Counting:
        rejoins = 2

        def assignment(self):
            return {TopicPartition("t", 0)}

        def lag(self):
            return {}

    child = ConsumerChild.__new__(ConsumerChild)  # the reading side, without a broker
    child.source = Counting()
    state = child.state()
    assert state.rejoins == 2
    parent = ProcessKafkaSource.__new__(ProcessKafkaSource)
    parent._state = state
    assert parent.rejoins == 2
    assert ChildState().rejoins == 0
