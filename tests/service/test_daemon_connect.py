"""Connecting at start-up: a stop always wins over the attempt it interrupted."""

from __future__ import annotations

import threading

from streamgmm.service import daemon as daemon_module
from streamgmm.service.config import from_dict
from streamgmm.service.schema import Config
from streamgmm.stream.kafka_process import StartAborted


def make_daemon(stop: threading.Event) -> daemon_module._Daemon:
    config = from_dict(Config, {"source": {"type": "stdin"},
                                "features": {"fields": [{"name": "a"}]},
                                "metrics": {"enabled": False}})
    return daemon_module._Daemon(config, "json", stop)


def test_an_attempt_that_gives_up_because_of_the_stop_counts_as_stopped():
    # The consumer process is killed at a stop and its start raises
    # StartAborted, often before the waiting thread has looked at the stop:
    # that must end the start quietly (exit 0), not as a failed start.
    stop = threading.Event()

    def build():
        stop.set()
        raise StartAborted("stopped while the Kafka consumer process was connecting")

    assert make_daemon(stop)._unless_stopped(build) is daemon_module._STOPPED


def test_an_error_without_a_stop_is_raised():
    stop = threading.Event()

    def build():
        raise ConnectionRefusedError("no broker")

    try:
        make_daemon(stop)._unless_stopped(build)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the error was swallowed")


def test_a_value_built_is_returned():
    assert make_daemon(threading.Event())._unless_stopped(lambda: 42) == 42
