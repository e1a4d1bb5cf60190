"""The ``streamgmm fit`` / ``streamgmm score`` commands, run as a user would."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from streamgmm import load


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamgmm", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (1500, 3)), rng.normal(6, 1, (1500, 3))])
    d = tmp_path_factory.mktemp("data")
    np.savez(d / "train.npz", X=X)
    with open(d / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "name"])
        for row in X:
            w.writerow([*row, "n"])
    with open(d / "test.jsonl", "w") as fh:
        for row in X[:100]:
            fh.write(json.dumps({"a": row[0], "b": row[1], "c": row[2]}) + "\n")
        fh.write(json.dumps({"a": 40.0, "b": -40.0, "c": 40.0}) + "\n")
    return d


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_fit_writes_a_model_that_scores_like_the_library(data, tmp_path, fmt):
    out = tmp_path / "model.npz"
    res = run("fit", str(data / f"train.{fmt}"), "-o", str(out), "-k", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "fitted 2 components" in res.stderr
    model = load(out)
    assert sorted(np.round(model.means_[:, 0])) == [0.0, 6.0]
    assert "score_percentiles" in model.extras_


def test_score_flags_rows_below_the_training_percentile(data, tmp_path):
    model_path = tmp_path / "model.npz"
    assert run("fit", str(data / "train.csv"), "-o", str(model_path), "-k", "2").returncode == 0
    res = run("score", str(model_path), str(data / "test.jsonl"), "--contamination", "0.02")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert len(rows) == 101
    assert set(rows[0]) == {"row", "log_density", "label", "is_anomaly"}
    # The far-away last row is flagged; its log-density matches the library's.
    assert rows[-1]["is_anomaly"] == "1"
    model = load(model_path)
    expect = model.score_samples([[40.0, -40.0, 40.0]])[0]
    assert float(rows[-1]["log_density"]) == pytest.approx(expect, rel=1e-6)
    flagged = sum(r["is_anomaly"] == "1" for r in rows[:100])
    assert flagged <= 10


def test_bad_inputs_give_clear_errors(data, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,12;5\n")
    res = run("fit", str(bad), "-o", str(tmp_path / "m.npz"), "-k", "1")
    assert res.returncode == 2
    assert "row 2, column 'b': expected a number, got '12;5'" in res.stderr
    res = run("score", str(tmp_path / "missing.npz"), str(data / "test.jsonl"))
    assert res.returncode == 2 and "no such model file" in res.stderr
    res = run("fit", str(data / "train.npz"), "-o", str(tmp_path / "m.npz"), "-k", "5000")
    assert res.returncode == 2 and "n_samples >= n_components" in res.stderr


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty.npz: not a readable .npz file (an empty file)"),
    (b"not a zip archive", "empty.npz: not a readable .npz file (not a complete .npz archive"),
])
def test_an_unreadable_npz_is_named_not_a_traceback(tmp_path, content, message):
    path = tmp_path / "empty.npz"
    path.write_bytes(content)
    res = run("fit", str(path), "-o", str(tmp_path / "m.npz"), "-k", "1")
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_an_npz_without_rows_is_named(tmp_path):
    np.savez(tmp_path / "none.npz", X=np.empty((0, 3)))
    res = run("fit", str(tmp_path / "none.npz"), "-o", str(tmp_path / "m.npz"), "-k", "1")
    assert res.returncode == 2 and "none.npz: no rows" in res.stderr
