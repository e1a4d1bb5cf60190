"""When background refits run, and what came of them.

A refit is due every ``refit_every`` events or ``refit_seconds`` seconds (0:
never by that measure), and soon after the stream changed (the burst hold
let a regime in, ``gate.py``). The warm-up model is fitted on the fewest
events, so the first refit comes early: once as many events as the warm-up
have arrived. ``refit_max_duty`` bounds refits' share of the wall clock: a
refit of t seconds is followed by the next no sooner than t / max_duty after
it started (at high event rates ``refit_every`` would otherwise keep a core
busy refitting). The refit itself runs on the ``Refitter``'s worker
(``refit.py``); its outcomes are counted here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamgmm.detect.groups import GroupRule
from streamgmm.detect.refit import RefitResult, Refitter
from streamgmm.model.em import MixtureParams

log = logging.getLogger(__name__)

OUTCOMES = ("accepted", "rejected", "failed")


class RefitSchedule:
    """The clock and the record of background refits, and the worker that runs them.

    The detector's parameters (``refit_every``...) are passed at each call:
    they may be set after construction.

    Attributes
    ----------
    refitter : Refitter
    counts : dict
        Refits by outcome: 'accepted', 'rejected', 'failed'.
    last_events : int
        The event count when the last refit started (or the warm-up ended).
    last_seconds : float
        How long the last finished refit took; NaN before the first.
    soon : bool
        A refit is wanted at the next chance (the stream changed).
    on_refit : callable or None
        Called with (outcome, seconds) as each finished refit is taken (the
        daemon's metrics count them).
    """

    def __init__(self, refitter: Refitter) -> None:
        self.refitter = refitter
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.last_events = 0
        self.last_time = time.monotonic()
        self.last_seconds = float("nan")
        self.soon = False
        self.on_refit: Callable[[str, float], None] | None = None

    def due(self, n_events: int, every: int, seconds: float, max_duty: float | None,
            first: int | None = None) -> bool:
        """Whether a refit should start once ``n_events`` have arrived (never
        while one runs); ``first``: the warm-up's length, when no refit has
        been done since it."""
        if self.refitter.busy:
            return False
        gap = every
        if first is not None:
            gap = min(gap, first) if gap else first
        due_events = gap and n_events - self.last_events >= gap
        due_time = seconds and time.monotonic() - self.last_time >= seconds
        return bool(due_events or due_time or self.soon) and not self.resting(max_duty)

    def resting(self, max_duty: float | None) -> bool:
        """Whether the last refit's share of the wall clock bars the next one yet."""
        last = self.last_seconds
        if not max_duty or last != last:  # no bound, or no refit done yet
            return False
        return time.monotonic() - self.last_time < last / max_duty

    def submit(self, n_events: int, X: np.ndarray, preq: np.ndarray, current: MixtureParams,
               snapshot_seq: int, keep: np.ndarray, rule: GroupRule | None) -> None:
        """Start a refit of the window (``Refitter.submit``) at ``n_events``."""
        self.last_events = n_events
        self.last_time = time.monotonic()
        self.soon = False
        self.refitter.submit(X, preq, current, snapshot_seq, keep=keep, rule=rule)

    def poll(self, wait: bool = False, timeout: float | None = None) -> RefitResult | None:
        """The finished refit's result (once), counted and logged; None while none is ready."""
        result = self.refitter.poll(wait=wait, timeout=timeout)
        if result is not None:
            self.counts[result.outcome] += 1
            self.last_seconds = result.seconds
            log.info("refit %s in %.2fs (candidate %.4f vs current %.4f)%s%s", result.outcome,
                     result.seconds, result.candidate_score, result.current_score,
                     f"; {result.taken_back.size} held-out events taken back as a recurring "
                     f"mode" if result.taken_back.size else "",
                     f": {result.error}" if result.error else "")
            if self.on_refit is not None:
                self.on_refit(result.outcome, result.seconds)
        return result


class BackgroundRefits:
    """The detector's side of background refits, mixed into ``AnomalyDetector``.

    What it needs of the detector is declared here: the refit parameters, the
    event count, the schedule and its worker, the lock, and two methods of the
    detector's own: ``_refit_job()`` (the cleaned window to refit, or None
    when too few events are clean) and ``_take_refit(result)`` (swap in an
    accepted model).
    """

    refit_enabled: bool
    mode: str
    refit_every: int
    refit_seconds: float
    refit_max_duty: float | None
    warmup: int
    model_version: int
    n_events_: int
    _refits: RefitSchedule
    _refitter: Refitter
    _lock: Any

    def _refit_job(self) -> tuple | None:
        raise NotImplementedError

    def _take_refit(self, result: RefitResult | None) -> None:
        raise NotImplementedError

    @property
    def refit_counts(self) -> dict[str, int]:
        """Refits by outcome: 'accepted', 'rejected', 'failed'."""
        return self._refits.counts

    @property
    def last_refit_seconds(self) -> float:
        """How long the last finished refit took; NaN before the first."""
        return self._refits.last_seconds

    @last_refit_seconds.setter
    def last_refit_seconds(self, seconds: float) -> None:
        self._refits.last_seconds = seconds

    @property
    def on_refit(self) -> Callable[[str, float], None] | None:
        """Called with (outcome, seconds) as each refit is taken in (the daemon's metrics)."""
        return self._refits.on_refit

    @on_refit.setter
    def on_refit(self, listener: Callable[[str, float], None] | None) -> None:
        self._refits.on_refit = listener

    @property
    def refit_stats(self) -> dict:
        return {**self.refit_counts, "last_seconds": self.last_refit_seconds}

    def _maybe_refit(self) -> None:
        """Hand the cleaned window to a refit when one is due."""
        if not self.refit_enabled or self.mode != "anomaly":
            return
        first = self.model_version == 1 and sum(self.refit_counts.values()) == 0
        if not self._refits.due(self.n_events_, self.refit_every, self.refit_seconds,
                                self.refit_max_duty, self.warmup if first else None):
            return
        job = self._refit_job()
        if job is not None:
            self._refits.submit(self.n_events_, *job)

    def apply_finished_refit(self) -> bool:
        """Apply a background refit that has finished, if any, without waiting
        (``process`` does this at every batch; a caller whose stream has gone
        quiet calls it instead). True when a refit's result was taken in."""
        with self._lock:
            result = self._refits.poll()
            self._take_refit(result)
            return result is not None

    def start_refit_worker(self, timeout: float = 60.0) -> str | None:
        """Start the refit worker now rather than at the first refit, so that a
        worker process that cannot start shows (and refits move to a thread)
        before the stream does. Returns where refits run, 'process' or
        'thread'; None when this detector does not refit."""
        if not self.refit_enabled or self.mode != "anomaly":
            return None
        self._refitter.start(timeout)
        return self._refitter.worker

    @property
    def refit_worker_pid(self) -> int | None:
        """The refit worker process's id; None before it starts or on a thread."""
        return self._refitter.worker_pid

    def wait_for_refit(self, timeout: float | None = None) -> None:
        """Block until a running refit finishes and apply it (for tests and shutdown)."""
        with self._lock:
            self._take_refit(self._refits.poll(wait=True, timeout=timeout))

    def close(self) -> None:
        """Stop the refit worker (a refit in flight is abandoned)."""
        self._refitter.close()
