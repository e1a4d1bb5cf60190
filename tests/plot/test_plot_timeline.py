"""streamgmm.plot.scores_timeline: a stream's scores, threshold, alerts and model swaps,
from a detector, from an audit file with scores and from an alerts file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from figure_checks import by_gid, check_png

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.plot import Timeline, read_timeline, scores_timeline
from streamgmm.stream.audit import AuditLog, score_line


@pytest.fixture(scope="module")
def detections():
    """A detector's results over a stream with a shift half way (so refits swap models)."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (1500, 2)), rng.normal([2.5, 0], 1, (1500, 2))])
    X[rng.choice(3000, 30, replace=False)] += 9
    det = AnomalyDetector(n_components=1, contamination=0.02, window=600, warmup=300,
                          refit_every=600, refit_worker="thread", random_state=0)
    out = []
    for i in range(0, len(X), 100):
        out.append(det.process(X[i:i + 100]))
        det.wait_for_refit()
    det.close()
    return out


def concat(detections, field):
    return np.concatenate([getattr(d, field) for d in detections])


def test_the_threshold_line_is_the_detectors_threshold(detections, tmp_path):
    ax = scores_timeline(detections).axes[0]
    threshold = concat(detections, "threshold")
    [line] = by_gid(ax, "threshold")
    ok = np.isfinite(threshold)
    np.testing.assert_array_equal(line.get_ydata(), threshold[ok])
    np.testing.assert_array_equal(line.get_xdata(), np.flatnonzero(ok))
    # The alerts are the flagged events, at their scores.
    flagged = concat(detections, "is_anomaly")
    [alerts] = by_gid(ax, "alerts")
    want = np.column_stack([np.flatnonzero(flagged), concat(detections, "score")[flagged]])
    np.testing.assert_array_equal(np.asarray(alerts.get_offsets()), want)
    assert flagged.sum() > 20


def test_model_swaps_are_vertical_lines_where_the_version_changes(detections):
    ax = scores_timeline(detections).axes[0]
    versions = np.concatenate([np.full(d.score.size, d.model_version) for d in detections])
    changes = [i for i in range(1, versions.size)
               if versions[i] != versions[i - 1] and versions[i - 1] > 0]
    assert len(changes) >= 2, "the stream should have swapped models"
    swaps = by_gid(ax, "model-swap")
    assert [line.get_xdata()[0] for line in swaps] == changes
    assert ax.get_title().endswith(f"{len(changes)} model swaps")


def test_the_warm_up_is_shaded_and_the_mean_is_drawn(detections):
    ax = scores_timeline(detections, window=50).axes[0]
    score = concat(detections, "score")
    n_warm = int(np.argmax(np.isfinite(score)))
    [span] = by_gid(ax, "warmup")
    assert span.get_label().startswith(f"warm-up: {n_warm:,} events")
    [mean] = by_gid(ax, "mean")
    finite = score[np.isfinite(score)]
    np.testing.assert_allclose(mean.get_ydata()[-1], finite[-50:].mean())
    np.testing.assert_allclose(mean.get_ydata()[9], finite[:10].mean())


def test_a_long_stream_draws_a_subset_of_its_quiet_events(detections):
    ax = scores_timeline(detections, max_points=500).axes[0]
    [points] = by_gid(ax, "scores")
    quiet = np.isfinite(concat(detections, "score")) & ~concat(detections, "is_anomaly")
    assert len(points.get_offsets()) == 500
    assert points.get_label().endswith(f"(a random 500 of {int(quiet.sum()):,})")
    [alerts] = by_gid(ax, "alerts")
    assert len(alerts.get_offsets()) == int(concat(detections, "is_anomaly").sum())


def test_very_low_scores_are_marked_at_the_bottom_edge(detections):
    ax = scores_timeline(detections).axes[0]
    score = concat(detections, "score")
    bottom = ax.get_ylim()[0]
    [beyond] = by_gid(ax, "beyond")
    assert len(beyond.get_offsets()) == int(np.sum(score < bottom)) > 0
    assert bottom < np.nanmin(concat(detections, "threshold"))


