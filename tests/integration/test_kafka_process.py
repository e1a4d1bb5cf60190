"""ProcessKafkaSource (the consumer in a child process, reading ahead) against a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streamgmm.stream.kafka_io import KafkaSink
from streamgmm.stream.kafka_process import ProcessKafkaSource
from streamgmm.stream.records import Record
from streamgmm.testing import FAST_CONSUMER_OPTIONS, TansuBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def produce(sink: KafkaSink, n: int, partitions: int, start: int = 0) -> None:
    futures = [sink._producer.send(sink.topic, value=f"v{i}".encode(), key=f"k{i}".encode(),
                                   partition=i % partitions) for i in range(start, start + n)]
    for f in futures:
        f.get(timeout=10)


def source(broker: TansuBroker, group: str, topics: list[str], **kwargs) -> ProcessKafkaSource:
    kwargs.setdefault("max_poll_records", 50)
    return ProcessKafkaSource(broker.bootstrap, group, topics=topics,
                              client_options=dict(FAST_CONSUMER_OPTIONS), **kwargs)


def poll_until(src: ProcessKafkaSource, done, timeout_s: float, got: list[Record]) -> None:
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout_s, f"not done within {timeout_s}s"
        got.extend(src.poll(0.2))


def test_reads_everything_in_order_and_commits(broker, topic_factory):
    topic = topic_factory(partitions=3)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 300, partitions=3)
    src = source(broker, f"g-{topic}", [topic])
    try:
        got: list[Record] = []
        poll_until(src, lambda: len(got) >= 300, 60, got)
        assert src.assignment() == {(topic, p) for p in range(3)}
        # Every record once, each partition in offset order, with its key and value.
        for p in range(3):
            offsets = [r.offset for r in got if r.partition == p]
            assert offsets == list(range(100))
        assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(300))
        assert all(r.key == b"k" + r.value[1:] for r in got)
        ends = {(topic, p): 100 for p in range(3)}
        assert src.commit(ends) is True
        assert all(src.committed(topic, p) == 100 for p in range(3))
        # (This Tansu build answers end offsets with the last batch's base offset + 1.)
        assert set(src.end_offsets()) == set(ends)
        assert src.broker_reachable()
    finally:
        src.close(10)
        sink.close()


def test_a_seek_drops_what_was_read_ahead(broker, topic_factory):
    """The child reads the next batch while the caller works; a seek meanwhile must
    not let records from the old position through."""
    topic = topic_factory(partitions=1)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 200, partitions=1)
    src = source(broker, f"g-{topic}", [topic], max_poll_records=40)
    try:
        first: list[Record] = []
        poll_until(src, lambda: len(first) >= 40, 60, first)
        time.sleep(0.5)  # the read-ahead batch is complete and on its way
        src.seek(topic, 0, 5)
        after: list[Record] = []
        poll_until(src, lambda: len(after) >= 30, 30, after)
        offsets = [r.offset for r in after]
        assert offsets[0] == 5 and offsets == list(range(5, 5 + len(offsets)))
    finally:
        src.close(10)
        sink.close()


def test_two_members_split_the_partitions_and_seek_in_on_assign(broker, topic_factory):
    topic = topic_factory(partitions=4)
    sink = KafkaSink(broker.bootstrap, topic)
    produce(sink, 80, partitions=4)
    group = f"g-{topic}"
    events: dict[str, list] = {"a": [], "b": []}

    def hooks(name: str) -> dict:
        def on_assign(tps):
            events[name].append(("assign", tps))
            for t, p in tps:  # start every partition at offset 10, as a checkpoint would
                members[name].seek(t, p, 10)
        return {"on_assign": on_assign,
                "on_revoke": lambda tps: events[name].append(("revoke", tps))}

    members: dict[str, ProcessKafkaSource] = {}
    members["a"] = source(broker, group, [topic], **hooks("a"))
    try:
        got: list[Record] = []
        poll_until(members["a"], lambda: len(members["a"].assignment()) == 4, 30, got)
        members["b"] = source(broker, group, [topic], **hooks("b"))
        start = time.monotonic()
        while not (len(members["a"].assignment()) == 2 and len(members["b"].assignment()) == 2):
            assert time.monotonic() - start < 60
            for m in members.values():
                got.extend(m.poll(0.2))
        assert members["a"].assignment() | members["b"].assignment() == {
            (topic, p) for p in range(4)}
        assert ("revoke", [(topic, p) for p in range(4)]) in events["a"]
        # Nothing before the offset on_assign sought to was handed over.
        assert got and min(r.offset for r in got) >= 10
    finally:
        for m in members.values():
            m.close(10)
        sink.close()


def test_constructor_errors_come_from_the_child(broker):
    with pytest.raises(ValueError, match="no_such_option"):
        ProcessKafkaSource(broker.bootstrap, "g", topics=["t"],
                           client_options={"no_such_option": 1})


CHILD_SCRIPT = """
import sys, time
from streamgmm.stream.kafka_process import ProcessKafkaSource
from streamgmm.testing import FAST_CONSUMER_OPTIONS
src = ProcessKafkaSource(sys.argv[1], "g-orphan", topics=[sys.argv[2]],
                         client_options=dict(FAST_CONSUMER_OPTIONS))
src.poll(0.2)
print(src._process.pid, flush=True)
time.sleep(600)
"""


def test_the_child_exits_when_the_daemon_is_killed(broker, topic_factory):
    topic = topic_factory(partitions=1)
    parent = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT, broker.bootstrap, topic],
                              stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        os.kill(child_pid, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while _alive(child_pid):
            assert time.monotonic() < deadline, "the consumer process outlived the daemon"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
