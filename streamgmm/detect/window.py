"""The feature window: the last W events' feature vectors, for refits and re-scoring."""

from __future__ import annotations

import numpy as np


class FeatureWindow:
    """Ring buffer of the last ``size`` events' features and sequence numbers."""

    def __init__(self, size: int, n_features: int):
        self.size = int(size)
        self.X = np.empty((self.size, n_features))
        self.seq = np.empty(self.size, dtype=np.int64)
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, X: np.ndarray, seq: np.ndarray) -> None:
        X, seq = X[-self.size:], seq[-self.size:]
        n = X.shape[0]
        idx = (self._next + np.arange(n)) % self.size
        self.X[idx] = X
        self.seq[idx] = seq
        self._next = (self._next + n) % self.size
        self._count = min(self._count + n, self.size)

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, seq) oldest first."""
        if self._count < self.size:
            return self.X[: self._count].copy(), self.seq[: self._count].copy()
        order = np.r_[self._next:self.size, 0:self._next]
        return self.X[order], self.seq[order]

    def replace(self, X: np.ndarray, seq: np.ndarray) -> None:
        self._next = 0
        self._count = 0
        if X.shape[0]:
            self.push(X, seq)
