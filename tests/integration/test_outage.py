"""Broker outages mid-stream: not ready meanwhile, live all along, nothing lost after.

Two ways to lose the broker for 30 s while the daemon has records to work on
and alerts to publish: freeze the broker process (SIGSTOP, then SIGCONT:
sockets stay open and silent) and cut the network with a loopback TCP proxy
(every connection reset, new ones refused). Tansu keeps topics in memory
only, so restarting it would lose them; these two are the outages it can
give. Records fetched before the cut are still worked on during it: their
alert sends and commits fail, are logged and counted, and the batch is redone
after the broker returns (the commit order under failure, end to end).

The daemon runs with its own reconnect backoff (``reconnect_backoff_max_ms``
derived from ``broker_timeout_s``, not set by the test).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_delivery import (
    Daemon,
    Stream,
    committed_and_end,
    final_meta,
    http_status,
    redone_batches,
    wait_for,
    write_config,
)

from streamgmm.testing import TansuBroker, TcpProxy, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PARTITIONS = 3
OUTAGE_S = 30.0
BROKER_TIMEOUT_S = 3


@contextmanager
def frozen_broker() -> Iterator[tuple[TansuBroker, Callable[[], None], Callable[[], None]]]:
    """Our own broker (this test freezes it): broker, cut, restore."""
    with TansuBroker() as broker:
        try:
            yield broker, broker.pause, broker.resume
        finally:
            broker.resume()


@contextmanager
def proxied_broker() -> Iterator[tuple[TansuBroker, Callable[[], None], Callable[[], None]]]:
    """A broker reached only through a proxy that drops everything for OUTAGE_S."""
    port = free_port()
    with TcpProxy("127.0.0.1", port) as proxy, TansuBroker(port=port,
                                                           advertised_port=proxy.port) as broker:
        yield broker, lambda: proxy.drop(OUTAGE_S), lambda: None


@pytest.mark.parametrize("outage", [frozen_broker, proxied_broker],
                         ids=["sigstop", "tcp-proxy-drop"])
def test_a_broker_outage_mid_stream_loses_nothing(tmp_path: Path, outage) -> None:
    with outage() as (broker, cut, restore):
        topic, alerts_topic = "events", "alerts"
        broker.create_topic(topic, partitions=PARTITIONS)
        broker.create_topic(alerts_topic)
        port, group = free_port(), "g-outage"
        write_config(tmp_path, broker.bootstrap, topic, group,
                     kafka={"max_poll_records": 10, "broker_timeout_s": BROKER_TIMEOUT_S},
                     alerts={"sink": "kafka", "topic": alerts_topic},
                     metrics={"enabled": True, "host": "127.0.0.1", "port": port})
        stream = Stream(broker.bootstrap, topic, PARTITIONS)
        daemon = Daemon(tmp_path)
        try:
            warm = stream.produce(300)
            wait_for(lambda: set(warm) <= set(daemon.audited()), 40, "the warm-up", daemon)
            wait_for(lambda: http_status(port, "/readyz") == 200, 10, "ready", daemon)
            # In large batches: the daemon's fetches then buffer records that it
            # goes on working on after the cut, so sends and commits fail.
            rest = stream.produce_batched(1500)
            wait_for(lambda: len(set(rest) & set(daemon.audited())) >= 100, 30,
                     "the daemon into the second part", daemon)
            cut()
            cut_at = time.monotonic()
            behind = len(set(rest) - set(daemon.audited()))
            probes = watch(port, daemon, until=cut_at + OUTAGE_S)
            restore()
            restored_at = time.monotonic()
            wait_for(lambda: http_status(port, "/readyz") == 200, 30, "ready again", daemon)
            ready_after_s = time.monotonic() - restored_at
            wait_for(lambda: set(stream.ids) <= set(daemon.audited()), 60,
                     "every event audited", daemon)
            metrics = fetch_metrics(port)
            code, seconds = daemon.stop()
        finally:
            daemon.kill()
            stream.close()
        log = daemon.log.read_text()
        assert code == 0 and seconds < 10, log[-3000:]
        committed, ends = committed_and_end(broker.bootstrap, topic, group, PARTITIONS)
    print(f"{behind} events still to do at the cut; ready {ready_after_s:.1f}s after the "
          f"broker came back; {redone_batches(log)} batch(es) redone")
    assert behind > 0, "the outage must start mid-stream"
    # During the outage: live all along, not ready once broker_timeout_s had passed.
    assert {live for _, live, _ in probes} == {200}, probes
    late = [ready for t, _, ready in probes if t > BROKER_TIMEOUT_S + 2]
    assert late and set(late) == {503}, probes
    # The daemon's own reconnect backoff (a quarter of broker_timeout_s, at least 1 s).
    assert "'reconnect_backoff_max_ms': 1000" in log
    assert ready_after_s < 15
    # The batches caught by the outage failed, were counted and redone, not skipped.
    assert redone_batches(log) >= 1
    assert metric(metrics, "streamgmm_send_failures_total") + metric(
        metrics, "streamgmm_commit_failures_total") >= 1
    assert committed == ends and sum(ends.values()) == 1800


def watch(port: int, daemon: Daemon, until: float) -> list[tuple[float, int, int]]:
    """Probe /healthz and /readyz twice a second until ``until``: (seconds in, live, ready)."""
    start, probes = time.monotonic(), []
    while time.monotonic() < until:
        assert daemon.alive(), daemon.tail()
        probes.append((time.monotonic() - start, http_status(port, "/healthz"),
                       http_status(port, "/readyz")))
        time.sleep(0.5)
    return probes


def fetch_metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in a Prometheus text exposition."""
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} not exposed"
    return float(found.group(1))


