"""Background refits on the outlier-cleaned window: a champion/challenger swap.

A refit fits batch EM on the older part of the cleaned window (warm-started
from the current model, plus fresh restarts; held-out events that recur as a
mode-like group taken back, see groups.py) on a worker thread, then compares
the candidate's log-density on the most recent cleaned events with the
prequential log-density the current model gave them before learning them, so
neither side is judged on events it was fitted on. The detector swaps models
only when the candidate wins.

The worker is a thread or a process of its own (``refit_worker.py``). A
thread shares the interpreter with the stream: the refit's Python-level work
holds the GIL between numpy calls, and on this machine doubled the time of
``process`` on a batch of 500 while a refit ran (``bench/bench_refit_stall.py``).
A process costs the stream nothing but the hand-over of the window. It is
started as ``python -m streamgmm.detect.refit_worker`` over a socket pair, so
it never imports the caller's main module and nothing crossing is pickled.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from streamgmm.detect.groups import GroupRule, recurring_groups, select_by_bic
from streamgmm.detect.params import REFIT_WORKERS
from streamgmm.detect.refit_worker import PendingJob, WorkerDied, WorkerProcess
from streamgmm.model.base import ConvergenceWarning
from streamgmm.model.em import MixtureParams
from streamgmm.model.gmm import GaussianMixture

log = logging.getLogger(__name__)


@dataclass
class RefitResult:
    """Outcome of one refit: ``outcome`` is 'accepted', 'rejected' or 'failed'."""

    outcome: str
    seconds: float
    snapshot_seq: int
    model: GaussianMixture | None = None
    candidate_score: float = float("nan")
    current_score: float = float("nan")
    error: str = ""
    # Sequence numbers of held-out events taken back into the sample as a
    # recurring mode (groups.py).
    taken_back: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def fit_candidate(
    X_train: np.ndarray, current: MixtureParams, n_init: int, reg_covar, seed: int,
    k_range: tuple[int, int], support_events: int | None = None,
) -> GaussianMixture:
    """The best by BIC of a warm start from ``current`` and ``n_init`` fresh fits
    for each number of components in ``k_range`` (low, high), among those whose
    components are supported by ``support_events`` (the refit's whole sample,
    held-out part included; default: the training events)."""
    low, high = k_range
    k_now = current.means.shape[0]
    candidates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if low <= k_now <= high:
            from streamgmm.model.covariance import precisions_from_cholesky

            warm = GaussianMixture(
                k_now, covariance_type=current.covariance_type, reg_covar=reg_covar,
                weights_init=current.weights, means_init=current.means,
                precisions_init=precisions_from_cholesky(current.precisions_cholesky,
                                                         current.covariance_type),
            )
            try:
                candidates.append(warm.fit(X_train))
            except ValueError as exc:
                log.debug("warm-started refit failed: %s", exc)
        for k in range(low, high + 1):
            if n_init > 0 and X_train.shape[0] > k:
                candidates.append(GaussianMixture(
                    k, covariance_type=current.covariance_type, reg_covar=reg_covar,
                    n_init=n_init, random_state=seed,
                ).fit(X_train))
    if not candidates:
        raise ValueError("no refit candidate could be fitted")
    # A number of components the user fixed is kept; 'auto' prunes to support.
    return select_by_bic(candidates, X_train, support_events,
                         reg_covar if low < high else None)


@dataclass(frozen=True)
class RefitSettings:
    """What a refit needs besides the window, in a form a worker process can receive."""

    n_init: int
    reg_covar: object
    holdout_fraction: float
    k_range: tuple[int, int]
    min_gain: float


def _sample(X: np.ndarray, preq: np.ndarray, keep: np.ndarray | None,
            rule: GroupRule | None, covariance_type: str, reg_covar, seed: int):
    """The refit sample: the cleaned events and the recurring groups taken
    back, and the window positions of those taken back."""
    none = np.empty(0, dtype=np.int64)
    if keep is None:
        return X, preq, none
    use = keep.copy()
    held = np.flatnonzero(~keep)
    back = none
    if rule is not None and held.size:
        tenth = (np.arange(X.shape[0]) * 10) // X.shape[0]
        back = held[recurring_groups(X[held], tenth[held], rule, covariance_type,
                                     reg_covar, seed)]
        use[back] = True
    return X[use], preq[use], back


def run_refit(settings: RefitSettings, X: np.ndarray, preq: np.ndarray, current: MixtureParams,
              seq: int, seed: int, keep: np.ndarray | None = None,
              rule: GroupRule | None = None) -> RefitResult:
    """One refit, start to verdict (runs on the worker; never raises)."""
    start = time.perf_counter()
    try:
        n_window = X.shape[0]
        X, preq, back = _sample(X, preq, keep, rule, current.covariance_type,
                                settings.reg_covar, seed)
        n_hold = max(1, int(X.shape[0] * settings.holdout_fraction))
        train, hold = X[:-n_hold], X[-n_hold:]
        model = fit_candidate(train, current, settings.n_init, settings.reg_covar, seed,
                              settings.k_range, support_events=X.shape[0])
        # The held-out events are cleaned of flagged ones (but for a recurring
        # group taken back): a plain mean, so that a candidate losing a small
        # legitimate mode pays for it.
        cand = float(model.score_samples(hold).mean())
        hold_preq = preq[-n_hold:]
        if np.all(np.isfinite(hold_preq)):
            cur = float(hold_preq.mean())
        else:  # restored from a state without prequential scores
            cur = float(current.e_step(hold)[0].mean())
        outcome = "accepted" if cand > cur + settings.min_gain else "rejected"
        # The window's events are consecutive, the newest numbered ``seq``.
        return RefitResult(outcome, time.perf_counter() - start, seq, model, cand, cur,
                           taken_back=seq - (n_window - 1 - back))
    except Exception as exc:  # a failed refit must never stop the stream
        log.warning("refit failed: %s", exc, exc_info=True)
        return RefitResult("failed", time.perf_counter() - start, seq, error=str(exc))


def _worker_ready() -> bool:
    """A no-op a new worker thread runs (a process answers a ping)."""
    return True


class ThreadRunner:
    """Runs each refit on a daemon thread of its own. A refit abandoned at
    shutdown then never holds the interpreter at exit, as the worker of a
    ThreadPoolExecutor would (it is joined at exit, for seconds on a big window)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="streamgmm-refit", daemon=True).start()
        return future


