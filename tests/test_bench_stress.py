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
          "rare-mode": 0.005, "over-budget": 0.07, "short-high-dim": 0.05,
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


def test_the_script_prints_its_table_and_summary():
    out = subprocess.run(
        [sys.executable, str(BENCH / "eval_stress.py"), "--streams", "short-high-dim"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.splitlines()
    assert any(line.split()[:2] == ["short-high-dim", "stored"] for line in lines)
    assert any(line.startswith("shuffled: mean AP") for line in lines)


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
