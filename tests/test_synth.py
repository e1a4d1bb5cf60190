"""Tests for the synthetic card-transaction stream and ``streamgmm generate``."""

from __future__ import annotations

import argparse
import doctest
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from streamgmm import synth
from streamgmm.commands import generate as generate_cmd
from streamgmm.synth import (
    DAY_MS,
    DEFAULT_START_MS,
    FEATURE_FIELDS,
    FRAUD_PATTERNS,
    HOUR_MS,
    LABEL_FIELDS,
    MCC_VOCABULARY,
    generate_batch,
    generate_events,
)

N = 20_000


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return generate_batch(N, seed=3)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert generate_batch(2000, seed=11) == generate_batch(2000, seed=11)
    assert generate_batch(2000, seed=11) != generate_batch(2000, seed=12)


def test_shorter_stream_is_a_prefix_of_longer_one() -> None:
    assert generate_batch(3000, seed=5) == generate_batch(7000, seed=5)[:3000]


def test_event_schema(events: list[dict]) -> None:
    expected = {
        "txn_id", "card_id", "ts", "amount", "hour", "weekday", "mcc", "distance_km",
        "txns_last_hour", "amount_last_24h", "country_mismatch", "is_fraud", "fraud_pattern",
    }  # fmt: skip
    assert set(FEATURE_FIELDS) | set(LABEL_FIELDS) <= expected
    assert not set(FEATURE_FIELDS) & set(LABEL_FIELDS)
    for e in events:
        assert set(e) == expected
        assert isinstance(e["txn_id"], str) and isinstance(e["card_id"], str)
        assert isinstance(e["amount"], float) and e["amount"] >= 0.5
        assert round(e["amount"], 2) == e["amount"]
        assert e["hour"] == (e["ts"] // HOUR_MS) % 24
        assert 0 <= e["weekday"] <= 6
        assert e["mcc"] in MCC_VOCABULARY
        assert isinstance(e["distance_km"], float) and e["distance_km"] >= 0
        assert isinstance(e["txns_last_hour"], int) and e["txns_last_hour"] >= 0
        assert isinstance(e["amount_last_24h"], float) and e["amount_last_24h"] >= 0
        assert e["country_mismatch"] in (0, 1) and e["is_fraud"] in (0, 1)
        assert (e["fraud_pattern"] is None) == (e["is_fraud"] == 0)
        assert e["fraud_pattern"] is None or e["fraud_pattern"] in FRAUD_PATTERNS
    json.dumps(events[:100])  # plain JSON types only


def test_ids_unique_time_increasing_and_calendar(events: list[dict]) -> None:
    assert len({e["txn_id"] for e in events}) == len(events)
    assert events[0]["txn_id"] == "t000000001"
    ts = np.array([e["ts"] for e in events])
    assert np.all(np.diff(ts) > 0)
    assert ts[0] >= DEFAULT_START_MS
    # 2024-03-04 was a Monday (weekday 0).
    assert events[0]["weekday"] == 0
    gaps = np.diff(ts) / 1000
    assert 1 < np.median(gaps) < 600  # seconds between transactions, population-wide


def test_daily_and_weekly_rhythm(events: list[dict]) -> None:
    legit = [e for e in events if not e["is_fraud"]]
    hours = Counter(e["hour"] for e in legit)
    night = sum(hours[h] for h in range(1, 6))
    midday = sum(hours[h] for h in range(11, 16))
    assert night < 0.15 * midday
    mcc = Counter(e["mcc"] for e in legit)
    assert mcc["grocery"] > mcc["electronics"] > mcc["jewelry"] > 0
    assert set(mcc) == set(MCC_VOCABULARY)
    cards = Counter(e["card_id"] for e in legit)
    assert 300 <= len(cards) <= 1000
    # Some cards are much busier than others.
    counts = np.array(list(cards.values()))
    assert np.quantile(counts, 0.95) > 3 * np.quantile(counts, 0.25)


@pytest.mark.parametrize("rate", [0.0, 0.008, 0.03])
def test_fraud_rate_is_honoured(rate: float) -> None:
    labels = np.array([e["is_fraud"] for e in generate_events(N, seed=1, fraud_rate=rate)])
    if rate == 0.0:
        assert labels.sum() == 0
    else:
        assert rate * 0.7 < labels.mean() < rate * 1.3


def test_each_pattern_present_with_its_signature(events: list[dict]) -> None:
    by_pattern = defaultdict(list)
    for e in events:
        by_pattern[e["fraud_pattern"]].append(e)
    for pattern in FRAUD_PATTERNS:
        assert len(by_pattern[pattern]) >= 10, pattern

    testing = by_pattern["card_testing"]
    assert all(0.5 <= e["amount"] <= 5.0 for e in testing)
    assert np.median([e["txns_last_hour"] for e in testing]) >= 5
    assert {e["mcc"] for e in testing} <= {"online_retail", "gift_cards", "entertainment"}

    takeover = by_pattern["account_takeover"]
    assert np.mean([e["hour"] < 6 for e in takeover]) > 0.5
    assert np.median([e["amount"] for e in takeover]) > 300
    assert np.median([e["distance_km"] for e in takeover]) > 100
    assert np.median([e["amount_last_24h"] for e in takeover]) > 800

    travel = by_pattern["impossible_travel"]
    assert all(e["country_mismatch"] == 1 and e["distance_km"] >= 1500 for e in travel)
    assert np.mean([e["txns_last_hour"] >= 1 for e in travel]) > 0.7

    cash_out = by_pattern["cash_out"]
    assert {e["mcc"] for e in cash_out} == {"money_transfer", "gift_cards"}
    assert np.mean([1 <= e["hour"] <= 5 for e in cash_out]) > 0.5


def test_impossible_travel_follows_a_purchase_near_home(events: list[dict]) -> None:
    recent: dict[str, list[dict]] = defaultdict(list)
    checked = 0
    for e in events:
        # The anchor of an episode early in the stream may lie in the unseen warm-up day.
        if e["fraud_pattern"] == "impossible_travel" and e["ts"] > DEFAULT_START_MS + 3 * HOUR_MS:
            window = [b for b in recent[e["card_id"]] if e["ts"] - b["ts"] <= 3 * HOUR_MS]
            assert any(b["distance_km"] < 30 and not b["is_fraud"] for b in window), e
            checked += 1
        recent[e["card_id"]].append(e)
    assert checked >= 10


def test_velocity_features_match_the_history(events: list[dict]) -> None:
    # The simulation starts a day before the stream, so from the second day on
    # the stream itself holds each card's whole last 24 hours.
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)
    checked = 0
    for e in events:
        past = history[e["card_id"]]
        last_hour = sum(1 for t, _ in past if t > e["ts"] - HOUR_MS)
        last_day = sum(a for t, a in past if t > e["ts"] - DAY_MS)
        if e["ts"] >= DEFAULT_START_MS + DAY_MS:
            assert e["txns_last_hour"] == last_hour, e
            assert e["amount_last_24h"] == pytest.approx(last_day, abs=0.011), e
            checked += 1
        else:
            assert e["txns_last_hour"] >= last_hour
        past.append((e["ts"], e["amount"]))
    assert checked > N // 2
    assert max(e["txns_last_hour"] for e in events) >= 8