class Refitter:
    """Runs one refit at a time on a worker (thread or process); ``poll`` hands
    back finished results."""

    # How far a refit may move the number of components from the current one.
    K_STEP = 2
    # Worker processes that may die in a row before refits move to a thread.
    MAX_BROKEN = 3

    def __init__(self, n_init: int = 2, reg_covar: float = 1e-6, holdout_fraction: float = 0.2,
                 k_range: tuple[int, int] = (1, 8), random_state: int | None = None,
                 min_gain: float = 0.0, worker: str = "process"):
        if worker not in REFIT_WORKERS:
            raise ValueError(f"refit_worker: expected one of {', '.join(REFIT_WORKERS)}, "
                             f"got {worker!r}")
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.holdout_fraction = holdout_fraction
        self.k_range = k_range
        self.min_gain = min_gain
        self.worker = worker
        self._seed = 0 if random_state is None else int(random_state)
        self._executor: ThreadRunner | WorkerProcess | None = None
        self._future: Future | PendingJob | None = None
        self._submitted_seq = -1
        self._submitted_at = 0.0
        self._broken = 0

    def local_range(self, k_now: int) -> tuple[int, int]:
        """The numbers of components a refit tries: within two of the current one.

        The right number changes slowly; trying the whole range at every refit
        would cost the stream's other core several times the work for nothing.
        """
        low, high = self.k_range
        return max(low, k_now - self.K_STEP), min(high, k_now + self.K_STEP)

    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def _start_executor(self) -> ThreadRunner | WorkerProcess:
        if self._executor is None:
            if self.worker == "process":
                # One long-lived worker: the interpreter and numpy start once.
                self._executor = WorkerProcess()
            else:
                self._executor = ThreadRunner()
        return self._executor

    @property
    def worker_pid(self) -> int | None:
        """The process id of the worker process, None when there is none (yet)."""
        return self._executor.pid if isinstance(self._executor, WorkerProcess) else None

    def start(self, timeout: float | None = 60.0) -> None:
        """Start the worker now rather than at the first refit (a worker
        process imports numpy and streamgmm, a fraction of a second), so that a
        worker that cannot start shows at once. A worker that does not answer
        within ``timeout`` seconds, or dies, is dealt with as one that dies
        during a refit (replaced at the next refit; a thread after three)."""
        if self._future is not None:  # a refit is in flight: the worker runs
            return
        try:
            self._submit(None).result(timeout)
        except FutureTimeout:
            self._died(WorkerDied(f"the refit worker did not answer within {timeout} s"))
        except Exception as exc:
            self._died(exc)

    def _send(self, job: tuple | None) -> Future | PendingJob:
        """Hand ``job`` (a refit's arguments; None: a ping) to the worker."""
        executor = self._start_executor()
        if isinstance(executor, WorkerProcess):
            return executor.submit(job)
        return executor.submit(_worker_ready) if job is None else executor.submit(run_refit,
                                                                                   *job)

    def _submit(self, job: tuple | None) -> Future | PendingJob:
        """Hand ``job`` to the worker, replacing a worker process that died
        while idle, or moving to a thread when no process can be started."""
        for _ in range(self.MAX_BROKEN):
            try:
                return self._send(job)
            except WorkerDied as exc:  # its worker died while idle
                self._died(exc)
            except Exception as exc:
                if self.worker != "process":
                    raise
                # No process can be started here (a process limit, no
                # interpreter to run): refits move to a thread rather than stop.
                log.error("refit worker process could not start (%r); refits run on a "
                          "thread from now on", exc)
                self._discard_executor()
                self.worker = "thread"
        return self._send(job)

    def _died(self, exc: BaseException) -> None:
        """A worker process died (killed, out of memory): the next job gets a new
        one, and after ``MAX_BROKEN`` deaths in a row, a thread."""
        self._discard_executor()
        self._broken += 1
        if self.worker == "process" and self._broken >= self.MAX_BROKEN:
            log.error("refit worker process died %d times in a row (last: %s); refits run "
                      "on a thread from now on", self._broken, exc)
            self.worker = "thread"
        else:
            log.warning("refit worker died: %s; the next refit starts a new one", exc)

    def submit(self, X: np.ndarray, preq: np.ndarray, current: MixtureParams,
               snapshot_seq: int, keep: np.ndarray | None = None,
               rule: GroupRule | None = None) -> bool:
        """Start a refit on the window ``X`` (oldest first); False when one is already running.

        ``keep`` marks the cleaned events (all when None); of the others, those
        in a recurring mode-like group (``groups.recurring_groups`` under
        ``rule``) are taken back into the sample. ``preq`` holds each event's
        prequential log-density: its score under the model in use before that
        model learned it. The candidate is judged against those on the newest
        events of the sample, which neither model was fitted on when it scored
        them; scoring them with the current model now would be unfair, since it
        has since learned them.
        """
        if self._future is not None:
            return False
        self._seed += 1
        settings = RefitSettings(self.n_init, self.reg_covar, self.holdout_fraction,
                                 self.local_range(current.means.shape[0]), self.min_gain)
        self._submitted_seq, self._submitted_at = snapshot_seq, time.perf_counter()
        job = (settings, X, preq, current.copy(), snapshot_seq, self._seed, keep, rule)
        self._future = self._submit(job)
        return True

    def _result(self, timeout: float | None = None) -> RefitResult:
        try:
            result = self._future.result(timeout)
        except FutureTimeout:
            raise
        except Exception as exc:  # the worker died mid-refit: the refit failed
            self._died(exc)
            return RefitResult("failed", time.perf_counter() - self._submitted_at,
                               self._submitted_seq, error=repr(exc))
        self._broken = 0
        return result

    def poll(self, wait: bool = False, timeout: float | None = None) -> RefitResult | None:
        """The finished refit's result (once), or None while none is ready.

        ``wait`` blocks until the running refit finishes (at most ``timeout``
        seconds, then TimeoutError)."""
        if self._future is None or (not wait and not self._future.done()):
            return None
        result = self._result(timeout if wait else None)
        self._future = None
        return result

    def _discard_executor(self, kill: bool = False) -> None:
        if isinstance(self._executor, WorkerProcess):
            self._executor.close(kill=kill)
        self._executor = None  # a thread's refit in flight is abandoned

    def close(self) -> None:
        """Stop the worker; a refit in flight is abandoned. A worker process
        busy with one is killed: waiting for the refit to finish (seconds on a
        big window) could outlast a container's grace period."""
        self._discard_executor(kill=self.busy)
        self._future = None
