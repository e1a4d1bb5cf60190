"""Background refits on the outlier-cleaned window: a champion/challenger swap.

A refit fits batch EM on the older part of the cleaned window (warm-started
from the current model, plus fresh restarts; held-out events that recur as a
mode-like group taken back, see groups.py) on a worker thread, then compares
the candidate's log-density on the most recent cleaned events with the
prequential log-density the current model gave them before learning them, so
neither side is judged on events it was fitted on. The detector swaps models
only when the candidate wins.
"""

from __future__ import annotations

import logging
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from streamgmm.detect.groups import GroupRule, recurring_groups, select_by_bic
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


class Refitter:
    """Runs one refit at a time on a worker thread; ``poll`` hands back finished results."""

    # How far a refit may move the number of components from the current one.
    K_STEP = 2

    def __init__(self, n_init: int = 2, reg_covar: float = 1e-6, holdout_fraction: float = 0.2,
                 k_range: tuple[int, int] = (1, 8), random_state: int | None = None,
                 min_gain: float = 0.0):
        self.n_init = n_init
        self.reg_covar = reg_covar
        self.holdout_fraction = holdout_fraction
        self.k_range = k_range
        self.min_gain = min_gain
        self._seed = 0 if random_state is None else int(random_state)
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future | None = None

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
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="streamgmm-refit")
        self._seed += 1
        self._future = self._executor.submit(
            self._run, X, preq, current.copy(), snapshot_seq, self._seed, keep, rule)
        return True

    def _sample(self, X: np.ndarray, preq: np.ndarray, keep: np.ndarray | None,
                rule: GroupRule | None, covariance_type: str, seed: int):
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
                                         self.reg_covar, seed)]
            use[back] = True
        return X[use], preq[use], back

    def _run(self, X: np.ndarray, preq: np.ndarray, current: MixtureParams, seq: int,
             seed: int, keep: np.ndarray | None = None,
             rule: GroupRule | None = None) -> RefitResult:
        start = time.perf_counter()
        try:
            n_window = X.shape[0]
            X, preq, back = self._sample(X, preq, keep, rule, current.covariance_type, seed)
            n_hold = max(1, int(X.shape[0] * self.holdout_fraction))
            train, hold = X[:-n_hold], X[-n_hold:]
            model = fit_candidate(train, current, self.n_init, self.reg_covar, seed,
                                  self.local_range(current.means.shape[0]),
                                  support_events=X.shape[0])
            # The held-out events are cleaned of flagged ones (but for a recurring
            # group taken back): a plain mean, so that a candidate losing a small
            # legitimate mode pays for it.
            cand = float(model.score_samples(hold).mean())
            hold_preq = preq[-n_hold:]
            if np.all(np.isfinite(hold_preq)):
                cur = float(hold_preq.mean())
            else:  # restored from a state without prequential scores
                cur = float(current.e_step(hold)[0].mean())
            outcome = "accepted" if cand > cur + self.min_gain else "rejected"
            # The window's events are consecutive, the newest numbered ``seq``.
            return RefitResult(outcome, time.perf_counter() - start, seq, model, cand, cur,
                               taken_back=seq - (n_window - 1 - back))
        except Exception as exc:  # a failed refit must never stop the stream
            log.warning("refit failed: %s", exc, exc_info=True)
            return RefitResult("failed", time.perf_counter() - start, seq, error=str(exc))

    def poll(self, wait: bool = False) -> RefitResult | None:
        """The finished refit's result (once), or None while none is ready."""
        if self._future is None or (not wait and not self._future.done()):
            return None
        result = self._future.result()
        self._future = None
        return result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._future = None
