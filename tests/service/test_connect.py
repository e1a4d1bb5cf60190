"""Connecting at start-up: a stop always wins over the attempt it interrupted."""

from __future__ import annotations

import threading

from streamgmm.service.connect import STOPPED, unless_stopped
from streamgmm.service.health import HealthState
from streamgmm.stream.kafka_process import StartAborted


def attempt(build, stop: threading.Event):
    return unless_stopped(build, stop, HealthState(60))


def test_an_attempt_that_gives_up_because_of_the_stop_counts_as_stopped():
    # The consumer process is killed at a stop and its start raises
    # StartAborted, often before the waiting thread has looked at the stop:
    # that must end the start quietly (exit 0), not as a failed start.
    stop = threading.Event()

    def build():
        stop.set()
        raise StartAborted("stopped while the Kafka consumer process was connecting")

    assert attempt(build, stop) is STOPPED


def test_an_error_without_a_stop_is_raised():
    stop = threading.Event()

    def build():
        raise ConnectionRefusedError("no broker")

    try:
        attempt(build, stop)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("the error was swallowed")


def test_a_value_built_is_returned():
    assert attempt(lambda: 42, threading.Event()) == 42