def test_sigterm_during_an_outage_still_exits_within_the_budget(tmp_path: Path) -> None:
    """A frozen broker cannot hold the shutdown past its budget (shutdown.timeout_s 8)."""
    with frozen_broker() as (broker, cut, _):
        broker.create_topic("events", partitions=PARTITIONS)
        write_config(tmp_path, broker.bootstrap, "events", "g-term",
                     kafka={"broker_timeout_s": BROKER_TIMEOUT_S})
        stream = Stream(broker.bootstrap, "events", PARTITIONS)
        daemon = Daemon(tmp_path)
        try:
            first = stream.produce(300)
            wait_for(lambda: set(first) <= set(daemon.audited()), 40, "processing", daemon)
            cut()
            time.sleep(1.0)
            start = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(15)
            seconds = time.monotonic() - start
        finally:
            daemon.kill()
            stream.close()
    assert code == 0 and seconds < 10, daemon.tail()
    assert final_meta(tmp_path)["n_events"] == 300


@pytest.mark.parametrize(("broker_timeout_s", "expected_ms"),
                         [(3, 1000), (10, 2500), (15, 3750), (60, 5000)])
def test_reconnect_backoff_follows_broker_timeout_unless_set(broker_timeout_s, expected_ms):
    from streamgmm.service.config import from_dict
    from streamgmm.service.kafka_options import consumer_options, producer_options
    from streamgmm.service.schema import KafkaConfig

    kafka = from_dict(KafkaConfig, {"topics": ["t"], "broker_timeout_s": broker_timeout_s})
    assert consumer_options(kafka)["reconnect_backoff_max_ms"] == expected_ms
    assert producer_options(kafka)["reconnect_backoff_max_ms"] == expected_ms
    chosen = from_dict(KafkaConfig, {"topics": ["t"], "broker_timeout_s": broker_timeout_s,
                                     "client_options": {"reconnect_backoff_max_ms": 30000}})
    assert consumer_options(chosen)["reconnect_backoff_max_ms"] == 30000
    assert producer_options(chosen)["reconnect_backoff_max_ms"] == 30000
