"""At-least-once through crashes: `streamgmm run` SIGKILLed at random points and restarted.

Also holds the helpers the other delivery tests share (test_rebalance.py,
test_outage.py): a stream producer, a daemon subprocess with its own work
directory, and read-outs of audits, alerts, checkpoints and group offsets.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.service.checkpoint import CheckpointStore
from streamgmm.stream.audit import read_audit
from streamgmm.testing import fast_kafka_source

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

#: Group timings the daemon takes from its own config keys, not client_options.
#: Left to the daemon's own default (derived from broker_timeout_s), which the
#: outage tests exercise.
DAEMON_DEFAULTS = {"reconnect_backoff_max_ms"}
OUTLIER_EVERY = 61


# ------------------------------------------------------------------ the stream


class Stream:
    """Events {"id", "a", "b"} spread round-robin over partitions, one record per batch.

    One record per produce request because Tansu's end offsets count batches.
    ``ids`` holds every event's id (``topic/partition/offset``) as produced.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, seed: int = 0) -> None:
        self.topic = topic
        self.partitions = partitions
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0,
                                      request_timeout_ms=5000, max_block_ms=10_000)
        self.batcher = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50,
                                     batch_size=256 * 1024, request_timeout_ms=5000,
                                     max_block_ms=10_000)
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.ids: list[str] = []
        self.outliers: set[str] = set()
        self._lock = threading.Lock()

    def produce(self, n: int, rate: float | None = None) -> list[str]:
        """Send n events (at ``rate`` events per second if given); their ids."""
        new, start = [], time.monotonic()
        for k in range(n):
            if rate:
                time.sleep(max(0.0, start + k / rate - time.monotonic()))
            new.append(self._send_one())
        return new

    def produce_batched(self, n: int) -> list[str]:
        """Send n events in large record batches (a consumer fetch then buffers many).

        The last event of each partition goes alone, so that the topic's end
        offsets still count records on Tansu.
        """
        n_alone = min(n, self.partitions)
        futures = [self._send_one(wait=False) for _ in range(n - n_alone)]
        self.batcher.flush(timeout=30)
        new = [self._record(future.get(timeout=15), outlier) for future, outlier in futures]
        return new + [self._send_one() for _ in range(n_alone)]

    def produce_in_background(self, n: int, rate: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(n, rate), daemon=True)
        thread.start()
        return thread

    def _send_one(self, wait: bool = True) -> Any:
        """Send the next event; its id, or (future, outlier) when not waiting."""
        with self._lock:
            i, self.n = self.n, self.n + 1
        a, b = self.rng.normal(0, 1, 2)
        outlier = i % OUTLIER_EVERY == OUTLIER_EVERY - 1
        event = {"id": f"e{i}", "a": 15.0 if outlier else a, "b": b}
        producer = self.producer if wait else self.batcher
        future = producer.send(self.topic, value=json.dumps(event).encode(),
                               key=f"k{i}".encode(), partition=i % self.partitions)
        if not wait:
            return future, outlier
        return self._record(future.get(timeout=15), outlier)

    def _record(self, meta: Any, outlier: bool) -> str:
        eid = f"{self.topic}/{meta.partition}/{meta.offset}"
        with self._lock:
            self.ids.append(eid)
            if outlier:
                self.outliers.add(eid)
        return eid

    def close(self) -> None:
        self.producer.close(timeout=5)
        self.batcher.close(timeout=5)


# ------------------------------------------------------------------ the daemon


def write_config(workdir: Path, bootstrap: str, topic: str, group: str,
                 **overrides: Any) -> Path:
    """A Kafka-source config with audit and checkpoints in ``workdir``.

    ``overrides`` replace top-level sections; ``kafka=`` entries update
    ``source.kafka``.
    """
    settings = {"max_poll_records": 50, "broker_timeout_s": 3, **overrides.pop("kafka", {})}
    kafka = fast_kafka_source(bootstrap, [topic], group, leave_out=tuple(DAEMON_DEFAULTS),
                              **settings)
    doc = {
        "source": {"type": "kafka", "kafka": kafka},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 1, "contamination": 0.03, "window": 500, "warmup": 100,
                     "random_state": 0, "refit": {"enabled": False}},
        "alerts": {"sink": "none"},
        "dead_letter": {"sink": "none"},
        "checkpoint": {"dir": str(workdir / "ckpt"), "interval_s": 1, "keep": 3},
        "audit": {"path": str(workdir / "audit.txt")},
        "metrics": {"enabled": False},
        "logging": {"level": "INFO"},
        "shutdown": {"timeout_s": 8},
        **overrides,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Daemon:
    """One `streamgmm run` subprocess; every life of a work directory appends to one log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "daemon.log"
        self.handle = open(self.log, "ab")  # noqa: SIM115 (closed in wait/kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", "--config", str(workdir / "config.yaml")],
            stdout=self.handle, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self, timeout_s: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took."""
        start = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        finally:
            self.handle.close()
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)
        self.handle.close()

    def audited(self) -> list[str]:
        path = self.workdir / "audit.txt"
        return read_audit(path) if path.exists() else []

    def tail(self, n_chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n_chars:]


