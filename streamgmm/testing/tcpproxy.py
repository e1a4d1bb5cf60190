"""A loopback TCP proxy that can cut the network on demand.

Put it between Kafka clients and a broker to test outages that a paused
broker does not give: connections reset, new ones refused, then everything
back. A broker advertises its own address, so clients only stay behind the
proxy if the broker advertises the proxy's port: start the proxy first
(targeting the broker's future port), then
``TansuBroker(port=target_port, advertised_port=proxy.port)``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target_host:target_port``, both ways.

    Parameters
    ----------
    target_host, target_port : str, int
        Where connections go.
    port : int, optional
        Port to listen on; a free one by default.

    Examples
    --------
    >>> from streamgmm.testing.tansu import free_port
    >>> backend = free_port()
    >>> proxy = TcpProxy("127.0.0.1", backend)
    >>> proxy.port != backend
    True
    >>> proxy.close()
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._refuse_until = 0.0
        self._closed = threading.Event()
        self.connections_accepted = 0
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"tcpproxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the proxy."""
        return f"127.0.0.1:{self.port}"

    def drop(self, seconds: float) -> None:
        """Cut every open connection and turn new ones away for ``seconds``.

        New connections are accepted and closed at once (a client sees a
        reset, as when a broker is down), then forwarding resumes.
        """
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            doomed = list(self._sockets)
            self._sockets.clear()
        for s in doomed:
            _close(s)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        self._acceptor.join(timeout=2.0)
        _close(self._listener)
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        for s in doomed:
            _close(s)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                _close(client)
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=2.0)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        client.settimeout(None)
        with self._lock:
            self._sockets.update((client, upstream))
            self.connections_accepted += 1
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(src, dst), name=f"tcpproxy-{self.port}-pump", daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        # Copy until either side closes; then close both so the peer sees it.
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on this socket; close() alone
    # does not on Linux.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
