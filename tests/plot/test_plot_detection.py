"""streamgmm.plot.detection_ap: the detection evaluation's AP per data set and order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from figure_checks import check_png

from streamgmm.plot import detection_ap, read_detection_results

BENCH = Path(__file__).resolve().parents[2] / "bench"


def results(methods=("streamgmm", "hst", "naive")) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"dataset": d, "order": o, "method": m, "ap": round(float(rng.uniform()), 3),
             "n": 1000}
            for d in ("http", "smtp", "cardio", "thyroid") for o in ("stored", "shuffled")
            for m in methods]


def bars(fig) -> dict[str, float]:
    return {p.get_gid(): p.get_height() for ax in fig.axes for p in ax.patches
            if p.get_gid()}


@pytest.mark.parametrize("methods", [("streamgmm", "hst", "naive"),
                                     ("iforest", "streamgmm", "loda", "rrcf", "xstream")])
def test_each_bar_is_the_ap_of_its_data_set_order_and_method(methods):
    rows = results(methods)
    fig = detection_ap(rows)
    assert bars(fig) == {f"{r['dataset']}|{r['order']}|{r['method']}": r["ap"] for r in rows}
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.patches]
    assert [ax.get_title() for ax in panels] == ["http", "smtp", "cardio", "thyroid"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "streamgmm" and sorted(legend) == sorted(methods)


def test_a_missing_ap_is_drawn_as_not_available_and_a_capped_method_is_starred():
    rows = results()
    rows[1]["ap"] = None  # http stored hst: no anomaly in its events
    rows[1]["n"] = 100
    fig = detection_ap(rows)
    assert bars(fig)["http|stored|hst"] == 0.0
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "n/a*" in texts
    assert fig.get_supxlabel() == ("* on fewer events than the others: hst on the first 100 "
                                   "of 1,000 events of http (stored order)")


def test_the_evaluation_writes_a_results_file_the_figure_reads(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(BENCH))
    eval_detection = pytest.importorskip("eval_detection")
    res = {("stored", "cardio", "streamgmm"): {"auc": np.float64(0.93), "ap": 0.73,
                                               "eps": 8000.0, "n": 1831, "seconds": 0.2},
           ("stored", "cardio", "hst"): {"auc": float("nan"), "ap": float("nan"), "eps": 150.0,
                                         "n": 1000, "seconds": 6.6},
           ("shuffled", "cardio", "streamgmm"): {"auc": 0.88, "ap": 0.37, "eps": 9000.0,
                                                 "n": 1831, "seconds": 0.2,
                                                 "on_hst": {"auc": 0.9, "ap": 0.41}}}
    monkeypatch.setattr(sys, "argv", ["eval_detection.py", "--datasets", "cardio"])
    eval_detection.write_json(str(tmp_path / "r.json"), res)
    doc = json.loads((tmp_path / "r.json").read_text())  # strict JSON: NaN is null
    assert doc["command"] == "bench/eval_detection.py --datasets cardio"
    rows = read_detection_results(tmp_path / "r.json")
    assert rows[1] == {"dataset": "cardio", "order": "stored", "method": "hst", "auc": None,
                       "ap": None, "eps": 150.0, "n": 1000, "seconds": 6.6}
    assert rows[2]["on_hst"] == {"auc": 0.9, "ap": 0.41}
    fig = detection_ap(tmp_path / "r.json")
    assert bars(fig) == {"cardio|stored|streamgmm": 0.73, "cardio|stored|hst": 0.0,
                         "cardio|shuffled|streamgmm": 0.37}
    fig.savefig(tmp_path / "ap.png", dpi=50)
    check_png(tmp_path / "ap.png", round(fig.get_figwidth() * 50),
              round(fig.get_figheight() * 50))


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty: no results to draw"),
    ("{", "bad JSON"),
    ('{"results": []}', "no results to draw"),
    ('{"rows": 1}', "expected a list of results"),
    ('[{"dataset": "http", "order": "stored", "ap": 0.5}]', "result 0: method: expected a name"),
    ('[{"dataset": "http", "order": "stored", "method": "x", "ap": 1.5}]',
     r"result 0 \(http, stored, x\): ap: expected a number in \[0, 1\] or null, got 1.5"),
])
def test_bad_results_are_named(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"r.json: {message}"):
        read_detection_results(path)
