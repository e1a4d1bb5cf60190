"""Fixtures shared by the whole suite: real broker, topics, Prometheus, data sets.

Model- or module-specific fixtures belong in the conftest.py of their own
test folder.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamgmm.testing import TansuBroker, prometheus_path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real data sets (ADBench .npz files) laid beside the repository, not in it.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "adbench"

_topic_numbers = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    """One Tansu broker (memory storage, loopback) for the whole session.

    Tests that pause it or need a clean slate start their own TansuBroker.
    """
    try:
        tansu = TansuBroker()
    except FileNotFoundError as exc:
        pytest.skip(f"no Kafka broker for integration tests: {exc}")
    tansu.start()
    yield tansu
    tansu.stop()


@pytest.fixture
def topic_factory(broker: TansuBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create uniquely named topics on the session broker: ``topic_factory(partitions=4)``."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]

    def make(partitions: int = 1, prefix: str | None = None) -> str:
        name = f"{prefix or base}-{os.getpid()}-{next(_topic_numbers)}"
        broker.create_topic(name, partitions=partitions)
        return name

    return make


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of Debian's prometheus binary; skips the test when it is absent."""
    path = prometheus_path()
    if path is None:
        pytest.skip(
            "prometheus binary not found: apt-get install prometheus "
            "(scripts/test installs it when run as root)"
        )
    return path


def shared_data_dir() -> Path:
    """The ADBench data directory beside the repository; skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"ADBench data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ADBench data directory (``<repo>/../shared/data/adbench``); skips when absent."""
    return shared_data_dir()
