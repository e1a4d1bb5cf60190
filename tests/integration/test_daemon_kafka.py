"""`streamgmm run` against a real Kafka-protocol broker (Tansu): delivery, commits, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.service.checkpoint import CheckpointStore
from streamgmm.stream.audit import read_audit
from streamgmm.testing import fast_kafka_source, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PARTITIONS = 3


# Bad messages, in turn: (value for event i, reason, part of the detail).
BAD = [
    (lambda i: b'{"id": "e%d", "a": "n/a", "b": 1}' % i, "not_a_number", "expected a number"),
    (lambda i: None, "bad_json", "no value: a tombstone"),
    (lambda i: b'{"id": "e%d", "a": 1, "b": 1, "deep": %s}' % (i, b"[" * 5000 + b"]" * 5000),
     "bad_json", "nested too deeply"),
    (lambda i: b'{"id": "e%d", "a": 1e200, "b": 1}' % i, "out_of_range", "a: 1e+200 is beyond"),
]


class Stream:
    """Events produced one record per batch (Tansu's end_offsets counts batches)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        self.rng = np.random.default_rng(0)
        self.n = 0
        self.good: dict[str, dict] = {}   # id -> event
        self.bad: dict[str, tuple] = {}   # id -> (key, value, reason)

    def produce(self, n: int, bad_every: int = 0) -> list[str]:
        ids = []
        for _ in range(n):
            i, self.n = self.n, self.n + 1
            partition = i % PARTITIONS
            a, b = self.rng.normal(0, 1, 2)
            if i % 61 == 60:
                a = 15.0
            event = {"id": f"e{i}", "a": a, "b": b}
            value = json.dumps(event).encode()
            reason = None
            if bad_every and i % bad_every == bad_every - 1:
                make, reason, detail = BAD[(i // bad_every) % len(BAD)]
                value = make(i)
            key = f"k{i}".encode()
            meta = self.producer.send(self.topic, value=value, key=key,
                                      partition=partition).get(timeout=10)
            eid = f"{self.topic}/{partition}/{meta.offset}"
            if reason:
                self.bad[eid] = (key, value, reason, detail)
            else:
                self.good[eid] = event
            ids.append(eid)
        return ids


def daemon_config(tmp_path: Path, bootstrap: str, topic: str, group: str, **extra) -> Path:
    doc = {
        "source": {"type": "kafka", "kafka": fast_kafka_source(
            bootstrap, [topic], group, max_poll_records=100, broker_timeout_s=5)},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 1, "contamination": 0.03, "window": 300, "warmup": 100,
                     "random_state": 0, "refit": {"enabled": False}},
        "audit": {"path": str(tmp_path / "audit.txt")},
        "logging": {"level": "INFO"},
        "shutdown": {"timeout_s": 8},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Daemon:
    """A `streamgmm run` subprocess."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.handle = open(log, "ab")  # noqa: SIM115 (closed in wait)
        self.proc = subprocess.Popen([sys.executable, "-m", "streamgmm", "run", "--config",
                                      str(config)], stdout=self.handle, stderr=subprocess.STDOUT)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        """SIGTERM: the exit code and the seconds it took."""
        start = time.monotonic()
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s), time.monotonic() - start

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.handle.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.handle.close()


def wait_for(condition, timeout_s: float, what: str, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({daemon.proc.returncode}) before {what}:\n"
                                 + daemon.log.read_text()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s}s:\n"
                                 + daemon.log.read_text()[-3000:])
        time.sleep(0.2)


def audited(tmp_path: Path) -> list[str]:
    path = tmp_path / "audit.txt"
    return read_audit(path) if path.exists() else []


def read_topic(bootstrap: str, topic: str, expect: int = 0, idle_s: float = 2.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=5000, fetch_max_wait_ms=200)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        out, last = [], time.monotonic()
        while time.monotonic() - last < idle_s or len(out) < expect:
            polled = consumer.poll(200)
            for records in polled.values():
                out.extend(records)
                last = time.monotonic()
            if time.monotonic() - last > 20:
                break
        return out
    finally:
        consumer.close()


def committed_and_end(bootstrap: str, topic: str, group: str) -> tuple[dict, dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, request_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
        return {tp.partition: consumer.committed(tp) for tp in tps}, {
            tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def test_kafka_events_alerts_dead_letters_and_commits(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=PARTITIONS)
    alerts_topic, dlq_topic = topic_factory(), topic_factory()
    stream = Stream(broker.bootstrap, topic)
    stream.produce(600, bad_every=25)
    group = f"g-{topic}"
    port = free_port()
    cfg = daemon_config(
        tmp_path, broker.bootstrap, topic, group,
        alerts={"sink": "kafka", "topic": alerts_topic},
        dead_letter={"sink": "kafka", "topic": dlq_topic},
        checkpoint={"dir": str(tmp_path / "ckpt"), "interval_s": 1},
        metrics={"enabled": True, "host": "127.0.0.1", "port": port})
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(set(audited(tmp_path))) >= len(stream.good), 60,
                 "every good event audited", daemon)
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert json.loads(ready.read())["broker"] == "up"
        # A batch is counted once its commit is answered, a poll after its audit.
        wait_for(lambda: b"streamgmm_dead_letters_total 24.0" in urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read(), 10,
            "every dead letter counted", daemon)
        code, seconds = daemon.terminate(10)
        assert code == 0 and seconds < 10
    finally:
        daemon.kill()

    assert set(audited(tmp_path)) == set(stream.good)
    alerts = read_topic(broker.bootstrap, alerts_topic)
    docs = [json.loads(r.value) for r in alerts]
    ids = [d["alert_id"] for d in docs]
    assert docs and len(ids) == len(set(ids)) and set(ids) <= set(stream.good)
    for record, doc in zip(alerts, docs, strict=True):
        assert record.key == stream.good[doc["alert_id"]]["id"].encode() == doc["key"].encode()
        assert doc["explanation"][0]["feature"] in ("a", "b") and doc["score"] < doc["threshold"]
    # The planted outliers are caught, except those the warm-up buffered (the first
    # 100 good events; a fetch gives one partition at a time, so which they are varies).
    planted = {eid for eid, e in stream.good.items() if e["a"] == 15.0}
    assert len(planted) == 9 and len(planted & set(ids)) >= 6

    dead = read_topic(broker.bootstrap, dlq_topic, expect=len(stream.bad))
    assert len(dead) == len(stream.bad) == 24
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        eid = "/".join(headers[f"streamgmm.source.{k}"] for k in ("topic", "partition", "offset"))
        key, value, reason, detail = stream.bad[eid]
        # A tombstone's dead letter is empty: a tombstone would delete its key.
        assert (record.key, record.value, headers["streamgmm.reason"]) == (
            key, b"" if value is None else value, reason)
        assert detail in headers["streamgmm.detail"]
    # Each kind of bad message is there (the daemon went on after every one).
    assert {reason for _, _, reason, _ in stream.bad.values()} == {
        "not_a_number", "bad_json", "out_of_range"}

    committed, ends = committed_and_end(broker.bootstrap, topic, group)
    assert committed == ends and sum(ends.values()) == 600
    checkpoint = CheckpointStore(tmp_path / "ckpt").load_latest()
    assert checkpoint is not None and checkpoint.meta["n_events"] == len(stream.good)
    offsets = {(t, p): o for t, p, o in checkpoint.meta["offsets"]}
    assert offsets == {(topic, p): ends[p] for p in range(PARTITIONS)}


def test_sigterm_checkpoint_restart_and_replay(broker, topic_factory, tmp_path):
    """SIGTERM: exit 0 with a checkpoint; a restart goes on where it stopped; after a kill
    the events between the checkpoint and the commit are replayed without alerts."""
    topic = topic_factory(partitions=PARTITIONS)
    stream = Stream(broker.bootstrap, topic)
    group = f"g-{topic}"
    ckpt = tmp_path / "ckpt"
    cfg = daemon_config(tmp_path, broker.bootstrap, topic, group,
                        alerts={"sink": "file", "path": str(tmp_path / "alerts.jsonl")},
                        dead_letter={"sink": "none"},
                        checkpoint={"dir": str(ckpt), "interval_s": 3600},
                        metrics={"enabled": False})

    def life(n_new: int, stop: int) -> tuple[list[str], str]:
        (tmp_path / "audit.txt").unlink(missing_ok=True)
        new = stream.produce(n_new)
        daemon = Daemon(cfg, tmp_path / "daemon.log")
        try:
            wait_for(lambda: set(new) <= set(audited(tmp_path)), 60, "new events audited",
                     daemon)
            start = time.monotonic()
            daemon.signal(stop)
            code = daemon.wait(10)
            assert stop == signal.SIGKILL or (code == 0 and time.monotonic() - start < 10)
        finally:
            daemon.kill()
        return new, daemon.log.read_text()

    # 1: 300 events, SIGTERM: a checkpoint at 300.
    first, _ = life(300, signal.SIGTERM)
    assert CheckpointStore(ckpt).load_latest().meta["n_events"] == 300
    # 2: 300 more, killed: committed at 600, the checkpoint still at 300.
    second, _ = life(300, signal.SIGKILL)
    assert set(audited(tmp_path)) == set(second)  # the first 300 were not alerted again
    assert CheckpointStore(ckpt).load_latest().meta["n_events"] == 300
    # 3: 150 more: the 300 of life 2 are replayed into the model without alerts.
    third, log = life(150, signal.SIGTERM)
    assert set(audited(tmp_path)) == set(third)
    assert "replaying offsets" in log
    final = CheckpointStore(ckpt).load_latest().meta
    assert final["n_events"] == 750  # every event learned exactly once
    committed, ends = committed_and_end(broker.bootstrap, topic, group)
    assert committed == ends and sum(ends.values()) == 750
    alert_ids = [json.loads(x)["alert_id"] for x in (tmp_path / "alerts.jsonl").open()]
    assert set(alert_ids) <= set(first) | set(second) | set(third)


def test_produce_sends_the_generated_stream_keyed_by_card(broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamgmm", "produce", "--bootstrap-servers",
                           broker.bootstrap, "--topic", topic, "--rate", "400", "-n", "200",
                           "--seed", "7"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert time.monotonic() - start >= 0.45  # 200 events at 400/s take half a second
    assert b"200 events sent" in done.stderr
    records = read_topic(broker.bootstrap, topic, expect=200)
    events = sorted((json.loads(r.value) for r in records), key=lambda e: e["txn_id"])
    assert [e["txn_id"] for e in events] == [f"t{i:09d}" for i in range(1, 201)]
    assert all(r.key == json.loads(r.value)["card_id"].encode() for r in records)
    # A recorded file replays as it is, bad lines included.
    replay = tmp_path / "events.jsonl"
    replay.write_text('{"card_id": "c1", "amount": 3}\nnot json\n{"amount": 4}\n')
    other = topic_factory()
    done = subprocess.run([sys.executable, "-m", "streamgmm", "produce", "--bootstrap-servers",
                           broker.bootstrap, "--topic", other, "--rate", "0", "--file",
                           str(replay)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    got = sorted((r.value, r.key) for r in read_topic(broker.bootstrap, other, expect=3))
    assert got == sorted([(b'{"card_id": "c1", "amount": 3}', b"c1"), (b"not json", None),
                          (b'{"amount": 4}', None)])


@pytest.mark.parametrize(("client", "alerts", "consumer_process"), [
    ("kafka producer", {"sink": "kafka", "topic": "alerts"}, True),
    ("kafka source", {"sink": "stdout"}, True),  # the consumer's child process
    ("kafka source", {"sink": "stdout"}, False),
])
def test_sigterm_while_no_broker_answers_at_start_stops_at_once(tmp_path, client, alerts,
                                                                 consumer_process):
    # Nothing listens at the address: the Kafka client would wait out its
    # bootstrap timeout (30 s by default) before it gives up.
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"type": "kafka", "kafka": {
            "bootstrap_servers": f"127.0.0.1:{free_port()}", "topics": ["tx"],
            "consumer_process": consumer_process}},
        "features": {"fields": [{"name": "a"}]},
        "alerts": alerts,
        "metrics": {"enabled": False},
        "shutdown": {"timeout_s": 20},
    }))
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        wait_for(lambda: client.encode() in (tmp_path / "daemon.log").read_bytes(), 20,
                 "the first connection attempt", daemon)
        time.sleep(1.0)
        code, seconds = daemon.terminate(15)
        assert code == 0 and seconds < 5
    finally:
        daemon.kill()
    assert b"the attempt is given up" in (tmp_path / "daemon.log").read_bytes()
