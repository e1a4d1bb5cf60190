"""Explanations worked out on demand: for some rows, or all, from the model that scored."""

from __future__ import annotations

import numpy as np

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.detect.explain import mahalanobis_shares, top_features


def test_explaining_some_rows_equals_explaining_all_and_uses_the_scoring_model():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1200, 4)) * [1.0, 2.0, 0.5, 3.0]
    det = AnomalyDetector(n_components=2, window=600, warmup=200, refit_enabled=False,
                          random_state=0)
    det.process(X[:600])
    m = det.model
    means, prec_chol = m.means_.copy(), m.precisions_cholesky_.copy()
    d = det.process(X[600:900])  # learns the batch after scoring it: the model moves
    assert not np.allclose(det.model.means_, means)
    rows = np.flatnonzero(d.is_anomaly)
    assert rows.size > 0
    idx, shares = d.explanation(rows)
    # Expected from the model as it was when it scored, on the detector's own scaling.
    Xs = det._scaled(X[600:900])
    expected = top_features(mahalanobis_shares(Xs, d.component, means, prec_chol,
                                               m.covariance_type), det.n_top)
    np.testing.assert_array_equal(idx, expected[0][rows])
    np.testing.assert_allclose(shares, expected[1][rows], rtol=1e-12)
    np.testing.assert_array_equal(d.top_features[rows], idx)  # all rows, then the same ones
    np.testing.assert_allclose(d.top_shares[rows], shares)
    np.testing.assert_array_equal(d.explanation(rows)[0], idx)
    det.close()
