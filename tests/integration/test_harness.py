"""The real-component harness itself: Tansu broker, TCP proxy, Prometheus."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from streamgmm.stream.kafka_io import KafkaSink, KafkaSource
from streamgmm.testing import (
    FAST_CONSUMER_OPTIONS,
    PrometheusServer,
    TansuBroker,
    TcpProxy,
    free_port,
    promtool_path,
)
from streamgmm.testing.tansu import _metadata_brokers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_broker_starts_in_seconds_and_advertises_its_port():
    start = time.monotonic()
    with TansuBroker() as b:
        elapsed = time.monotonic() - start
        assert elapsed < 5, f"broker took {elapsed:.1f}s to answer metadata"
        assert _metadata_brokers(b.port, 1.0) == [("127.0.0.1", b.port)]
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        pid = b.pid
    assert b.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_create_topic_and_duplicate_is_an_error(broker, topic_factory):
    name = topic_factory(partitions=3)
    with pytest.raises(RuntimeError, match=f"topic create '{name}' .*already exists"):
        broker.create_topic(name, partitions=3)


def test_pause_freezes_the_broker_and_resume_brings_it_back():
    with TansuBroker() as b:
        b.pause()
        try:
            with pytest.raises(OSError):
                _metadata_brokers(b.port, 0.5)
        finally:
            b.resume()
        assert _metadata_brokers(b.port, 2.0) == [("127.0.0.1", b.port)]


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(4096)


def _recv_or_reset(sock: socket.socket) -> bytes:
    # A cut connection reads as end-of-stream or as a reset, depending on timing.
    try:
        return sock.recv(10)
    except ConnectionResetError:
        return b""


def test_proxy_forwards_and_drop_cuts_then_recovers():
    server, port = _echo_server()
    try:
        with TcpProxy("127.0.0.1", port) as proxy:
            assert _roundtrip(proxy.port) == b"ping"
            held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
            held.sendall(b"x")
            assert held.recv(10) == b"x"
            proxy.drop(1.0)
            assert _recv_or_reset(held) == b"", "the open connection must be closed"
            held.close()
            assert _roundtrip(proxy.port) == b"", "a new connection during a drop must close"
            time.sleep(1.1)
            assert _roundtrip(proxy.port, b"back") == b"back"
    finally:
        server.close()


def test_clients_behind_the_proxy_lose_and_regain_the_broker():
    broker_port = free_port()
    with TcpProxy("127.0.0.1", broker_port) as proxy, \
            TansuBroker(port=broker_port, advertised_port=proxy.port) as b:
        b.create_topic("events", partitions=1)
        assert _metadata_brokers(b.port, 1.0) == [("127.0.0.1", proxy.port)]
        sink = KafkaSink(proxy.address, "events")
        src = KafkaSource(proxy.address, "g", topics=["events"],
                          client_options=dict(FAST_CONSUMER_OPTIONS), reachability_window_s=1.5)
        try:
            sink.send(b"one")
            assert sink.flush_and_verify(10) == (1, [])
            got = []
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                got += src.poll(0.2)
            assert [r.value for r in got] == [b"one"]
            accepted = proxy.connections_accepted
            proxy.drop(3.0)
            deadline = time.monotonic() + 10
            while src.broker_reachable() and time.monotonic() < deadline:
                src.poll(0.2)
            assert not src.broker_reachable()
            sink.send(b"two")
            assert sink.flush_and_verify(15) == (1, [])  # retried after the drop ended
            deadline = time.monotonic() + 20
            while len(got) < 2 and time.monotonic() < deadline:
                got += src.poll(0.2)
            assert [r.value for r in got] == [b"one", b"two"]
            assert src.broker_reachable()
            assert proxy.connections_accepted > accepted
        finally:
            src.close(2)
            sink.close(2)


@pytest.fixture
def metrics_target():
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauge = Gauge("streamgmm_harness_value", "A value the harness test sets", registry=registry)
    gauge.set(42)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    thread.join(5)


def test_prometheus_scrapes_and_answers_queries(prometheus_bin, metrics_target):
    with PrometheusServer([metrics_target], binary=prometheus_bin) as prom:
        result = prom.wait_for("streamgmm_harness_value", lambda r: len(r) == 1, timeout=30)
        assert result[0]["value"][1] == "42"
        assert result[0]["metric"]["job"] == "streamgmm"
        up = prom.query('up{job="streamgmm"}')
        assert up[0]["value"][1] == "1"
        with pytest.raises(RuntimeError, match="bad_data"):
            prom.query("sum(")
        with pytest.raises(TimeoutError, match="did not satisfy"):
            prom.wait_for("streamgmm_harness_value", lambda r: False, timeout=0.5)


def test_promtool_is_found_with_prometheus(prometheus_bin):
    assert promtool_path() is not None
