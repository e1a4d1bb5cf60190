"""``streamgmm plot`` run as a user runs it: the images it writes and its one-line errors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from figure_checks import check_png
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streamgmm import load
from streamgmm.cli import main

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, X: np.ndarray, names: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*names, "note"])
        for row in X:
            w.writerow([*row, "n"])
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training data (CSV and .npz), a model fitted on it by 'streamgmm fit', others."""
    d = tmp_path_factory.mktemp("plot")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (600, 3)), rng.normal([5, 2, 0], [1, 0.5, 2], (400, 3))])
    write_csv(d / "train.csv", X, ["a", "b", "c"])
    np.savez(d / "train.npz", X=X)
    np.savez(d / "four.npz", X=np.hstack([X, X[:, :1]]))
    write_csv(d / "other.csv", X, ["a", "b", "z"])
    assert main(["fit", str(d / "train.csv"), "-o", str(d / "model.npz"), "-k", "2",
                 "--quiet"]) == 0
    assert main(["fit", str(d / "train.npz"), "-o", str(d / "model_npz.npz"), "-k", "2",
                 "--quiet"]) == 0
    assert main(["fit", str(d / "train.csv"), "-o", str(d / "one.npz"), "-k", "2",
                 "--columns", "a", "--quiet"]) == 0
    from streamgmm import GaussianMixture

    GaussianMixture(2, random_state=0).fit(X).save(d / "library.npz")  # no training scores
    return d, X


def plot(capsys, *args) -> tuple[int, str]:
    code = main(["plot", *map(str, args)])
    return code, capsys.readouterr().err


def test_a_model_over_its_data_is_a_png_with_the_stored_threshold(files, tmp_path, capsys):
    d, X = files
    code, err = plot(capsys, d / "model.npz", d / "train.csv", "-o", tmp_path / "m.png",
                     "--dpi", 40, "--contamination", 0.05)
    assert code == 0, err
    check_png(tmp_path / "m.png", 360, 260)
    # The rows marked are those below the 5 % point of the stored training scores,
    # counted here with scipy.
    model = load(d / "model.npz")
    threshold = np.interp(5.0, model.extras_["percentile_levels"],
                          model.extras_["score_percentiles"])
    scores = logsumexp([np.log(w) + multivariate_normal(m, C).logpdf(X) for w, m, C in
                        zip(model.weights_, model.means_, model.covariances_, strict=True)],
                       axis=0)
    n = int(np.sum(scores < threshold))
    assert f"{n:,} below the threshold {threshold:.4f}" in err and 30 <= n <= 70


def test_two_features_by_name_and_the_four_covariance_types(files, tmp_path, capsys):
    d, _ = files
    code, err = plot(capsys, d / "model.npz", d / "train.csv", "-o", tmp_path / "f.png",
                     "--features", "c,a", "--dpi", 40)
    assert code == 0, err
    check_png(tmp_path / "f.png", 360, 260)
    code, err = plot(capsys, d / "model_npz.npz", d / "train.npz", "-o", tmp_path / "c.png",
                     "--compare-covariance", "--dpi", 40)
    assert code == 0, err
    check_png(tmp_path / "c.png", 520, 460)
    assert "four covariance types, 2 components" in err


def test_a_model_without_training_scores_is_drawn_unmarked(files, tmp_path, capsys):
    d, _ = files
    code, err = plot(capsys, d / "library.npz", d / "train.npz", "-o", tmp_path / "l.png",
                     "--dpi", 40)
    assert code == 0, err
    assert "(the model file holds no training scores: none marked)" in err
    check_png(tmp_path / "l.png", 360, 260)


def test_the_detection_figure_from_a_results_file(tmp_path, capsys):
    rows = [{"dataset": s, "order": o, "method": m, "ap": 0.5, "n": 10}
            for s in ("a", "b") for o in ("stored", "shuffled") for m in ("streamgmm", "x")]
    (tmp_path / "r.json").write_text(json.dumps({"results": rows}))
    code, err = plot(capsys, "detection", tmp_path / "r.json", "-o", tmp_path / "ap.svg")
    assert code == 0, err
    assert (tmp_path / "ap.svg").read_text().lstrip().startswith("<?xml")
    assert "2 data sets, methods streamgmm, x" in err