def wait_for(condition, timeout_s: float, what: str, *daemons: Daemon) -> None:
    """Poll ``condition`` until true; fail with the daemons' logs on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for d in daemons:
            if not d.alive():
                raise AssertionError(f"daemon exited ({d.proc.returncode}) before {what}:\n"
                                     + d.tail())
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s}s:\n"
                                 + "\n----\n".join(d.tail() for d in daemons))
        time.sleep(0.1)


def final_meta(workdir: Path) -> dict:
    """The meta of the newest checkpoint in ``workdir``."""
    checkpoint = CheckpointStore(workdir / "ckpt").load_latest()
    assert checkpoint is not None, f"no checkpoint in {workdir / 'ckpt'}"
    return checkpoint.meta


def committed_and_end(bootstrap: str, topic: str, group: str,
                      partitions: int) -> tuple[dict, dict]:
    """The group's committed offsets and the topic's end offsets, per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, request_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return ({tp.partition: consumer.committed(tp) for tp in tps},
                {tp.partition: off for tp, off in ends.items()})
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0) -> list:
    """Every record of a topic, read until nothing came for ``idle_s``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=5000, fetch_max_wait_ms=200)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out, last = [], time.monotonic()
        while time.monotonic() - last < idle_s:
            for records in consumer.poll(200).values():
                out.extend(records)
                last = time.monotonic()
        return out
    finally:
        consumer.close()


def http_status(port: int, path: str) -> int:
    """The HTTP status of GET path on the daemon's metrics port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def assignments(workdir: Path) -> int:
    """How many times the daemons of ``workdir`` were assigned partitions (all lives)."""
    path = workdir / "daemon.log"
    return path.read_text(errors="replace").count("partitions assigned") if path.exists() else 0


def last_checkpointed_count(workdir: Path) -> int | None:
    """The event count of the last checkpoint the daemon logged (the file may be mid-write)."""
    path = workdir / "daemon.log"
    found = re.findall(r"checkpoint \S+ written: (\d+) events learned",
                       path.read_text(errors="replace") if path.exists() else "")
    return int(found[-1]) if found else None


BATCHES_IN_FLIGHT = 4  # MAX_BATCHES_IN_FLIGHT in the loop, and the one it polls beyond them


def redone_batches(log: str) -> int:
    """Batches the daemon logged as redone (a failed send or commit)."""
    return log.count("the batch will be redone")


# ----------------------------------------------------------------------- tests


def kill_mid_work(workdir: Path, producer: threading.Thread, delay_s: float) -> None:
    """Start a daemon life, SIGKILL it ``delay_s`` after it audits its first event."""
    daemon = Daemon(workdir)
    try:
        before = len(daemon.audited())
        wait_for(lambda: len(daemon.audited()) > before or not producer.is_alive(),
                 30, "a life processing", daemon)
        time.sleep(delay_s)
    finally:
        daemon.kill()


def test_sigkill_at_random_points_loses_nothing_and_learns_each_event_once(
        broker, topic_factory, tmp_path):
    partitions, n_events, max_poll, kills = 3, 2400, 50, 4
    topic, alerts_topic = topic_factory(partitions=partitions), topic_factory()
    group = f"g-{topic}"
    write_config(tmp_path, broker.bootstrap, topic, group,
                 kafka={"max_poll_records": max_poll},
                 alerts={"sink": "kafka", "topic": alerts_topic})
    stream = Stream(broker.bootstrap, topic, partitions)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # About 20 s of stream: each life (start-up, group join, work) takes 3-5 s.
    producer = stream.produce_in_background(n_events, rate=120)
    try:
        for _ in range(kills):
            kill_mid_work(tmp_path, producer, rng.uniform(0.2, 2.0))
        producer.join(30)
        assert stream.n == n_events
        joined = assignments(tmp_path)
        daemon = Daemon(tmp_path)
        try:
            # The audit spans every life: also wait for this one to be at work
            # (a SIGTERM before the handlers are installed would just kill it)
            # and for its model to have caught up by replay (its checkpoints say).
            wait_for(lambda: assignments(tmp_path) > joined
                     and set(stream.ids) <= set(daemon.audited())
                     and last_checkpointed_count(tmp_path) == n_events, 60,
                     "every event audited and learned", daemon)
            code, seconds = daemon.stop()
        finally:
            daemon.kill()
    finally:
        stream.close()
    log = daemon.log.read_text()
    assert code == 0 and seconds < 10, log[-3000:]
    # The loop overlaps batches: one being scored, one waiting for its sends'
    # acknowledgements, one for its commit; a kill or a redo repeats at most those.
    in_flight = (kills + redone_batches(log)) * BATCHES_IN_FLIGHT * max_poll  # note the seed
    audit = daemon.audited()
    assert set(audit) == set(stream.ids), f"seed {seed}"
    assert len(audit) - len(set(audit)) <= in_flight, f"seed {seed}"
    # Alerts: only stream events, duplicated only within batches in flight.
    alert_ids = [json.loads(r.value)["alert_id"] for r in read_topic(broker.bootstrap,
                                                                      alerts_topic)]
    duplicates = sum(n - 1 for n in Counter(alert_ids).values())
    assert set(alert_ids) <= set(stream.ids) and duplicates <= in_flight, f"seed {seed}"
    late_outliers = {e for e in stream.outliers if int(e.rsplit("/", 1)[1]) > 100}
    assert len(late_outliers & set(alert_ids)) >= 0.8 * len(late_outliers), f"seed {seed}"
    # The model learned every event exactly once across the five lives.
    assert "replaying offsets" in log
    meta = final_meta(tmp_path)
    assert meta["n_events"] == n_events, f"seed {seed}"
    # Every checkpoint of every life was consistent: the model had learned
    # exactly the events below its offsets (all partitions start at 0).
    for count, offsets in re.findall(r"written: (\d+) events learned, offsets (.*)", log):
        learned = sum(int(o) for o in re.findall(r"=(\d+)", offsets))
        assert int(count) == learned, f"seed {seed}: {count} events, offsets {offsets}"
    committed, ends = committed_and_end(broker.bootstrap, topic, group, partitions)
    assert committed == ends and sum(ends.values()) == n_events
    assert {(t, p): o for t, p, o in meta["offsets"]} == {(topic, p): o for p, o in ends.items()}
