"""Step sizes of stepwise EM, and the drift monitor that restarts them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepSchedule:
    """Per-event step schedule with a forgetting floor.

    ``eta(t) = (t / step_unit + t0) ** -alpha`` is the step for ``step_unit``
    events after t events; a batch of n events takes
    ``1 - (1 - eta) ** (n / step_unit)``, never less than a batch would take at
    the floor of ``1 / forget_horizon`` per event.
    """

    alpha: float
    t0: float
    step_unit: int
    forget_horizon: float

    def __post_init__(self) -> None:
        if not 0.5 < self.alpha <= 1.0:
            raise ValueError(f"alpha: expected a number in (0.5, 1], got {self.alpha!r}")
        if self.t0 < 1.0:
            raise ValueError(f"t0: expected a number >= 1, got {self.t0!r}")
        if self.step_unit < 1:
            raise ValueError(f"step_unit: expected an integer >= 1, got {self.step_unit!r}")
        if self.forget_horizon is not None and self.forget_horizon < 1:
            raise ValueError(
                f"forget_horizon: expected a number of events >= 1 or None, "
                f"got {self.forget_horizon!r}"
            )

    def step(self, t: float, n: float) -> float:
        """Step for a batch of ``n`` events (weights summed) after ``t`` events."""
        eta_unit = (t / self.step_unit + self.t0) ** -self.alpha
        log_keep = np.log1p(-min(eta_unit, 1.0 - 1e-12)) * (n / self.step_unit)
        if self.forget_horizon is not None:
            log_keep = min(log_keep, n * np.log1p(-1.0 / self.forget_horizon))
        return float(-np.expm1(log_keep))


class DriftMonitor:
    """Page-Hinkley test for a fall of the stream's mean log-likelihood.

    Events are pooled into blocks of at least ``BLOCK_EVENTS`` (weights summed),
    whatever the poll size, so the false-alarm rate per event does not grow as
    polls shrink. Each block's weighted mean log-likelihood is compared with a
    slow running reference, in units of the block mean's standard error; the
    test alarms when the accumulated shortfall (less an allowance of half a
    standard error per block) exceeds ``threshold``. Each event's
    log-likelihood is first clipped at ``CLIP`` reference standard deviations
    below the reference mean, so a few outliers cannot raise an alarm while a
    block that fits badly throughout still does at once.
    """

    ALLOWANCE = 0.5
    CLIP = 4.0
    BLOCK_EVENTS = 500.0
    REFERENCE_EVENTS = 2000.0

    def __init__(self, threshold: float | None):
        self.threshold = threshold
        self.mean = np.nan
        self.var = np.nan
        self.cusum = 0.0
        # The open block: weight, and weighted sums of (x - mean) and its square.
        self.block = np.zeros(3)

    def update(self, log_lik: np.ndarray, weights: np.ndarray | None = None) -> bool:
        """Feed one batch's per-event log-likelihoods; True when drift is detected."""
        if self.threshold is None or log_lik.size == 0:
            return False
        w = np.ones_like(log_lik) if weights is None else weights
        ref = self.mean if np.isfinite(self.mean) else 0.0
        dev = log_lik - ref
        if np.isfinite(self.mean):
            dev = np.maximum(dev, -self.CLIP * np.sqrt(self.var))
        wd = w * dev
        self.block += (float(w.sum()), float(wd.sum()), float(wd @ dev))
        total = self.block[0]
        if total < self.BLOCK_EVENTS:
            return False
        shift = self.block[1] / total
        m = ref + shift
        v = max(self.block[2] / total - shift**2, 1e-12)
        self.block[:] = 0.0
        return self._test(m, v, total)

    def _test(self, m: float, v: float, total: float) -> bool:
        """Page-Hinkley step for one closed block of mean ``m`` and variance ``v``."""
        if not np.isfinite(self.mean):
            self.mean, self.var = m, v
            return False
        se = np.sqrt(max(self.var, 1e-12) / total)
        self.cusum = max(0.0, self.cusum + (self.mean - m) / se - self.ALLOWANCE)
        if self.cusum > self.threshold:
            self.mean, self.var, self.cusum = m, v, 0.0
            return True
        rate = min(1.0, total / self.REFERENCE_EVENTS)
        self.mean += rate * (m - self.mean)
        self.var += rate * (v - self.var)
        return False

    def to_array(self) -> np.ndarray:
        return np.concatenate([[self.mean, self.var, self.cusum], self.block])

    @classmethod
    def from_array(cls, threshold: float | None, arr: np.ndarray) -> DriftMonitor:
        mon = cls(threshold)
        arr = np.asarray(arr, dtype=np.float64)
        mon.mean, mon.var, mon.cusum = (float(x) for x in arr[:3])
        if arr.size >= 6:
            mon.block = arr[3:6].copy()
        return mon
