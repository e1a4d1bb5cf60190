"""Liveness and readiness of the daemon, and the one HTTP server that exposes them.

Liveness means the consumer loop is iterating (a poll returned, even an empty
one); it never depends on the broker, so a broker outage cannot get every pod
restarted at once. Readiness means the broker is reachable and a model is
ready; a replica that the group gave no partitions is ready and idle,
otherwise a rollout would hang on it. Before its first assignment (the group
join) a replica without a model is not ready.

prometheus-client's ``start_http_server`` answers every path with metrics, so
:func:`make_app` routes ``/metrics`` to its WSGI app and answers ``/healthz``
and ``/readyz`` itself; :func:`serve` runs that app on a daemon thread.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from streamgmm.service.metrics import Metrics

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class HealthState:
    """Thread-safe health of the daemon, written by the loop and read by the probes.

    Parameters
    ----------
    stall_timeout_s : float
        Liveness fails when the loop has not iterated for this long (counted
        from creation before the first iteration). Keep it well above the
        poll timeout plus the slowest batch and checkpoint.
    metrics : Metrics, optional
        When given, every update is mirrored onto its gauges
        (``streamgmm_broker_up``, ``streamgmm_model_ready``,
        ``streamgmm_assigned_partitions``, the loop iteration counter and
        timestamp), so the loop makes one call, not two.
    clock : callable
        Monotonic seconds; tests inject a fake one.
    """

    def __init__(
        self,
        stall_timeout_s: float = 60.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stall_timeout_s > 0:
            raise ValueError(
                f"stall_timeout_s: expected a positive number, got {stall_timeout_s!r}")
        self.stall_timeout_s = float(stall_timeout_s)
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._last_iteration = clock()
        self._iterated = False
        self._broker: bool | None = None
        self._model_ready = False
        # None until the first assignment: joining the group is not being idle.
        self._assigned: int | None = None
        if metrics is not None:
            metrics.model_ready.set(0)
            metrics.broker_up.set(0)

    def mark_iteration(self) -> None:
        """Record that the loop iterated: a poll returned, even an empty one."""
        with self._lock:
            self._last_iteration = self._clock()
            self._iterated = True
        if self._metrics is not None:
            self._metrics.mark_iteration()

    def set_broker_reachable(self, reachable: bool) -> None:
        """Record whether the last exchange with the broker succeeded."""
        with self._lock:
            self._broker = bool(reachable)
        if self._metrics is not None:
            self._metrics.broker_up.set(1 if reachable else 0)

    def set_model_ready(self, ready: bool) -> None:
        """Record whether a model exists and scores (False during warm-up)."""
        with self._lock:
            self._model_ready = bool(ready)
        if self._metrics is not None:
            self._metrics.model_ready.set(1 if ready else 0)

    def set_assignment(self, n_partitions: int) -> None:
        """Record how many partitions this replica is assigned (0: ready and idle)."""
        with self._lock:
            self._assigned = int(n_partitions)
        if self._metrics is not None:
            self._metrics.assigned_partitions.set(n_partitions)

    def snapshot(self) -> dict[str, Any]:
        """Return the state the probe bodies report, as plain JSON values."""
        with self._lock:
            since = max(0.0, self._clock() - self._last_iteration)
            broker = {None: "unknown", True: "up", False: "down"}[self._broker]
            return {
                "broker": broker,
                "model": "ready" if self._model_ready else "warming_up",
                "seconds_since_iteration": round(since, 3),
                "iterated": self._iterated,
                "stall_timeout_s": self.stall_timeout_s,
                "assigned_partitions": self._assigned,
            }

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Return ``(ok, body)``: ok unless the loop stalled longer than the timeout."""
        body = self.snapshot()
        ok = body["seconds_since_iteration"] <= self.stall_timeout_s
        body["status"] = "ok" if ok else "stalled"
        return ok, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Return ``(ok, body)``: ok when the broker is up and the model ready.

        A replica assigned no partitions needs no model to be ready: it has
        nothing to score, and warming up would wait for events it never gets.
        """
        body = self.snapshot()
        idle = body["assigned_partitions"] == 0
        ok = body["broker"] == "up" and (body["model"] == "ready" or idle)
        body["status"] = "ready" if ok else "not_ready"
        return ok, body


def _json_response(
    start_response: Callable, ok: bool, body: dict[str, Any], method: str
) -> list[bytes]:
    data = (json.dumps(body, sort_keys=True) + "\n").encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    start_response(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
    ])
    return [b""] if method == "HEAD" else [data]


def _plain_response(
    start_response: Callable, status: str, text: str, extra: Iterable = ()
) -> list[bytes]:
    data = text.encode()
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(data))),
        *extra,
    ])
    return [data]


def make_app(registry: CollectorRegistry, health: HealthState) -> WSGIApp:
    """Build the WSGI app serving ``/metrics``, ``/healthz`` and ``/readyz``.

    ``/healthz`` and ``/readyz`` answer 200 or 503 with a small JSON body
    (broker, model, seconds since the last iteration, assigned partitions);
    any other path answers 404.
    """
    metrics_app = make_wsgi_app(registry)
    probes = {"/healthz": health.liveness, "/readyz": health.readiness}

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path == "/metrics":
            return metrics_app(environ, start_response)
        probe = probes.get(path)
        if probe is None:
            return _plain_response(start_response, "404 Not Found", f"no such path: {path}\n")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain_response(
                start_response, "405 Method Not Allowed", f"{method}: use GET or HEAD\n",
                [("Allow", "GET, HEAD")])
        ok, body = probe()
        return _json_response(start_response, ok, body, method)

    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never blocks a probe."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every probe and scrape to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: probes arrive every few seconds."""


class HttpServer:
    """Handle of a running :func:`serve`: the bound address and a way to stop it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and wait for the thread to end."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout_s)


def serve(app: WSGIApp, host: str = "0.0.0.0", port: int = 9108) -> HttpServer:
    """Serve ``app`` on ``host:port`` from a daemon thread; port 0 picks a free port.

    Raises
    ------
    OSError
        When the address cannot be bound; the message names host and port.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_ThreadingWSGIServer):
        address_family = family

    try:
        httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise OSError(exc.errno, f"http server: cannot listen on {host}:{port}: {exc}") from exc
    # A short poll interval keeps shutdown() quick (the default waits up to 0.5 s).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="streamgmm-http",
        daemon=True)
    thread.start()
    return HttpServer(httpd, thread)
