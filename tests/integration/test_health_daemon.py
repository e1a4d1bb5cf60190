"""/healthz and /readyz of a running daemon: warm-up, broker outage, idle replica, stuck loop.

The broker-outage and idle-replica cases run `streamgmm run` against a real
broker (Tansu); the stuck loop runs the real consumer loop, health state and
HTTP server in this process, over a source whose poll blocks until released.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaProducer

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.service.config import from_dict
from streamgmm.service.detector_config import detector_params
from streamgmm.service.health import HealthState, make_app, serve
from streamgmm.service.metrics import Metrics
from streamgmm.service.schema import DetectorConfig, FeaturesConfig
from streamgmm.stream.decode import REASONS, Decoder
from streamgmm.stream.loop import ConsumerLoop, LoopSettings
from streamgmm.stream.protocols import Source
from streamgmm.stream.records import Record
from streamgmm.stream.sinks import NullSink
from streamgmm.testing import TansuBroker, fast_kafka_source, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BROKER_TIMEOUT_S = 2.0
# Short, so that a loop blocked by the frozen broker would fail liveness within the freeze.
STALL_TIMEOUT_S = 3.0
WARMUP = 60


def probe(port: int, path: str) -> tuple[int, dict]:
    """GET a probe; its status code and JSON body (503 is an answer, not an error)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(condition, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{what} not within {timeout_s}s\n{tail}")
        time.sleep(0.1)


def produce(bootstrap: str, topic: str, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for i, (a, b) in enumerate(rng.normal(0, 1, (n, 2))):
            producer.send(topic, json.dumps({"id": f"e{seed}-{i}", "a": a, "b": b}).encode())
        producer.flush(10)
    finally:
        producer.close(5)


def write_config(tmp_path: Path, name: str, bootstrap: str, topic: str, group: str,
                 port: int) -> Path:
    doc = {
        "source": {"type": "kafka", "kafka": fast_kafka_source(
            bootstrap, [topic], group, max_poll_records=100,
            broker_timeout_s=BROKER_TIMEOUT_S)},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 1, "contamination": 0.05, "window": 200,
                     "warmup": WARMUP, "random_state": 0, "refit": {"enabled": False}},
        "alerts": {"sink": "none"},
        "dead_letter": {"sink": "none"},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "health": {"stall_timeout_s": STALL_TIMEOUT_S},
        "logging": {"level": "INFO"},
        "shutdown": {"timeout_s": 5},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Daemon:
    """`streamgmm run` in a subprocess, its output in a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgmm", "run", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; killed (and reported as -9) when it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return -9


def serving(port: int, daemon: Daemon) -> bool:
    assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
    try:
        probe(port, "/healthz")
    except OSError:
        return False
    return True


# ------------------------------------------------------------- a real daemon


def test_readiness_through_warm_up_and_a_broker_outage(tmp_path):
    """Not ready while warming up, ready after it; during a freeze longer than
    broker_timeout_s not ready but live all along; ready again after it."""
    with TansuBroker() as broker:  # our own: this test freezes it
        topic = f"health-{free_port()}"
        broker.create_topic(topic)
        port = free_port()
        daemon = Daemon(write_config(tmp_path, "d", broker.bootstrap, topic, "g-health", port),
                        tmp_path / "daemon.log")
        try:
            until(lambda: serving(port, daemon), 20, "the HTTP server", daemon.log)
            until(lambda: probe(port, "/readyz")[1]["assigned_partitions"] == 1, 30,
                  "the partition assigned", daemon.log)
            code, body = probe(port, "/readyz")
            assert code == 503 and body["model"] == "warming_up" and body["broker"] == "up"
            assert probe(port, "/healthz")[0] == 200

            produce(broker.bootstrap, topic, WARMUP // 2)
            time.sleep(1.0)  # half the warm-up consumed: still warming up
            assert probe(port, "/readyz")[0] == 503
            produce(broker.bootstrap, topic, WARMUP, seed=1)
            until(lambda: probe(port, "/readyz")[0] == 200, 30, "ready after warm-up",
                  daemon.log)

            broker.pause()
            frozen_at = time.monotonic()
            live: list[tuple[int, float]] = []

            def check_live() -> None:
                code, body = probe(port, "/healthz")
                live.append((code, body["seconds_since_iteration"]))

            def not_ready() -> bool:
                check_live()
                return probe(port, "/readyz")[0] == 503

            until(not_ready, BROKER_TIMEOUT_S + 10, "not ready while the broker is frozen",
                  daemon.log)
            assert time.monotonic() - frozen_at >= BROKER_TIMEOUT_S / 2  # not at once
            assert probe(port, "/readyz")[1]["broker"] == "down"
            # Liveness holds through an outage well past the stall timeout: the
            # loop goes on iterating (empty polls) while the broker is silent.
            while time.monotonic() - frozen_at < 2 * STALL_TIMEOUT_S + 2:
                check_live()
                time.sleep(0.2)
            assert {code for code, _ in live} == {200}, live
            assert max(since for _, since in live) < STALL_TIMEOUT_S / 2, live
            assert probe(port, "/readyz")[0] == 503

            broker.resume()
            until(lambda: probe(port, "/readyz")[0] == 200, 30, "ready after the outage",
                  daemon.log)
            assert probe(port, "/healthz")[0] == 200
        finally:
            broker.resume()
            code = daemon.stop()
    assert code == 0, daemon.log.read_text()[-3000:]


def test_a_replica_with_no_partitions_is_ready_and_idle(broker, topic_factory, tmp_path):
    """Two replicas in one group on a one-partition topic, no events yet: the one
    without the partition is ready with no model (it has nothing to score), the
    other is not ready until its warm-up is done."""
    topic = topic_factory(partitions=1)
    group = f"g-{topic}"
    ports = [free_port(), free_port()]
    daemons = [
        Daemon(write_config(tmp_path, name, broker.bootstrap, topic, group, port),
               tmp_path / f"{name}.log")
        for name, port in zip("ab", ports, strict=True)]
    try:
        for port, daemon in zip(ports, daemons, strict=True):
            until(lambda p=port, d=daemon: serving(p, d), 20, "the HTTP server", daemon.log)

        def settled() -> bool:
            bodies = [probe(p, "/readyz")[1] for p in ports]
            return [b["assigned_partitions"] for b in bodies] in ([0, 1], [1, 0])

        until(settled, 40, "the partition assigned to one replica", daemons[1].log)
        answers = [probe(p, "/readyz") for p in ports]
        idle = 0 if answers[0][1]["assigned_partitions"] == 0 else 1
        busy = 1 - idle
        assert answers[idle][0] == 200, answers[idle]
        assert answers[idle][1]["model"] == "warming_up" and answers[idle][1]["broker"] == "up"
        assert answers[busy][0] == 503 and answers[busy][1]["model"] == "warming_up"
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{ports[idle]}/metrics", timeout=3).read().decode()
        assert "streamgmm_assigned_partitions 0.0" in metrics
        assert "streamgmm_model_ready 0.0" in metrics

        produce(broker.bootstrap, topic, 2 * WARMUP)
        until(lambda: probe(ports[busy], "/readyz")[0] == 200, 30,
              "the replica with the partition ready", daemons[busy].log)
        assert probe(ports[idle], "/readyz")[0] == 200
        assert all(probe(p, "/healthz")[0] == 200 for p in ports)
    finally:
        codes = [d.stop() for d in daemons]
    assert codes == [0, 0], daemons[0].log.read_text()[-2000:]


# ------------------------------------------------------- a stuck loop, in-process


class BlockingSource(Source):
    """A one-partition source whose poll blocks while ``gate`` is clear."""

    partitioned = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()
        self.reachable = True
        self.pending: list[Record] = []
        self.lock = threading.Lock()
        self.offset = 0

    def add(self, n: int) -> None:
        rng = np.random.default_rng(self.offset)
        with self.lock:
            for a, b in rng.normal(0, 1, (n, 2)):
                value = json.dumps({"a": a, "b": b}).encode()
                self.pending.append(Record("t", 0, self.offset, None, value, time.time() * 1000))
                self.offset += 1

    def poll(self, timeout_s: float) -> list[Record]:
        if not self.gate.is_set():
            self.blocked.set()
            self.gate.wait()
            self.blocked.clear()
        with self.lock:
            out, self.pending = self.pending[:50], self.pending[50:]
        if not out:
            time.sleep(timeout_s)
        return out

    def broker_reachable(self) -> bool:
        return self.reachable

    def assignment(self) -> set[tuple[str, int]]:
        return {("t", 0)}

    def committed(self, topic: str, partition: int) -> int | None:
        return None

    def commit(self, offsets: dict) -> bool:
        return True

    def seek(self, topic: str, partition: int, offset: int) -> None:
        raise AssertionError("nothing to seek: every commit succeeds")

    def lag(self) -> dict:
        return {}

    def close(self, timeout_s: float = 5.0) -> None:
        self.gate.set()


def test_liveness_fails_when_the_loop_is_stuck_and_recovers():
    features = from_dict(FeaturesConfig, {"fields": [{"name": "a"}, {"name": "b"}]})
    detector_cfg = from_dict(DetectorConfig, {
        "n_components": 1, "warmup": 40, "window": 100, "random_state": 0,
        "refit": {"enabled": False}})
    metrics = Metrics(decode_reasons=REASONS)
    health = HealthState(stall_timeout_s=1.0, metrics=metrics)
    source = BlockingSource()
    loop = ConsumerLoop(
        source, Decoder(features), AnomalyDetector(**detector_params(detector_cfg, ["a", "b"])),
        NullSink(), NullSink(), settings=LoopSettings(poll_timeout_s=0.05),
        metrics=metrics, health=health)
    loop.on_assign([("t", 0)])
    server = serve(make_app(metrics.registry, health), "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        until(lambda: probe(server.port, "/healthz")[0] == 200, 5, "live")
        assert probe(server.port, "/readyz")[1]["model"] == "warming_up"
        source.add(60)
        until(lambda: probe(server.port, "/readyz")[0] == 200, 10, "ready after warm-up")

        source.reachable = False  # the broker goes away: not ready, still live
        until(lambda: probe(server.port, "/readyz")[0] == 503, 5, "not ready")
        time.sleep(1.5)
        code, body = probe(server.port, "/healthz")
        assert code == 200 and body["broker"] == "down"
        source.reachable = True

        source.gate.clear()  # the loop blocks inside poll
        assert source.blocked.wait(5)
        until(lambda: probe(server.port, "/healthz")[0] == 503, 5, "liveness failing")
        code, body = probe(server.port, "/healthz")
        assert body["status"] == "stalled" and body["seconds_since_iteration"] > 1.0
        source.gate.set()
        until(lambda: probe(server.port, "/healthz")[0] == 200, 5, "live again")
    finally:
        stop.set()
        source.gate.set()
        thread.join(10)
        server.shutdown()
    assert not thread.is_alive()
