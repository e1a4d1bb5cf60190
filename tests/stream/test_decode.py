"""The event decoder: reasons, dotted paths, transforms, order, and finiteness."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.model.base import MAX_MAGNITUDE
from streamgmm.service.config import from_dict, load_config
from streamgmm.service.schema import FeaturesConfig
from streamgmm.stream.decode import REASONS, Decoded, Decoder, Reason
from streamgmm.stream.records import Record

FIELDS = [
    {"name": "amount", "transform": "log1p"},
    {"name": "hour", "transform": "cyclic", "period": 24},
    {
        "name": "mcc",
        "path": "merchant.mcc",
        "transform": "onehot",
        "vocabulary": ["grocery", "fuel"],
    },
    {"name": "z", "transform": "scale", "scale": {"center": 10, "scale": 4}},
    {"name": "raw", "default": 0.5},
]
NAMES = ["amount", "hour_sin", "hour_cos", "mcc=grocery", "mcc=fuel", "mcc=other", "z", "raw"]


def make(fields=FIELDS, **extra) -> Decoder:
    return Decoder(from_dict(FeaturesConfig, {"fields": fields, **extra}))


def event(**overrides) -> dict:
    base = {"amount": 9.0, "hour": 6, "merchant": {"mcc": "fuel"}, "z": 14, "raw": 2}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def records(*values, key=None, ts=None) -> list[Record]:
    out = []
    for i, v in enumerate(values):
        raw = v if isinstance(v, bytes) else json.dumps(v).encode()
        out.append(Record("t", 0, 100 + i, key, raw, ts))
    return out


def only_error(decoder: Decoder, value) -> Reason:
    out = decoder.decode(records(value))
    assert len(out.ok) == 0 and out.X.shape == (0, decoder.n_features)
    [(index, reason)] = out.errors
    assert index == 0 and reason.code in REASONS
    return reason


# ------------------------------------------------------------------------ good events


def test_feature_names_expand():
    decoder = make()
    assert decoder.feature_names == NAMES
    assert decoder.n_features == 8 == decoder.decode(records(event())).X.shape[1]


def test_transforms_numerically():
    decoder = make()
    out = decoder.decode(
        records(event(), event(amount=0, hour=18, merchant={"mcc": "toys"}, z=6, raw=-1.5))
    )
    assert out.X.dtype == np.float64 and out.ok.dtype == np.int64
    np.testing.assert_allclose(out.X[0], [np.log1p(9.0), 1, 0, 0, 1, 0, 1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(out.X[1], [0.0, -1, 0, 0, 0, 1, -1.0, -1.5], atol=1e-12)


def test_cyclic_wraps_and_is_unit_circle():
    decoder = make([{"name": "hour", "transform": "cyclic", "period": 24}])
    out = decoder.decode(records(*({"hour": h} for h in (0, 24, 3, 1e6, -6))))
    np.testing.assert_allclose(out.X[0], out.X[1], atol=1e-12)
    np.testing.assert_allclose(out.X[2], [math.sin(math.pi / 4), math.cos(math.pi / 4)])
    np.testing.assert_allclose(out.X[4], [-1, 0], atol=1e-12)
    np.testing.assert_allclose((out.X**2).sum(axis=1), 1.0)


def test_onehot_other_bucket_integer_codes_and_default():
    decoder = make(
        [{"name": "mcc", "transform": "onehot", "vocabulary": ["5411", "fuel"], "default": "fuel"}]
    )
    out = decoder.decode(
        records(
            {"mcc": 5411}, {"mcc": "5411"}, {"mcc": "cinema"}, {}, {"mcc": None}, {"mcc": "other"}
        )
    )
    assert decoder.feature_names == ["mcc=5411", "mcc=fuel", "mcc=other"]
    np.testing.assert_array_equal(
        out.X, [[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    )


def test_defaults_fill_absent_and_null_fields():
    out = make().decode(records(event(raw=...), event(raw=None)))
    assert out.X[:, NAMES.index("raw")].tolist() == [0.5, 0.5]


def test_dotted_paths_nested_and_null_parents():
    decoder = make([{"name": "a", "path": "x.y.z"}, {"name": "b", "path": "x.w", "default": 7}])
    out = decoder.decode(
        records(
            {"x": {"y": {"z": 3}, "w": 1}},
            {"x": {"y": {"z": 4}}},
            {"x": {"y": None}},
            {"x": {"y": {"z": 1}}, "x.w": 9},
        )
    )
    np.testing.assert_array_equal(out.X, [[3, 1], [4, 7], [1, 7]])
    assert out.ok.tolist() == [0, 1, 3]
    assert out.errors == [(2, Reason("missing_field", "x.y.z"))]


def test_ints_and_floats_both_numbers():
    out = make([{"name": "n"}]).decode(records({"n": 3}, {"n": 3.25}, {"n": -0.0}, {"n": 10**30}))
    assert out.X[:, 0].tolist() == [3.0, 3.25, 0.0, 1e30]


# ------------------------------------------------------------------------ each reason


@pytest.mark.parametrize(
    ("value", "code", "detail"),
    [
        (b'{"amount": 1,', "bad_json", "Input data was truncated"),
        (b'\xff\xfe{"amount": 1}', "bad_json", "JSON is malformed"),
        (b'{"amount": NaN}', "bad_json", "JSON is malformed"),
        ([1, 2], "wrong_type", "expected a JSON object, got an array"),
        ("text", "wrong_type", 'expected a JSON object, got "text"'),
        (event(amount=True), "wrong_type", "amount: expected a number, got true"),
        (event(amount={"v": 1}), "wrong_type", "amount: expected a number, got an object"),
        (
            event(merchant={"mcc": 1.5}),
            "wrong_type",
            "merchant.mcc: expected a string or an integer, got 1.5",
        ),
        (
            event(merchant="fuel"),
            "wrong_type",
            'merchant.mcc: expected an object at merchant, got "fuel"',
        ),
        (event(amount=...), "missing_field", "amount"),
        (event(amount=None), "missing_field", "amount"),
        (event(merchant=...), "missing_field", "merchant.mcc"),
        (event(amount="12,50"), "not_a_number", 'amount: expected a number, got "12,50"'),
        (event(amount="12.5"), "not_a_number", 'amount: expected a number, got "12.5"'),
        (
            b'{"amount": 1e400, "hour": 1, "merchant": {"mcc": "a"}, "z": 1}',
            "non_finite",
            "amount: inf",
        ),
        (
            b'{"amount": -1e999, "hour": 1, "merchant": {"mcc": "a"}, "z": 1}',
            "non_finite",
            "amount: -inf",
        ),
        (event(amount=-3), "transform", "amount: log1p of -3"),
        (event(amount=-1), "transform", "amount: log1p of -1"),
        (event(amount=-1.5), "transform", "amount: log1p of -1.5"),
    ],
)
def test_each_reason(value, code, detail):
    reason = only_error(make(), value)
    assert reason.code == code
    assert reason.detail.startswith(detail), reason.detail


def test_scale_overflow_is_a_transform_error():
    decoder = make([{"name": "z", "transform": "scale", "scale": {"center": 1, "scale": 1e-10}}])
    out = decoder.decode(records({"z": 3}, {"z": -1.7e308}))
    assert out.X.tolist() == [[pytest.approx(2e10)]]
    assert out.errors == [(1, Reason("transform", "z: (-1.7e+308 - 1) / 1e-10 overflows"))]


def test_huge_integer_is_non_finite():
    reason = only_error(make([{"name": "n"}]), b'{"n": 1' + b"0" * 400 + b"}")
    assert reason.code == "non_finite" and reason.detail.startswith("n: 1000")


def test_first_problem_in_field_order_wins():
    reason = only_error(make(), event(amount=-3, hour=...))
    assert reason == Reason("transform", "amount: log1p of -3")


def test_oversized_message():
    decoder = make([{"name": "n"}], max_message_bytes=64)
    fits = b'{"n": 1, "pad": "' + b"x" * (64 - 19) + b'"}'
    assert len(fits) == 64
    out = decoder.decode(records(fits, fits + b" "))
    assert out.ok.tolist() == [0]
    assert out.errors == [(1, Reason("too_large", "65 bytes > max_message_bytes 64"))]


def test_reasons_are_a_small_fixed_tuple():
    assert isinstance(REASONS, tuple) and len(set(REASONS)) == len(REASONS) <= 10
    assert {
        "bad_json",
        "missing_field",
        "not_a_number",
        "non_finite",
        "wrong_type",
        "too_large",
        "transform",
    } <= set(REASONS)


# -------------------------------------------------------------- batches, order, ids


def test_mixed_batch_keeps_order_and_indices():
    decoder = make()
    values = [
        event(amount=1),
        b"{",
        event(amount=2),
        event(hour="x"),
        event(amount=3),
        [],
        event(amount=4),
    ]
    out = decoder.decode(records(*values))
    assert out.ok.tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(out.X[:, 0], np.log1p([1, 2, 3, 4]))
    assert [i for i, _ in out.errors] == [1, 3, 5]
    assert [r.code for _, r in out.errors] == ["bad_json", "not_a_number", "wrong_type"]


def test_fast_and_slow_paths_agree():
    decoder = make(key="id", event_time="ts")
    good = [
        event(id=f"e{i}", ts=1000 + i, amount=i, hour=i, merchant={"mcc": m})
        for i, m in enumerate(["fuel", "grocery", "x", "fuel"])
    ]
    clean = decoder.decode(records(*good))
    spoiled = decoder.decode(records(good[0], b"nope", *good[1:]))
    np.testing.assert_array_equal(clean.X, spoiled.X)
    assert clean.keys == spoiled.keys == ["e0", "e1", "e2", "e3"]
    np.testing.assert_array_equal(clean.event_time_ms, spoiled.event_time_ms)
    assert spoiled.ok.tolist() == [0, 2, 3, 4]


def test_path_used_twice_with_different_kinds():
    decoder = make(
        [
            {"name": "code_n", "path": "code"},
            {"name": "code", "transform": "onehot", "vocabulary": ["7"]},
        ]
    )
    out = decoder.decode(records({"code": 7}, {"code": "7"}))
    np.testing.assert_array_equal(out.X, [[7, 1, 0]])
    assert out.errors == [(1, Reason("not_a_number", 'code: expected a number, got "7"'))]


def test_empty_batch():
    out = make().decode([])
    assert out.X.shape == (0, 8) and out.ok.shape == (0,) and out.errors == []


def test_keys_from_field_then_record_key():
    decoder = make([{"name": "n"}], key="meta.id")
    out = decoder.decode(
        records(
            {"n": 1, "meta": {"id": "a1"}}, {"n": 2, "meta": {"id": 42}}, {"n": 3}, key=b"kafka-key"
        )
    )
    assert out.keys == ["a1", "42", "kafka-key"]
    assert make([{"name": "n"}]).decode(records({"n": 1})).keys == [None]
    reason = only_error(decoder, {"n": 1, "meta": {"id": [1]}})
    assert reason == Reason("wrong_type", "meta.id: expected a string or an integer, got an array")


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("epoch_ms", 1_700_000_000_123, 1_700_000_000_123.0),
        ("epoch_s", 1_700_000_000.5, 1_700_000_000_500.0),
        ("iso8601", "2023-11-14T22:13:20Z", 1_700_000_000_000.0),
        ("iso8601", "2023-11-14T23:13:20.250+01:00", 1_700_000_000_250.0),
        ("iso8601", "2023-11-14T22:13:20", 1_700_000_000_000.0),
    ],
)
def test_event_time_formats(fmt, value, expected):
    decoder = make([{"name": "n"}], event_time="when", event_time_format=fmt)
    out = decoder.decode(records({"n": 1, "when": value}, {"n": 2}, ts=5))
    assert out.event_time_ms[0] == expected
    assert math.isnan(out.event_time_ms[1])


def test_event_time_defaults_to_record_timestamp_and_bad_times_are_rejected():
    out = make([{"name": "n"}]).decode(records({"n": 1}, ts=1234))
    assert out.event_time_ms.tolist() == [1234.0]
    out = make([{"name": "n"}]).decode(records({"n": 1}))
    assert math.isnan(out.event_time_ms[0])
    iso = make([{"name": "n"}], event_time="when", event_time_format="iso8601")
    assert only_error(iso, {"n": 1, "when": "yesterday"}) == Reason(
        "wrong_type", 'when: expected an ISO 8601 time, got "yesterday"'
    )
    assert only_error(iso, {"n": 1, "when": 5}).code == "wrong_type"


@pytest.mark.parametrize(
    ("fmt", "value", "shown"),
    [
        ("epoch_ms", 1e20, "1e+20"),
        ("epoch_ms", 253_402_300_800_000, "253402300800000"),  # 10000-01-01
        ("epoch_ms", -62_135_596_800_001, "-62135596800001"),  # just before year 1
        ("epoch_s", 1e306, "1e+306"),  # inf once in milliseconds
        ("iso8601", "0001-01-01T00:00:00+01:00", '"0001-01-01T00:00:00+01:00"'),
        ("iso8601", "9999-12-31T23:59:59-01:00", '"9999-12-31T23:59:59-01:00"'),
    ],
)
def test_event_times_outside_years_1_to_9999_are_out_of_range(fmt, value, shown):
    decoder = make([{"name": "n"}], event_time="when", event_time_format=fmt)
    reason = only_error(decoder, {"n": 1, "when": value})
    assert reason.code == "out_of_range"
    assert reason.detail.startswith(f"when: {shown} is outside the years 1-9999"), reason.detail
    # The edges themselves are moments an alert can print.
    edge = {"epoch_ms": -62_135_596_800_000, "epoch_s": 253_402_300_799,
            "iso8601": "0001-01-01T00:00:00Z"}[fmt]
    assert decoder.decode(records({"n": 1, "when": edge})).ok.tolist() == [0]


def test_a_feature_beyond_the_model_s_magnitude_is_out_of_range():
    decoder = make([{"name": "a"}, {"name": "m", "transform": "log1p"}])
    out = decoder.decode(records({"a": 1e100, "m": 1e300}, {"a": -1e200, "m": 1},
                                 {"a": 1, "m": 1e200}))
    # log1p(1e300) is 690.8: the feature is fine, whatever the raw value.
    assert out.ok.tolist() == [0, 2]
    assert out.errors == [(1, Reason("out_of_range", "a: -1e+200 is beyond ±1e+100 as a "
                                                     "feature"))]


@pytest.mark.parametrize(("value", "detail"), [
    (None, "no value: a tombstone"),
    (b"", "empty message: no value to decode"),
    (b"  \n", "empty message: no value to decode"),
])
def test_a_message_without_a_value_is_dead_lettered(value, detail):
    decoder = make([{"name": "n"}])
    batch = [Record("t", 0, 0, b"k", value), Record("t", 0, 1, None, b'{"n": 1}')]
    out = decoder.decode(batch)
    assert out.ok.tolist() == [1]
    assert out.errors == [(0, Reason("bad_json", detail))]


def test_json_nested_too_deeply_is_bad_json_and_the_batch_goes_on():
    decoder = make([{"name": "n"}])
    deep = b'{"n": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    out = decoder.decode(records({"n": 1}, deep, {"n": 2}))
    assert out.ok.tolist() == [0, 2]
    assert out.errors == [(1, Reason("bad_json", "nested too deeply to decode"))]


# --------------------------------------------------------------------- objects, CSV


def test_decode_objects_uses_the_same_checks():
    decoder = make()
    out = decoder.decode_objects([event(), event(amount="3"), event(amount=-5)])
    np.testing.assert_array_equal(out.X[0], decoder.decode(records(event())).X[0])
    assert [(i, r.code) for i, r in out.errors] == [(1, "not_a_number"), (2, "transform")]


def test_decode_csv_parses_numbers_from_text():
    decoder = make()
    header = ["amount", "hour", "merchant.mcc", "z", "raw"]
    lines = [
        b"9,6,fuel,14,2\n",
        b"9,6,fuel,14,\n",
        b"abc,6,fuel,14,2",
        b"9,6,fuel",
        b"nan,6,fuel,14,2",
        b',6,"fuel",14,2',
        b'9,6,"gro,cery",14,2',
    ]
    out = decoder.decode_csv(records(*lines, ts=7), header)
    assert out.ok.tolist() == [0, 1, 6]
    np.testing.assert_allclose(out.X[0], make().decode(records(event())).X[0])
    assert out.X[1, NAMES.index("raw")] == 0.5  # empty cell: the default
    assert out.X[2, NAMES.index("mcc=other")] == 1.0
    assert out.event_time_ms.tolist() == [7.0, 7.0, 7.0]
    assert [(i, r.code) for i, r in out.errors] == [
        (2, "not_a_number"),
        (3, "bad_csv"),
        (4, "non_finite"),
        (5, "missing_field"),
    ]
    assert out.errors[1][1].detail == "expected 5 columns, got 3"


def test_default_config_decodes_a_card_transaction():
    decoder = Decoder(load_config(None, env={}).features)
    txn = {
        "txn_id": "t1",
        "card_id": "c9",
        "ts": 1_700_000_000_000,
        "amount": 42.0,
        "hour": 13,
        "weekday": 4,
        "mcc": "travel",
        "distance_km": 830.5,
        "txns_last_hour": 3,
        "amount_last_24h": 512.0,
        "country_mismatch": 1,
        "is_fraud": 1,
    }
    out = decoder.decode(records(txn))
    assert out.keys == ["t1"] and out.X.shape == (1, 18)
    assert out.X[0, decoder.feature_names.index("mcc=travel")] == 1.0
    assert "is_fraud" not in decoder.feature_names


def test_default_config_decodes_the_synthetic_stream():
    synth = pytest.importorskip("streamgmm.synth")
    decoder = Decoder(load_config(None, env={}).features)
    events = list(synth.generate_events(2000, seed=3))
    out = decoder.decode(records(*events))
    assert out.errors == []
    assert np.isfinite(out.X).all() and out.X.shape == (2000, 18)
    assert out.keys[:2] == [events[0]["txn_id"], events[1]["txn_id"]]
    np.testing.assert_array_equal(out.event_time_ms, [e["ts"] for e in events])
    # Every common category is seen, and the rare ones land in "other".
    onehot = out.X[:, [i for i, n in enumerate(decoder.feature_names) if n.startswith("mcc=")]]
    assert (onehot.sum(axis=0) > 0).all()


# ---------------------------------------------------------------- finiteness property

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["12,50", "1e999", "nan", "fuel", ""])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "amount": JSON_VALUES,
        "hour": JSON_VALUES,
        "z": JSON_VALUES,
        "raw": JSON_VALUES,
        "merchant": st.fixed_dictionaries({}, optional={"mcc": JSON_VALUES}) | JSON_VALUES,
    },
)
NUMBERS = st.integers(min_value=-(10**400), max_value=10**400) | st.floats(
    allow_nan=False, allow_infinity=False
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "amount": NUMBERS,
        "hour": NUMBERS,
        "z": NUMBERS,
        "merchant": st.fixed_dictionaries({"mcc": st.text(max_size=5) | st.integers()}),
    },
    optional={"raw": NUMBERS | st.none()},
)
PAYLOADS = (
    NEAR_VALID.map(lambda e: json.dumps(e).encode())
    | EVENTS.map(lambda e: json.dumps(e).encode())
    | JSON_VALUES.map(lambda e: json.dumps(e).encode())
    | st.binary(max_size=40)
)


def check_invariants(out: Decoded, n: int, d: int) -> None:
    assert out.X.shape == (len(out.ok), d)
    assert np.isfinite(out.X).all() and (np.abs(out.X) <= MAX_MAGNITUDE).all()
    assert sorted([*out.ok.tolist(), *(i for i, _ in out.errors)]) == list(range(n))
    assert all(r.code in REASONS for _, r in out.errors)
    assert len(out.keys) == len(out.ok) == len(out.event_time_ms)


@settings(max_examples=300, deadline=None)
@given(st.lists(PAYLOADS, max_size=6))
def test_x_is_always_finite_and_every_record_accounted_for(payloads):
    decoder = make()
    out = decoder.decode(records(*payloads))
    check_invariants(out, len(payloads), decoder.n_features)
    # Decoding a record alone or inside a batch gives the same answer.
    for i, payload in enumerate(payloads):
        alone = decoder.decode(records(payload))
        if i in out.ok:
            np.testing.assert_array_equal(alone.X[0], out.X[out.ok.tolist().index(i)])
        else:
            assert alone.errors[0][1] == dict(out.errors)[i]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.text(max_size=6), min_size=4, max_size=6), max_size=5))
def test_csv_x_is_always_finite(rows):
    decoder = make()
    lines = [",".join(json.dumps(c) for c in row).encode() for row in rows]
    out = decoder.decode_csv(records(*lines), ["amount", "hour", "merchant.mcc", "z", "raw"])
    check_invariants(out, len(rows), decoder.n_features)