def test_an_audit_file_with_scores_draws_the_same_stream(detections, tmp_path):
    path = tmp_path / "audit.txt"
    audit = AuditLog(path, scores=True)
    n = 0
    for d in detections:
        audit.write(score_line(f"tx/0/{n + i}", s, t, d.model_version, f) for i, (s, t, f) in
                    enumerate(zip(d.score, d.threshold, d.is_anomaly, strict=True)))
        n += d.score.size
    audit.close()
    t = read_timeline(path)
    ax = scores_timeline(t).axes[0]
    threshold = concat(detections, "threshold")
    [line] = by_gid(ax, "threshold")
    np.testing.assert_allclose(line.get_ydata(), threshold[np.isfinite(threshold)], atol=1e-6)
    [alerts] = by_gid(ax, "alerts")
    assert len(alerts.get_offsets()) == int(concat(detections, "is_anomaly").sum())
    assert len(by_gid(ax, "model-swap")) == len(by_gid(scores_timeline(detections).axes[0],
                                                       "model-swap"))
    ax.get_figure().savefig(tmp_path / "t.png", dpi=50)
    check_png(tmp_path / "t.png", 600, 275)


def alert(i: int, score, threshold, version: int, when: str | None) -> str:
    return json.dumps({"alert_id": f"tx/0/{i}", "key": None, "event_time": when,
                       "detected_at": "2024-03-05T00:00:00.000Z", "score": score,
                       "threshold": threshold, "percentile": 0.0, "component": 0,
                       "explanation": [], "model_version": version})


def test_an_alerts_file_draws_its_scores_and_thresholds_by_event_time(tmp_path):
    path = tmp_path / "alerts.jsonl"
    lines = [alert(3, -30.0, -20.0, 1, "2024-03-05T02:00:00.000Z"),
             alert(1, -25.0, -21.0, 1, "2024-03-05T01:00:00.000Z"),  # out of order
             alert(9, -40.0, -19.0, 2, "2024-03-05T04:00:00.000Z"),
             alert(3, -30.0, -20.0, 1, "2024-03-05T02:00:00.000Z"),  # a duplicate, redone
             alert(12, None, -19.0, 2, "2024-03-05T05:00:00.000Z")]  # no score: left out
    path.write_text("\n".join(lines) + "\n")
    t = read_timeline(path)
    assert t.alerts_only and t.x_label == "event time (UTC)"
    ax = scores_timeline(t).axes[0]
    [line] = by_gid(ax, "threshold")
    assert list(line.get_ydata()) == [-21.0, -20.0, -19.0]
    assert [str(x)[:13] for x in line.get_xdata()] == ["2024-03-05T01", "2024-03-05T02",
                                                      "2024-03-05T04"]
    [alerts] = by_gid(ax, "alerts")
    assert list(np.asarray(alerts.get_offsets())[:, 1]) == [-25.0, -30.0, -40.0]
    assert len(by_gid(ax, "model-swap")) == 1
    assert not by_gid(ax, "mean")  # alerts alone say nothing of the stream's mean


def test_alerts_without_event_times_are_drawn_by_detection_time(tmp_path):
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join(alert(i, -30.0 - i, -20.0, 1, None) for i in range(5)))
    assert read_timeline(path).x_label == "detection time (UTC)"


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty: no events to draw"),
    ("\n\n", "empty: no events to draw"),
    ("tx/0/1\ntx/0/2\n", "an audit file of event ids only, without scores: run the daemon "
                         "with audit.scores: true"),
    ("a,b\n1,2\n", "line 1 holds no scores"),
    ("tx/0/1\t-1.0\t-3.0\t1\t0\ntx/0/2\n", "line 2: an event id without scores"),
    (alert(1, None, None, 1, None), "no alert carries a score and a threshold"),
    ('{"id": "x/1", "reason": "bad_json", "detail": "", "source": {}, "value": "{"}',
     "line 1: a dead letter \\(no 'alert_id'\\)"),
    (alert(1, -3.0, -2.0, 1, None) + "\n{oops\n", "line 2: bad JSON"),
    (alert(1, "low", -2.0, 1, None), "line 1: score: expected a number, got 'low'"),
])
def test_a_file_with_no_scores_is_named(tmp_path, content, message):
    path = tmp_path / "scores.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"scores.txt: {message}"):
        read_timeline(path)


def test_a_stream_of_warm_up_only_has_nothing_to_draw():
    t = Timeline(np.full(5, np.nan), np.full(5, np.nan), np.zeros(5, bool), source="run")
    with pytest.raises(ValueError, match="run: no scores to draw"):
        scores_timeline(t)


def test_arrays_of_other_lengths_are_refused():
    with pytest.raises(ValueError, match=r"threshold: expected shape \(3,\)"):
        Timeline(np.zeros(3), np.zeros(2), np.zeros(3, bool))
