"""bench/ablate_detection.py runs on a shared data set and prints what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(*args: str) -> str:
    return subprocess.run([sys.executable, str(BENCH / "ablate_detection.py"), *args],
                          capture_output=True, text=True, timeout=300, check=True).stdout


def test_variants_and_the_static_baseline_get_an_ap_each(shared_data):
    out = _run("--datasets", "cardio", "--orders", "shuffled", "--static",
               "--variant", 'k1={"n_components": 1}')
    header, row, mean = out.splitlines()[-3:]
    assert header.split() == ["data", "set", "order", "default", "k1", "static"]
    assert row.split()[:2] == ["cardio", "shuffled"]
    aps = [float(x) for x in row.split()[2:]]
    assert len(aps) == 3 and all(0.0 < ap <= 1.0 for ap in aps)
    assert mean.split()[:2] == ["mean", "shuffled"]


def test_inspect_prints_the_components_and_where_the_anomalies_are(shared_data):
    out = _run("--datasets", "thyroid", "--orders", "stored", "--inspect", "1500")
    lines = out.splitlines()
    assert lines[0].startswith("thyroid, stored order, after 1500 events")
    rows = [line.split() for line in lines[2:]]
    assert rows and sum(int(r[3]) for r in rows) == 1500
    assert abs(sum(float(r[1]) for r in rows) - 1.0) < 1e-6
    assert all(0.0 <= float(r[4]) <= 1.0 for r in rows)



def test_experiments_get_an_ap_each_and_unknown_ones_are_refused(shared_data):
    out = _run("--datasets", "cardio", "--orders", "shuffled", "--experiment", "relative",
               "--experiment", "yeo-johnson", "--experiment", "rda-0.9",
               "--experiment", "prior-1")
    header, row, _ = out.splitlines()[-3:]
    assert header.split()[3:] == ["default", "relative", "yeo-johnson", "rda-0.9", "prior-1"]
    aps = [float(x) for x in row.split()[2:]]
    assert len(aps) == 5 and all(0.0 < ap <= 1.0 for ap in aps)
    # The shrinkage is real: a diagonal-leaning covariance ranks cardio differently.
    assert aps[3] != aps[0]
    bad = subprocess.run([sys.executable, str(BENCH / "ablate_detection.py"), "--datasets",
                          "cardio", "--experiment", "nope"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "--experiment: unknown 'nope'" in bad.stderr


def test_warmup_and_floor_experiments_move_cardio(shared_data):
    out = _run("--datasets", "cardio", "--orders", "shuffled", "--experiment",
               "untrimmed-warmup", "--experiment", "floor-capped", "--variant", "again={}")
    header, row, _ = out.splitlines()[-3:]
    assert header.split()[3:] == ["default", "again", "untrimmed-warmup", "floor-capped"]
    default, again, untrimmed, capped = (float(x) for x in row.split()[2:])
    # Each patch moves cardio (its warm-up holds 9.6 % anomalies, and a feature
    # with one far value besides a spike); the default alone is deterministic.
    assert default == again and untrimmed != default and capped != default


def test_the_patches_are_undone_and_cap_a_spiky_feature_s_floor():
    import importlib.util

    import numpy as np

    from streamgmm.detect import detector as dm
    from streamgmm.detect import scaling as sc

    spec = importlib.util.spec_from_file_location("ablate", BENCH / "ablate_detection.py")
    ablate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablate)
    floor, fit, level = sc.quantisation_floor, dm.AnomalyDetector._fit_initial, \
        dm.AnomalyDetector._trim_level
    # A spike at 0 and one event at 20: two "levels" 20 apart, variance 0.8.
    X = np.zeros((500, 2))
    X[0, 0] = 20.0
    X[:, 1] = np.arange(500) % 4  # a genuine count: step 1, floor 1/12, variance 1.25
    assert floor(X)[0] > 30.0
    with ablate.capped_floor():
        capped = sc.quantisation_floor(X)
        assert capped[0] == pytest.approx(X[:, 0].var()) and capped[1] == 1.0 / 12.0
    with ablate.untrimmed_warmup():
        det = dm.AnomalyDetector(warmup=200, random_state=0, refit_enabled=False)
        det.process(np.random.default_rng(0).normal(size=(200, 2)))
        assert det.model is not None and det._trim_level == det.contamination
        det.close()
    assert (sc.quantisation_floor, dm.AnomalyDetector._fit_initial,
            dm.AnomalyDetector._trim_level) == (floor, fit, level)
