"""Every metric the dashboard and the alert rules read is exposed by a live daemon.

tests/test_deploy.py checks the names against the declarations in
streamgmm.service.metrics; this test checks them against what a running
`streamgmm run` actually serves after real work (batches, dead letters, a
refit, a checkpoint), so a series created only later (lag per partition,
weight per component) or under a different name cannot slip through.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamgmm.service.metrics import Metrics
from streamgmm.service.promql import metric_names
from streamgmm.stream.decode import REASONS
from streamgmm.testing import fast_kafka_source, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "streamgmm.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamgmm.json"


def used_names() -> dict[str, set[str]]:
    """Metric names read by each dashboard target and alert rule, keyed by where."""
    used: dict[str, set[str]] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            used[f"dashboard {panel['title']!r}"] = (
                used.get(f"dashboard {panel['title']!r}", set()) | metric_names(target["expr"]))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used[f"rule {rule.get('alert') or rule.get('record')}"] = metric_names(rule["expr"])
    return used


def scrape(port: int) -> dict[str, dict[str, list]]:
    """family name -> sample name -> samples, parsed from a live /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    families: dict[str, dict[str, list]] = {}
    for family in text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return families


def total(families: dict, sample: str) -> float:
    return sum(s.value for fam in families.values() for s in fam.get(sample, []))


def produce(bootstrap: str, topic: str, n: int) -> None:
    rng = np.random.default_rng(3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for i, (a, b) in enumerate(rng.normal(0, 1, (n, 2))):
            value = json.dumps({"id": f"e{i}", "a": a, "b": b}).encode()
            if i % 50 == 49:
                value = b"not json"
            producer.send(topic, value=value, partition=i % 2)
        producer.flush(30)
    finally:
        producer.close(5)


def test_dashboard_and_rules_read_only_live_metrics(broker, topic_factory, tmp_path):
    topic, alerts, dlq = topic_factory(partitions=2), topic_factory(), topic_factory()
    produce(broker.bootstrap, topic, 500)
    port = free_port()
    doc = {
        "source": {"type": "kafka", "kafka": fast_kafka_source(
            broker.bootstrap, [topic], f"g-{topic}", max_poll_records=50,
            broker_timeout_s=5)},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 2, "contamination": 0.05, "window": 200, "warmup": 100,
                     "random_state": 0, "refit": {"enabled": True, "every_events": 100}},
        "alerts": {"sink": "kafka", "topic": alerts},
        "dead_letter": {"sink": "kafka", "topic": dlq},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval_s": 1},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "logging": {"level": "INFO"},
        "shutdown": {"timeout_s": 8},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        families: dict = {}

        def worked() -> bool:
            nonlocal families
            assert daemon.poll() is None, log.read_text()[-3000:]
            try:
                families = scrape(port)
            except (urllib.error.URLError, OSError):
                return False
            return (total(families, "streamgmm_events_consumed_total") == 500
                    and total(families, "streamgmm_refits_total") >= 1
                    and total(families, "streamgmm_checkpoint_writes_total") >= 1
                    and total(families, "streamgmm_anomalies_total") >= 1)

        deadline = time.monotonic() + 60
        while not worked():
            assert time.monotonic() < deadline, f"no refit and checkpoint:\n{log.read_text()}"
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait(5)
    assert code == 0, log.read_text()[-3000:]

    live = {name for samples in families.values() for name in samples}
    # Histograms come as _bucket/_sum/_count, counters as _total: no bare names.
    assert "streamgmm_batch_duration_seconds_bucket" in live
    assert "streamgmm_batch_duration_seconds" not in live
    assert "streamgmm_events_consumed_total" in live
    assert len(families["streamgmm_consumer_lag_messages"]["streamgmm_consumer_lag_messages"]) == 2
    assert len(families["streamgmm_component_weight_ratio"][
        "streamgmm_component_weight_ratio"]) == 2

    used = used_names()
    assert sum(map(len, used.values())) > 20
    missing = {where: names - live for where, names in used.items() if names - live}
    assert not missing, f"read by the dashboard or rules, not exposed live: {missing}"

    # Each declared family is served live with samples, none is only on paper.
    fresh = generate_latest(Metrics(CollectorRegistry(), REASONS).registry).decode()
    declared = {fam.name for fam in text_string_to_metric_families(fresh)}
    assert declared == {name for name, samples in families.items() if samples}, (
        declared ^ set(families))
