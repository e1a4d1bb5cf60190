"""SIGTERM and SIGINT for the daemon: the first asks for a clean stop, a second stops now.

``install`` runs first thing in ``streamgmm run`` (before numpy and the rest are
imported), so a signal that arrives during start-up already finds the handler
and the daemon still exits 0 after its normal shutdown.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger("streamgmm.daemon")

# Set by the first SIGTERM or SIGINT; the daemon's loop watches it.
STOP = threading.Event()


def install(stop: threading.Event = STOP) -> threading.Event:
    """Route SIGTERM and SIGINT to ``stop`` (a second signal raises KeyboardInterrupt)."""

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: finishing the batch and shutting down",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
