"""Alert and dead-letter formats: ids, schema, JSON, the readable line."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import numpy as np
import pytest

from streamgmm.stream.alerts import (
    build_alerts,
    dead_letter_headers,
    dead_letter_json,
    event_id,
    format_pretty,
    iso_time,
)
from streamgmm.stream.records import Record

NAMES = ["amount", "hour_sin", "hour_cos"]
SCHEMA = {"alert_id", "key", "event_time", "detected_at", "score", "threshold", "percentile",
          "component", "explanation", "model_version"}


def detections(n: int) -> SimpleNamespace:
    out = SimpleNamespace(
        score=np.linspace(-50, -10, n),
        is_anomaly=np.ones(n, dtype=bool),
        threshold=np.full(n, -5.0),
        percentile=np.linspace(0.1, 1.0, n),
        component=np.arange(n) % 2,
        top_features=np.tile([[2, 0]], (n, 1)),
        top_shares=np.tile([[0.75, 0.25]], (n, 1)),
        model_version=3,
        ready=True,
    )
    out.explanation = lambda rows: (out.top_features[rows], out.top_shares[rows])
    return out


def test_event_ids_are_positions():
    assert event_id(Record("tx", 2, 99, None, b""), partitioned=True) == "tx/2/99"
    assert event_id(Record("data/events.jsonl", 0, 12, None, b""), False) == "data/events.jsonl/12"
    assert event_id(Record("-", 0, 3, None, b""), False) == "stdin/3"
    assert event_id(Record("generate", 0, 8, None, b""), False) == "generate/8"


def test_iso_time_is_utc_with_milliseconds_or_none():
    assert iso_time(1709510400123.0) == "2024-03-04T00:00:00.123Z"
    assert iso_time(float("nan")) is None


def test_build_alerts_schema_and_json():
    d = detections(4)
    X = np.arange(12, dtype=float).reshape(4, 3)
    batch = build_alerts(d, np.array([1, 3]), ids=["tx/0/1", "tx/0/3"], keys=["k1", None],
                         event_time_ms=np.array([1709510400000.0, np.nan]), X=X,
                         feature_names=NAMES, include_features=True,
                         detected_at_ms=1709510401000.0)
    assert batch.keys == [b"k1", None]
    docs = [json.loads(v) for v in batch.values]
    assert docs == batch.docs
    first, second = docs
    assert SCHEMA | {"features"} == set(first)
    assert first["alert_id"] == "tx/0/1" and first["key"] == "k1"
    assert first["event_time"] == "2024-03-04T00:00:00.000Z" and second["event_time"] is None
    assert first["detected_at"] == "2024-03-04T00:00:01.000Z"
    assert first["score"] == pytest.approx(d.score[1], abs=1e-6)
    assert second["score"] == pytest.approx(d.score[3], abs=1e-6)
    assert first["component"] == 1 and first["model_version"] == 3
    assert first["explanation"] == [{"feature": "hour_cos", "share": 0.75},
                                    {"feature": "amount", "share": 0.25}]
    assert second["features"] == {"amount": 9.0, "hour_sin": 10.0, "hour_cos": 11.0}


def test_build_alerts_without_features():
    batch = build_alerts(detections(2), np.array([0]), ids=["a/1"], keys=["k"],
                         event_time_ms=np.array([np.nan]), X=np.zeros((2, 3)),
                         feature_names=NAMES, include_features=False, detected_at_ms=0.0)
    assert set(batch.docs[0]) == SCHEMA


def test_format_pretty_names_the_reasons():
    doc = build_alerts(detections(1), np.array([0]), ids=["tx/0/7"], keys=["t7"],
                       event_time_ms=np.array([1709510400000.0]), X=np.zeros((1, 3)),
                       feature_names=NAMES, include_features=False, detected_at_ms=0.0).docs[0]
    line = format_pretty(doc)
    assert "\n" not in line
    assert line.startswith("ALERT t7 (tx/0/7) 2024-03-04T00:00:00.000Z score -50.0 < -5.0")
    assert "hour_cos 75%, amount 25%" in line


def test_dead_letter_headers_carry_reason_and_source():
    record = Record("tx", 1, 42, b"k", b"{bad")
    headers = dict(dead_letter_headers(record, "bad_json", "unexpected end"))
    assert headers == {
        "streamgmm.reason": b"bad_json",
        "streamgmm.detail": b"unexpected end",
        "streamgmm.source.topic": b"tx",
        "streamgmm.source.partition": b"1",
        "streamgmm.source.offset": b"42",
    }


def test_dead_letter_json_keeps_the_original_bytes():
    text = json.loads(dead_letter_json(Record("f.jsonl", 0, 5, None, b'{"a": "x"}'),
                                       "not_a_number", "a: expected a number", False))
    assert text["id"] == "f.jsonl/5" and text["reason"] == "not_a_number"
    assert text["value"] == '{"a": "x"}' and text["key"] is None
    assert text["source"] == {"topic": "f.jsonl", "partition": 0, "offset": 5}
    record = Record("tx", 0, 1, b"k", b"\xff\xfe")
    binary = json.loads(dead_letter_json(record, "bad_json", "", True))
    assert binary["id"] == "tx/0/1" and binary["key"] == "k"
    assert base64.b64decode(binary["value_base64"]) == b"\xff\xfe" and "value" not in binary