@pytest.fixture(scope="module")
def daemon_run(tmp_path_factory):
    """A short run of the embedded default configuration: alerts to a file, an audit
    with scores, refits every 1,000 events (swaps are checked on a detector that
    waits for its refits, in test_plot_timeline.py)."""
    d = tmp_path_factory.mktemp("run")
    doc = yaml.safe_load((ROOT / "streamgmm" / "config" / "default.yaml").read_text())
    doc["source"]["generate"]["n_events"] = 4000
    doc["detector"].update(warmup=500, window=1000)
    doc["detector"]["refit"] = {"every_events": 1000, "worker": "thread"}
    doc["alerts"] = {"sink": "file", "path": str(d / "alerts.jsonl")}
    doc["dead_letter"] = {"sink": "none"}
    doc["audit"] = {"path": str(d / "audit.txt"), "scores": True}
    (d / "config.yaml").write_text(yaml.safe_dump(doc))
    res = subprocess.run([sys.executable, "-m", "streamgmm", "run", "--config",
                          str(d / "config.yaml")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return d


def test_the_timeline_of_a_daemon_run_from_its_audit_and_its_alerts(daemon_run, tmp_path,
                                                                    capsys):
    d = daemon_run
    lines = (d / "audit.txt").read_text().splitlines()
    alerts = [json.loads(line) for line in (d / "alerts.jsonl").read_text().splitlines()]
    versions = [int(line.split("\t")[3]) for line in lines]
    swaps = sum(1 for a, b in zip(versions, versions[1:], strict=False) if b != a and a > 0)
    code, err = plot(capsys, "scores", d / "audit.txt", "-o", tmp_path / "t.png", "--dpi", 40)
    assert code == 0, err
    check_png(tmp_path / "t.png", 480, 220)
    # How many refits land before the short stream ends depends on the machine's
    # load (they run in the background); the figure must agree with the audit.
    assert f"4,000 events, {len(alerts):,} alerts, {swaps} model swap" in err
    assert alerts
    code, err = plot(capsys, "scores", d / "alerts.jsonl", "-o", tmp_path / "a.png",
                     "--dpi", 40)
    assert code == 0, err
    check_png(tmp_path / "a.png", 480, 220)
    assert err.startswith(f"wrote {tmp_path / 'a.png'} (480 x 220 px): {len(alerts):,} alerts")


@pytest.mark.parametrize(("args", "message"), [
    (["{d}/model.npz", "{d}/other.csv"],
     r"other.csv: no numeric column 'c': .*model.npz was fitted on a, b, c; the file's numeric "
     r"columns are a, b, z"),
    (["{d}/model_npz.npz", "{d}/four.npz"],
     r"four.npz: 4 features, but .*model_npz.npz was fitted on 3 \(x0, x1, x2\)"),
    (["{d}/one.npz", "{d}/train.csv"],
     r"one.npz: the model has 1 feature \(a\); a plot needs at least two"),
    (["{d}/model.npz", "{d}/empty.csv"], r"empty.csv: no rows"),
    (["{d}/model.npz", "{d}/empty.npz"], r"empty.npz: not a readable .npz file \(an empty file\)"),
    (["{d}/empty.npz", "{d}/train.csv"], r"empty.npz: not a streamgmm model file"),
    (["{d}/model.npz", "{d}/train.csv", "--features", "a,nope"],
     r"--features: unknown feature 'nope' \(the features are a, b, c\)"),
    (["{d}/model.npz", "{d}/train.csv", "--features", "a"],
     r"--features: expected two features, got 1"),
    (["scores", "{d}/ids.txt"], r"ids.txt: an audit file of event ids only, without scores"),
    (["scores", "{d}/empty.csv"], r"empty.csv: empty: no events to draw"),
    (["scores", "{d}/ids.txt", "--features", "a,b"],
     r"--features and --compare-covariance draw a model; 'plot scores' takes neither"),
    (["detection", "{d}/empty.csv"], r"empty.csv: empty: no results to draw"),
    (["{d}/library.npz", "{d}/train.npz", "--contamination", "0.05"],
     r"--contamination: .*library.npz holds no training scores to take a threshold from"),
    (["{d}/model.npz", "{d}/train.csv", "--contamination", "1.5"],
     r"--contamination: expected a number in \[0, 1\), got 1.5"),
])
def test_bad_input_is_one_line_naming_it(files, tmp_path, capsys, args, message):
    d, _ = files
    (d / "empty.csv").write_text("")
    (d / "empty.npz").write_bytes(b"")
    (d / "ids.txt").write_text("transactions/0/1\ntransactions/0/2\n")
    code, err = plot(capsys, *(a.format(d=d) for a in args), "-o", tmp_path / "x.png")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("streamgmm plot: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "x.png").exists()


def test_an_unknown_image_format_is_named(files, tmp_path, capsys):
    d, _ = files
    code, err = plot(capsys, d / "model.npz", d / "train.csv", "-o", tmp_path / "fig.bmpx")
    assert code == 2 and "unknown image format 'bmpx'; name the file ." in err and ".png" in err
    code, err = plot(capsys, d / "model.npz", d / "train.csv", "-o", tmp_path / "no" / "f.png")
    assert code == 2 and err.startswith(f"streamgmm plot: -o {tmp_path / 'no' / 'f.png'}: "
                                        "cannot write the image")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_without_matplotlib_plot_says_how_to_install_it(files, tmp_path):
    d, _ = files
    res = python(f"""
        import sys
        sys.modules["matplotlib"] = None  # as if it were not installed
        from streamgmm.cli import main
        sys.exit(main(["plot", {str(d / "model.npz")!r}, {str(d / "train.csv")!r},
                       "-o", {str(tmp_path / "x.png")!r}]))
    """)
    assert res.returncode == 2
    assert res.stderr == ("streamgmm plot: needs matplotlib, which is not installed: "
                          "pip install 'streamgmm[plot]'\n")


def test_streamgmm_and_its_other_commands_never_import_matplotlib(files, tmp_path):
    d, _ = files
    res = python(f"""
        import sys
        import streamgmm
        from streamgmm.cli import build_parser, main
        build_parser()
        assert main(["fit", {str(d / "train.csv")!r}, "-o", {str(tmp_path / "m.npz")!r},
                     "-k", "2", "--quiet"]) == 0
        assert main(["score", {str(tmp_path / "m.npz")!r}, {str(d / "train.csv")!r},
                     "-o", {str(tmp_path / "s.csv")!r}]) == 0
        assert main(["generate", "-n", "50", "-o", {str(tmp_path / "g.jsonl")!r}]) == 0
        import streamgmm.service.daemon, streamgmm.detect.detector, streamgmm.stream.loop
        streamgmm.GaussianMixture, streamgmm.AnomalyDetector, streamgmm.load
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")
        print(loaded)
        sys.exit(1 if loaded else 0)
    """)
    assert res.returncode == 0, res.stdout + res.stderr
    # And the plot package does import it (the check above can see it).
    res = python("import sys, streamgmm; streamgmm.plot.mixture; "
                 "sys.exit(0 if 'matplotlib' in sys.modules else 1)")
    assert res.returncode == 0, res.stderr
