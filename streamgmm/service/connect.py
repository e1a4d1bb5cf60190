"""Connecting to Kafka at start-up: retried while no broker answers, given up at a stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from streamgmm.service.health import HealthState

log = logging.getLogger("streamgmm.daemon")

__all__ = ["STOPPED", "connect", "unless_stopped"]

#: What :func:`unless_stopped` gives when the daemon was told to stop first.
STOPPED = object()
#: The longest wait between two attempts.
RETRY_MAX_S = 30.0


def connect(what: str, build: Callable[[], Any], stop: threading.Event,
            health: HealthState) -> Any:
    """``build()``, retried with backoff while no broker answers; None if stopped first."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    delay = 1.0
    while not stop.is_set():
        try:
            built = unless_stopped(build, stop, health)
            return None if built is STOPPED else built
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            # A broker that refuses the connection's security settings (a
            # SASL mechanism, TLS) looks the same from here: the client's
            # own error lines above say which.
            log.warning("%s: no broker answered (%s); retrying in %.0fs (check "
                        "bootstrap_servers and the security settings: the Kafka client "
                        "logs the cause)", what, type(exc).__name__, delay)
        # Waiting for the broker is not a stall: stay live, not ready.
        health.mark_iteration()
        health.set_broker_reachable(False)
        stop.wait(delay)
        delay = min(delay * 2, RETRY_MAX_S)
    return None


def unless_stopped(build: Callable[[], Any], stop: threading.Event,
                   health: HealthState) -> Any:
    """``build()`` on a daemon thread, given up (:data:`STOPPED`) when the daemon is
    told to stop first: a client waiting out its bootstrap timeout (30 s by
    default) must not hold a shutdown past ``shutdown.timeout_s``."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = build()
        except BaseException as exc:  # noqa: BLE001 - raised again below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="streamgmm-connect", daemon=True).start()
    while not done.wait(0.1):
        health.mark_iteration()  # waiting for a broker is not a stall
        if stop.is_set():
            break
    if stop.is_set() and "value" not in box:
        # Stopped first, or the attempt gave up because of the stop (the
        # consumer process is killed at a stop and says so) before this
        # thread looked: either way the stop, not the error, is the news.
        log.info("stopped while connecting to Kafka; the attempt is given up")
        return STOPPED
    if "error" in box:
        raise box["error"]
    return box["value"]
