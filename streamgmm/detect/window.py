"""The feature window: the last W events' feature vectors, for refits and re-scoring."""

from __future__ import annotations

import numpy as np


class FeatureWindow:
    """Ring buffer of the last ``size`` events: features, sequence numbers, the
    prequential log-density each had under the model that scored it before learning it,
    and whether it was learned (False: kept out of learning as a suspected anomaly)."""

    def __init__(self, size: int, n_features: int):
        self.size = int(size)
        self.X = np.empty((self.size, n_features))
        self.seq = np.empty(self.size, dtype=np.int64)
        self.preq = np.empty(self.size)
        self.learned = np.ones(self.size, dtype=bool)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, X: np.ndarray, seq: np.ndarray, preq: np.ndarray,
             learned: np.ndarray | None = None) -> None:
        X, seq, preq = X[-self.size:], seq[-self.size:], preq[-self.size:]
        n = X.shape[0]
        idx = (self._next + np.arange(n)) % self.size
        self.X[idx] = X
        self.seq[idx] = seq
        self.preq[idx] = preq
        self.learned[idx] = True if learned is None else learned[-self.size:]
        self._next = (self._next + n) % self.size
        self._count = min(self._count + n, self.size)

    def ordered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, seq, preq) oldest first."""
        if self._count < self.size:
            c = self._count
            return self.X[:c].copy(), self.seq[:c].copy(), self.preq[:c].copy()
        order = np.r_[self._next:self.size, 0:self._next]
        return self.X[order], self.seq[order], self.preq[order]

    def unlearned(self) -> int:
        """Events in the window that were kept out of learning."""
        return self._count - int(np.count_nonzero(self.learned[:self._count]))

    def count_since(self, seq0: int) -> tuple[int, int]:
        """Events in the window from sequence number ``seq0`` on, and how many of
        them were kept out of learning."""
        since = self.seq[:self._count] >= seq0
        held = since & ~self.learned[:self._count]
        return int(np.count_nonzero(since)), int(np.count_nonzero(held))

    def learned_ordered(self) -> np.ndarray:
        """The learned flags, oldest first (in step with ``ordered``)."""
        if self._count < self.size:
            return self.learned[:self._count].copy()
        return np.concatenate([self.learned[self._next:], self.learned[:self._next]])

    def mark_learned(self, which: np.ndarray | None = None) -> None:
        """Take the window's events as normal (after a change of regime): all, or
        those where ``which`` (oldest first, in step with ``ordered``) is True."""
        if which is None:
            self.learned[:] = True
            return
        idx = np.arange(self._count) if self._count < self.size else \
            np.r_[self._next:self.size, 0:self._next]
        self.learned[idx[which]] = True

    def replace(self, X: np.ndarray, seq: np.ndarray, preq: np.ndarray,
                learned: np.ndarray | None = None) -> None:
        self._next = 0
        self._count = 0
        if X.shape[0]:
            self.push(X, seq, preq, learned)
