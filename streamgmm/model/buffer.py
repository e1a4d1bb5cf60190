"""Events held until a batch EM runs on them (the first events, or those after a drift alarm)."""

from __future__ import annotations

import numpy as np

__all__ = ["EventBuffer"]


class EventBuffer:
    """Rows (and weights) held until a batch EM runs on them; bounded by its caller."""

    def __init__(self, n_features: int):
        self.n_features = n_features
        self.parts: list[tuple[np.ndarray, np.ndarray | None]] = []
        self.n_rows = 0
        self.mass = 0.0

    def add(self, X: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.parts.append((X.copy(), None if sample_weight is None else sample_weight.copy()))
        self.n_rows += X.shape[0]
        self.mass += float(X.shape[0] if sample_weight is None else sample_weight.sum())

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        X = np.vstack([x for x, _ in self.parts])
        if all(w is None for _, w in self.parts):
            return X, None
        return X, np.concatenate([np.ones(x.shape[0]) if w is None else w
                                  for x, w in self.parts])
