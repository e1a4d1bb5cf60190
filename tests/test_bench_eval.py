"""bench/eval_detection.py: its baselines are the ones the goals name.

The naive approach standardises features with its first training set, so its
scores do not depend on the units of the features; on the shared data it
reproduces the reference anchors (average precision, all events).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
eval_detection = pytest.importorskip("eval_detection")
references = pytest.importorskip("references")


def _stream(rng: np.random.Generator, n: int = 2400) -> np.ndarray:
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 5.0, 1.0]])
    X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 3))
    return X


def test_naive_scores_do_not_depend_on_feature_units():
    X = _stream(np.random.default_rng(3))
    scale, shift = np.array([1e4, 1e-3, 7.0]), np.array([5.0, -2.0, 1e3])
    a = eval_detection.run_naive(X, first=800, every=800)
    b = eval_detection.run_naive(X * scale + shift, first=800, every=800)
    # Both are scored in standard units, so they are the same scores.
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("order", "anchor"), [("stored", 0.174), ("shuffled", 0.215)])
def test_naive_reproduces_the_cardio_anchor(shared_data, order, anchor):
    data = np.load(shared_data / "6_cardio.npz")
    X, y = data["X"].astype(float), data["y"]
    if order == "shuffled":
        p = np.random.default_rng(0).permutation(len(X))
        X, y = X[p], y[p]
    ap = eval_detection.metrics(y, eval_detection.run_naive(X))["ap"]
    assert ap == pytest.approx(anchor, abs=5e-4)


def test_hst_reproduces_the_cardio_anchor(shared_data):
    pytest.importorskip("river", reason="River is a test extra: pip install -e '.[test]'")
    data = np.load(shared_data / "6_cardio.npz")
    X, y = data["X"].astype(float), data["y"]
    # 21 features: the anchor depends on the features' names (see run_hst).
    ap = eval_detection.metrics(y, eval_detection.run_hst(X))["ap"]
    assert ap == pytest.approx(0.622, abs=5e-4)


def test_shuffle_seed_draws_another_shuffle(shared_data):
    import re
    import subprocess

    def naive_ap(*extra: str) -> tuple[str, float]:
        out = subprocess.run(
            [sys.executable, str(BENCH / "eval_detection.py"), "--datasets", "cardio",
             "--methods", "naive", "--orders", "shuffled", *extra],
            capture_output=True, text=True, timeout=300, check=True).stdout
        return out.splitlines()[0], float(re.search(r"naive .* AP (\d\.\d+)", out).group(1))

    header, ap0 = naive_ap()
    assert "shuffle seed" not in header and ap0 == pytest.approx(0.215, abs=5e-4)
    header, ap1 = naive_ap("--shuffle-seed", "1")
    assert header.endswith("; shuffle seed 1") and abs(ap1 - ap0) > 1e-3


def test_loda_reproduces_the_cardio_anchor(shared_data):
    pytest.importorskip("pysad", reason="pysad is a test extra: pip install -e '.[test]'")
    data = np.load(shared_data / "6_cardio.npz")
    X, y = data["X"].astype(float), data["y"]
    ap = eval_detection.metrics(y, eval_detection.run_loda(X))["ap"]
    assert ap == pytest.approx(0.635, abs=5e-4)


@pytest.mark.parametrize(("method", "make"), [
    ("rcf", lambda rcf3, d: rcf3.Forest(d, num_trees=50, capacity=256, seed=0)),
    ("oif", lambda rcf3, d: rcf3.OnlineIForest(d, num_trees=32, window_size=2048, seed=0))])
def test_rcf3_references_score_before_they_learn(method, make):
    rcf3 = pytest.importorskip("rcf3", reason="rcf3 is a test extra: pip install -e '.[test]'")
    X = _stream(np.random.default_rng(5), n=600)
    X[-1] = [30.0, -30.0, 30.0]
    scores = eval_detection.REFERENCES[method](X)
    Z = references.minmax(X).tolist()
    before, after = make(rcf3, 3), make(rcf3, 3)
    for z in Z[:-1]:
        before.update(z)
        after.update(z)
    # The far event's score is the one of the model that has not learned it yet,
    # not update_and_score's (which, for OnlineIForest, learns it first).
    assert scores[-1] == pytest.approx(before.score(Z[-1]), rel=1e-12)
    assert scores[-1] > np.quantile(scores[-200:-1], 0.99)
    if method == "oif":
        assert after.update_and_score(Z[-1]) != pytest.approx(scores[-1], rel=1e-6)


def test_an_unknown_method_is_refused_by_name():
    import subprocess

    bad = subprocess.run([sys.executable, str(BENCH / "eval_detection.py"), "--methods", "lodaa"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--methods: 'lodaa' is not one of" in bad.stderr
