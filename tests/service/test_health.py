"""Tests for streamgmm.service.health: probe semantics and the real HTTP server."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from streamgmm.service.health import HealthState, make_app, serve
from streamgmm.service.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_liveness_stays_ok_while_the_broker_is_down(clock):
    health = HealthState(stall_timeout_s=30, clock=clock)
    health.set_model_ready(True)
    for _ in range(5):
        clock.now += 10
        health.set_broker_reachable(False)
        health.mark_iteration()
    ok, body = health.liveness()
    assert ok and body["status"] == "ok"
    assert body["broker"] == "down"
    ready, body = health.readiness()
    assert not ready and body["status"] == "not_ready"


def test_liveness_fails_when_the_loop_stalls(clock):
    health = HealthState(stall_timeout_s=30, clock=clock)
    health.mark_iteration()
    clock.now += 30
    assert health.liveness()[0]
    clock.now += 0.5
    ok, body = health.liveness()
    assert not ok
    assert body["status"] == "stalled"
    assert body["seconds_since_iteration"] == pytest.approx(30.5)


def test_liveness_before_the_first_iteration_counts_from_start(clock):
    health = HealthState(stall_timeout_s=5, clock=clock)
    ok, body = health.liveness()
    assert ok and body["iterated"] is False
    clock.now += 6
    assert not health.liveness()[0]


def test_readiness_needs_broker_and_model(clock):
    health = HealthState(clock=clock)
    ok, body = health.readiness()
    assert not ok and body["broker"] == "unknown" and body["model"] == "warming_up"
    health.set_broker_reachable(True)
    assert not health.readiness()[0]
    health.set_model_ready(True)
    assert health.readiness()[0]
    health.set_broker_reachable(False)
    assert not health.readiness()[0]


def test_ready_and_idle_with_no_partitions(clock):
    health = HealthState(clock=clock)
    health.set_broker_reachable(True)
    health.set_model_ready(True)
    health.set_assignment(0)
    ok, body = health.readiness()
    assert ok and body["assigned_partitions"] == 0


def test_state_is_mirrored_on_the_metrics(clock):
    metrics = Metrics(CollectorRegistry())
    health = HealthState(metrics=metrics, clock=clock)
    reg = metrics.registry
    assert reg.get_sample_value("streamgmm_broker_up") == 0
    health.set_broker_reachable(True)
    health.set_model_ready(True)
    health.set_assignment(3)
    health.mark_iteration()
    assert reg.get_sample_value("streamgmm_broker_up") == 1
    assert reg.get_sample_value("streamgmm_model_ready") == 1
    assert reg.get_sample_value("streamgmm_assigned_partitions") == 3
    assert reg.get_sample_value("streamgmm_loop_iterations_total") == 1


def test_invalid_stall_timeout_is_named():
    with pytest.raises(ValueError, match="stall_timeout_s: expected a positive number, got 0"):
        HealthState(stall_timeout_s=0)


def test_state_is_safe_under_concurrent_updates():
    health = HealthState()

    def work():
        for i in range(500):
            health.mark_iteration()
            health.set_assignment(i)
            health.liveness()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert health.liveness()[0]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def server():
    metrics = Metrics(CollectorRegistry())
    health = HealthState(stall_timeout_s=60, metrics=metrics)
    handle = serve(make_app(metrics.registry, health), host="127.0.0.1", port=0)
    try:
        yield handle, health, metrics
    finally:
        handle.shutdown()


def test_http_metrics_endpoint(server):
    handle, health, metrics = server
    assert handle.port > 0
    metrics.observe_batch(n_consumed=4, n_scored=4, n_anomalies=1, seconds=0.001)
    status, headers, body = get(f"http://127.0.0.1:{handle.port}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert "streamgmm_events_consumed_total 4.0" in text
    assert 'streamgmm_decode_errors_total{reason="bad_json"} 0.0' in text


def test_http_probes(server):
    handle, health, _ = server
    base = f"http://127.0.0.1:{handle.port}"
    health.mark_iteration()
    status, headers, body = get(base + "/healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "ok"
    status, _, body = get(base + "/readyz")
    assert status == 503
    doc = json.loads(body)
    assert doc["broker"] == "unknown" and doc["model"] == "warming_up"
    health.set_broker_reachable(True)
    health.set_model_ready(True)
    status, _, body = get(base + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"


def test_http_unknown_path_is_404_and_wrong_method_405(server):
    handle, _, _ = server
    base = f"http://127.0.0.1:{handle.port}"
    status, _, body = get(base + "/")
    assert status == 404
    status, _, _ = get(base + "/metricsz")
    assert status == 404
    req = urllib.request.Request(base + "/healthz", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405


def test_shutdown_frees_the_port():
    health = HealthState()
    handle = serve(make_app(CollectorRegistry(), health), host="127.0.0.1", port=0)
    port = handle.port
    handle.shutdown()
    again = serve(make_app(CollectorRegistry(), health), host="127.0.0.1", port=port)
    try:
        assert again.port == port
    finally:
        again.shutdown()


def test_bind_failure_names_the_address():
    health = HealthState()
    handle = serve(make_app(CollectorRegistry(), health), host="127.0.0.1", port=0)
    try:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{handle.port}"):
            serve(make_app(CollectorRegistry(), health), host="127.0.0.1", port=handle.port)
    finally:
        handle.shutdown()
