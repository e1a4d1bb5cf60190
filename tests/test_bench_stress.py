"""bench/eval_stress.py: its streams are what its docstring says, and it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
eval_stress = pytest.importorskip("eval_stress")

# The anomaly share each stream is built with.
SHARES = {"blobs": 0.01, "heavy-tails": 0.01, "masking": 0.005, "mass-points": 0.01,
          "rare-mode": 0.005, "over-budget": 0.07, "compact-10": 0.10, "compact-25": 0.25,
          "scattered-10": 0.10, "scattered-25": 0.25, "short-high-dim": 0.05,
          "abrupt-drift": 0.0125, "gradual-drift": 0.01}


@pytest.mark.parametrize("name", sorted(eval_stress.STREAMS))
def test_each_stream_is_labelled_finite_and_seeded(name):
    X, y = eval_stress.STREAMS[name](np.random.default_rng(0))
    assert X.ndim == 2 and X.shape[0] == y.shape[0] and np.isfinite(X).all()
    assert set(np.unique(y)) == {0, 1}
    assert abs(y.mean() - SHARES[name]) < 0.3 * SHARES[name]
    X2, y2 = eval_stress.STREAMS[name](np.random.default_rng(0))
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize(("name", "classes"), [("compact-25", 1), ("scattered-25", 5)])
def test_the_anomaly_classes_are_compact_or_scattered(name, classes):
    X, y = eval_stress.STREAMS[name](np.random.default_rng(0))
    bad = X[y == 1]
    # Group the anomalies by their nearest of the classes' centres: one compact
    # class is one tight group; the scattered ones are several, far apart.
    from sklearn.cluster import KMeans

    km = KMeans(classes, n_init=4, random_state=0).fit(bad)
    spread = np.sqrt(km.inertia_ / len(bad) / X.shape[1])
    assert spread < 0.5 * X[y == 0].std(axis=0).mean()
    if classes > 1:
        gaps = np.linalg.norm(km.cluster_centers_[:, None] - km.cluster_centers_[None], axis=2)
        assert gaps[np.triu_indices(classes, 1)].min() > 3 * spread


def test_the_script_prints_its_table_and_summary():
    out = subprocess.run(
        [sys.executable, str(BENCH / "eval_stress.py"), "--streams", "short-high-dim"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.splitlines()
    assert any(line.split()[:2] == ["short-high-dim", "stored"] for line in lines)
    assert any(line.startswith("shuffled: mean AP") for line in lines)
    assert "loda AP" in lines[1] and "(goal <= 2.4%" in lines[-1]


def test_a_param_reaches_the_detector_and_is_named_in_the_header():
    out = subprocess.run(
        [sys.executable, str(BENCH / "eval_stress.py"), "--streams", "short-high-dim",
         "--param", "trim=0.1"], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.splitlines()[0].startswith('seeds [0]; streamgmm with {"trim": 0.1}; ')
    bad = subprocess.run([sys.executable, str(BENCH / "eval_stress.py"), "--param", "trim"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--param: expected KEY=JSON, got 'trim'" in bad.stderr
    unknown = subprocess.run([sys.executable, str(BENCH / "eval_stress.py"), "--param",
                              "trimm=0.1"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode != 0
    assert "--param: 'trimm' is not a parameter of AnomalyDetector" in unknown.stderr
    # It reaches the detector, which refuses a trim below the contamination.
    low = subprocess.run([sys.executable, str(BENCH / "eval_stress.py"), "--streams",
                          "short-high-dim", "--param", "trim=0.01"],
                         capture_output=True, text=True, timeout=300)
    assert low.returncode != 0 and "trim: expected a number in [contamination" in low.stderr
