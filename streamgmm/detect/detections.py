"""Detections: the per-event results of one ``AnomalyDetector.process`` call."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamgmm.detect.explain import mahalanobis_shares, top_features


class Detections:
    """Per-event results of one ``process`` call (arrays of length n).

    ``top_features`` and ``top_shares`` (the explanation of every event) are
    worked out on first use, from the model as it scored the batch: a caller
    that explains only its alerts asks :meth:`explanation` for those rows and
    pays for nothing else.
    """

    def __init__(
        self, score: np.ndarray, is_anomaly: np.ndarray, threshold: np.ndarray,
        percentile: np.ndarray, component: np.ndarray,
        explain: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        model_version: int, ready: bool,
    ) -> None:
        self.score = score
        self.is_anomaly = is_anomaly
        self.threshold = threshold
        self.percentile = percentile
        self.component = component
        self.model_version = model_version
        self.ready = ready
        self._explain = explain
        self._all: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.score.shape[0]

    def explanation(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top feature indices and their shares of D^2, (len(rows), t) each, for ``rows``."""
        rows = np.asarray(rows, dtype=np.intp)
        if self._all is not None:
            return self._all[0][rows], self._all[1][rows]
        return self._explain(rows)

    @property
    def top_features(self) -> np.ndarray:
        """Indices (n, t) of each event's features with the largest shares of D^2."""
        return self._explained()[0]

    @property
    def top_shares(self) -> np.ndarray:
        """Those features' shares (n, t); they sum to one over all features."""
        return self._explained()[1]

    def _explained(self) -> tuple[np.ndarray, np.ndarray]:
        if self._all is None:
            self._all = self._explain(np.arange(len(self)))
        return self._all

    def named(self, i: int, names: list[str] | None) -> list[tuple[str, float]]:
        """[(feature name, share of D^2)] for event ``i`` (``x<j>`` where unnamed)."""
        out = []
        for j, share in zip(self.top_features[i], self.top_shares[i], strict=True):
            if j < 0:
                continue
            name = names[j] if names and j < len(names) else f"x{j}"
            out.append((name, float(share)))
        return out

    @classmethod
    def unscored(cls, n: int, n_features: int, n_top: int, model_version: int,
                 ready: bool) -> Detections:
        """Results for ``n`` events no model scored (the warm-up): NaN scores, no flags."""
        t = min(n_top, n_features)
        nan = np.full(n, np.nan)

        def nothing(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.full((rows.size, t), -1), np.full((rows.size, t), np.nan)

        return cls(nan, np.zeros(n, bool), nan.copy(), nan.copy(), np.full(n, -1), nothing,
                   model_version, ready)


def explainer(X: np.ndarray, component: np.ndarray, model, n_top: int
              ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Explanations of rows of the scaled events ``X`` (n, d) on demand, against
    ``model`` as it is now (learning moves it before they are asked for)."""
    means, prec_chol = model.means_.copy(), model.precisions_cholesky_.copy()
    kind = model.covariance_type

    def explain(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shares = mahalanobis_shares(X[rows], component[rows], means, prec_chol, kind)
        return top_features(shares, n_top)

    return explain
