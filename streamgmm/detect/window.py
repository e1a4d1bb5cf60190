"""The feature window: the last W events' feature vectors, for refits and re-scoring."""

from __future__ import annotations

import numpy as np


class FeatureWindow:
    """Ring buffer of the last ``size`` events: features, sequence numbers and the
    prequential log-density each had under the model that scored it before learning it."""

    def __init__(self, size: int, n_features: int):
        self.size = int(size)
        self.X = np.empty((self.size, n_features))
        self.seq = np.empty(self.size, dtype=np.int64)
        self.preq = np.empty(self.size)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, X: np.ndarray, seq: np.ndarray, preq: np.ndarray) -> None:
        X, seq, preq = X[-self.size:], seq[-self.size:], preq[-self.size:]
        n = X.shape[0]
        idx = (self._next + np.arange(n)) % self.size
        self.X[idx] = X
        self.seq[idx] = seq
        self.preq[idx] = preq
        self._next = (self._next + n) % self.size
        self._count = min(self._count + n, self.size)

    def ordered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, seq, preq) oldest first."""
        if self._count < self.size:
            c = self._count
            return self.X[:c].copy(), self.seq[:c].copy(), self.preq[:c].copy()
        order = np.r_[self._next:self.size, 0:self._next]
        return self.X[order], self.seq[order], self.preq[order]

    def replace(self, X: np.ndarray, seq: np.ndarray, preq: np.ndarray) -> None:
        self._next = 0
        self._count = 0
        if X.shape[0]:
            self.push(X, seq, preq)