def test_patterns_overlap_normal_values_on_single_features(events: list[dict]) -> None:
    """No pattern lies wholly outside the normal range of any one numeric feature."""
    legit = [e for e in events if not e["is_fraud"]]
    for pattern in FRAUD_PATTERNS:
        rows = [e for e in events if e["fraud_pattern"] == pattern]
        for field in ("amount", "distance_km", "txns_last_hour", "amount_last_24h"):
            normal = np.array([e[field] for e in legit])
            typical = np.median([e[field] for e in rows])
            side = normal >= typical if typical >= np.median(normal) else normal <= typical
            # At least a few normal events are as extreme as the pattern's median.
            assert side.sum() >= 3, (pattern, field, typical)


def test_fifty_thousand_events_quickly() -> None:
    start = time.perf_counter()
    count = sum(1 for _ in generate_events(50_000, seed=2))
    elapsed = time.perf_counter() - start
    assert count == 50_000
    assert elapsed < 60, f"50k events took {elapsed:.1f} s"


def test_endless_stream_and_zero() -> None:
    stream = generate_events(None, seed=4)
    assert len([next(stream) for _ in range(100)]) == 100
    assert list(generate_events(0)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_events": -1}, "n_events: expected a non-negative integer or None, got -1"),
        ({"n_events": 10, "fraud_rate": 0.7}, r"fraud_rate: expected a number in \[0, 0.5\)"),
        ({"n_events": 10, "n_cards": 3}, "n_cards: expected an integer >= 10, got 3"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next(generate_events(**kwargs))


def test_docstring_examples_run() -> None:
    result = doctest.testmod(synth)
    assert result.attempted > 0 and result.failed == 0


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamgmm")
    generate_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_jsonl_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert _run_cli(["generate", "-n", "500", "--seed", "9", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == generate_batch(500, seed=9)


def test_cli_writes_stdout_with_fraud_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli(["generate", "-n", "3000", "--fraud-rate", "0.05"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(events) == 3000
    assert 0.02 < np.mean([e["is_fraud"] for e in events]) < 0.08


def test_cli_rejects_bad_fraud_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _run_cli(["generate", "--fraud-rate", "2"])
    assert "expected a number in [0, 0.5), got '2'" in capsys.readouterr().err


def _features(events: list[dict]) -> np.ndarray:
    """log1p amounts and counts, cyclic time, one-hot category: a detector's view."""
    cols = {f: np.array([e[f] for e in events], dtype=float) for f in FEATURE_FIELDS if f != "mcc"}
    mcc = np.array([MCC_VOCABULARY.index(e["mcc"]) for e in events])
    return np.column_stack([
        np.log1p(cols["amount"]), np.log1p(cols["distance_km"]),
        np.log1p(cols["txns_last_hour"]), np.log1p(cols["amount_last_24h"]),
        np.sin(2 * np.pi * cols["hour"] / 24), np.cos(2 * np.pi * cols["hour"] / 24),
        np.sin(2 * np.pi * cols["weekday"] / 7), np.cos(2 * np.pi * cols["weekday"] / 7),
        cols["country_mismatch"], np.eye(len(MCC_VOCABULARY))[mcc],
    ])  # fmt: skip


@pytest.mark.slow
def test_a_mixture_finds_the_patterns_but_not_trivially() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    train, test = _features(generate_batch(10_000, seed=21)), generate_batch(10_000, seed=22)
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-9
    # A little jitter keeps one-hot columns from collapsing a covariance.
    train = (train - mean) / std + rng.normal(0, 0.05, train.shape)
    X = (_features(test) - mean) / std + rng.normal(0, 0.05, train.shape)
    model = GaussianMixture(8, covariance_type="full", reg_covar=1e-3, random_state=0).fit(train)
    surprise = -model.score_samples(X)
    y = np.array([e["is_fraud"] for e in test])
    auc, ap = roc_auc_score(y, surprise), average_precision_score(y, surprise)
    assert auc > 0.9
    assert 5 * y.mean() < ap < 0.9
    flagged = surprise >= np.quantile(surprise, 0.98)
    patterns = np.array([e["fraud_pattern"] or "" for e in test])
    recall = {p: flagged[patterns == p].mean() for p in FRAUD_PATTERNS}
    assert sum(r > 0.2 for r in recall.values()) >= 3, recall
