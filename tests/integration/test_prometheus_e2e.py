"""End to end with a real Prometheus: broker -> `streamgmm run` -> /metrics -> Prometheus -> PromQL.

The test produces a known stream (good events, planted outliers, undecodable
records of two kinds) to a Tansu broker, runs the daemon on it, lets Debian's
``prometheus`` scrape the daemon every second with the alert rules of
``deploy/`` loaded, and compares what PromQL answers through the HTTP API with
what the test counted itself: events produced, records on the alerts topic
and on the dead-letter topic (both read back by the test, not taken from the
daemon's counters). Every rule must evaluate without error and every
dashboard query must be accepted on the live data.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.testing import PrometheusServer, fast_kafka_source, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "streamgmm.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamgmm.json"
PARTITIONS = 3
N_EVENTS = 600
FIRST_PART = 400


def produce_stream(bootstrap: str, topic: str, lo: int = 0, hi: int = N_EVENTS) -> Counter:
    """Produce records lo..hi-1 of the stream; return how many of each kind (good, bad reasons)."""
    rng = np.random.default_rng(7)
    draws = rng.normal(0, 1, (N_EVENTS, 2))
    kinds: Counter = Counter()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for i in range(lo, hi):
            a, b = draws[i]
            if i % 61 == 60:
                a = 12.0  # a planted outlier
            value = json.dumps({"id": f"e{i}", "a": a, "b": b}).encode()
            kind = "good"
            if i % 29 == 28:
                value, kind = b'{"id": "e%d", "a": "n/a", "b": 1}' % i, "not_a_number"
            elif i % 47 == 46:
                value, kind = b"\x00 not json", "bad_json"
            kinds[kind] += 1
            producer.send(topic, value=value, key=f"k{i}".encode(), partition=i % PARTITIONS)
        producer.flush(30)
    finally:
        producer.close(5)
    return kinds


def count_records(bootstrap: str, topic: str, idle_s: float = 2.0) -> int:
    """Records on ``topic`` from the beginning, read until it stays idle for ``idle_s``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=5000, fetch_max_wait_ms=200)
    try:
        consumer.assign([TopicPartition(topic, p)
                         for p in consumer.partitions_for_topic(topic) or {0}])
        consumer.seek_to_beginning()
        n, last = 0, time.monotonic()
        while time.monotonic() - last < idle_s:
            for records in consumer.poll(200).values():
                n += len(records)
                last = time.monotonic()
        return n
    finally:
        consumer.close()


def daemon_config(tmp_path: Path, bootstrap: str, topics: dict[str, str], port: int) -> Path:
    doc = {
        "source": {"type": "kafka", "kafka": fast_kafka_source(
            bootstrap, [topics["events"]], f"g-{topics['events']}", max_poll_records=100,
            broker_timeout_s=5)},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 2, "contamination": 0.03, "window": 300, "warmup": 100,
                     "random_state": 0, "refit": {"enabled": True, "every_events": 150}},
        "alerts": {"sink": "kafka", "topic": topics["alerts"]},
        "dead_letter": {"sink": "kafka", "topic": topics["dlq"]},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval_s": 1},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "logging": {"level": "INFO"},
        "shutdown": {"timeout_s": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def value(prom: PrometheusServer, promql: str) -> float:
    """The single value of an instant query."""
    result = prom.query(promql)
    assert len(result) == 1, f"{promql}: expected one series, got {result}"
    return float(result[0]["value"][1])


def equals(n: float):
    return lambda result: len(result) == 1 and float(result[0]["value"][1]) == n


def grafana_to_promql(expr: str) -> str:
    """Substitute the dashboard's Grafana variables as Grafana would for this server."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def rules_status(prom: PrometheusServer) -> list[dict]:
    with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=5) as resp:
        groups = json.load(resp)["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_prometheus_counts_match_the_topics(broker, topic_factory, tmp_path, prometheus_bin):
    topics = {"events": topic_factory(partitions=PARTITIONS), "alerts": topic_factory(),
              "dlq": topic_factory()}
    # The stream comes in two parts: a refit started in the first lands with
    # the first batch of the second (however fast the first was read).
    kinds = produce_stream(broker.bootstrap, topics["events"], 0, FIRST_PART)
    port = free_port()
    config = daemon_config(tmp_path, broker.bootstrap, topics, port)
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    prom = PrometheusServer([f"127.0.0.1:{port}"], scrape_interval="1s",
                            binary=prometheus_bin, rule_files=[str(RULES)])
    try:
        prom.start()
        job = '{job="streamgmm"}'
        try:
            prom.wait_for(f"streamgmm_events_consumed_total{job}", equals(FIRST_PART), 90)
            time.sleep(1.0)  # the refit of the first part's window finishes meanwhile
            kinds += produce_stream(broker.bootstrap, topics["events"], FIRST_PART, N_EVENTS)
            prom.wait_for(f"streamgmm_events_consumed_total{job}", equals(N_EVENTS), 90)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from exc
        assert daemon.poll() is None, log.read_text()[-3000:]
        n_bad = N_EVENTS - kinds["good"]
        assert kinds["not_a_number"] and kinds["bad_json"]
        n_alerts = count_records(broker.bootstrap, topics["alerts"])
        n_dead = count_records(broker.bootstrap, topics["dlq"])
        assert n_alerts > 0 and n_dead == n_bad

        # The last batch's counters are scraped with its consumed count; the
        # short wait only absorbs a scrape that fell between two updates.
        prom.wait_for(f"streamgmm_anomalies_total{job}", equals(n_alerts), 10)
        assert value(prom, f"streamgmm_alerts_published_total{job}") == n_alerts
        assert value(prom, f"streamgmm_events_scored_total{job}") == kinds["good"]
        assert value(prom, f"streamgmm_dead_letters_total{job}") == n_dead
        assert value(prom, f"sum(streamgmm_decode_errors_total{job})") == n_bad
        by_reason = {r["metric"]["reason"]: float(r["value"][1]) for r in prom.query(
            f"streamgmm_decode_errors_total{job} > 0")}
        assert by_reason == {"not_a_number": kinds["not_a_number"],
                             "bad_json": kinds["bad_json"]}
        assert value(prom, f'up{job}') == 1
        assert value(prom, f"streamgmm_model_ready{job}") == 1
        assert value(prom, f"streamgmm_broker_up{job}") == 1
        assert value(prom, f"sum(streamgmm_refits_total{job})") >= 1
        assert value(prom, f"streamgmm_checkpoint_writes_total{job}") >= 1
        assert value(prom, f"sum(streamgmm_consumer_lag_messages{job})") == 0

        # The alert rules evaluate on the live series without error.
        prom.wait_for("vector(1)", lambda _: all(
            r["lastEvaluation"] > "2000" for r in rules_status(prom)), 15)
        broken = {r["name"]: r.get("lastError") for r in rules_status(prom)
                  if r["health"] != "ok"}
        assert not broken
        # Every dashboard query is accepted and has data (failure counters exist at zero).
        panels = json.loads(DASHBOARD.read_text())["panels"]
        empty = []
        for panel in panels:
            for target in panel.get("targets", []):
                if not prom.query(grafana_to_promql(target["expr"])):
                    empty.append(target["expr"])
        assert not empty, empty
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait(5)
        prom.stop()
    assert code == 0, log.read_text()[-3000:]
