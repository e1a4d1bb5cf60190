"""A synthetic card-transaction stream with labelled fraud, for demos and evaluation.

A population of cards spends with daily and weekly rhythms, personal habits and
category-dependent amounts, mostly near home and sometimes on trips. Four fraud
patterns a fraud analyst knows are mixed in at a configurable rate:

- ``card_testing``: a burst of small amounts (0.50-5.00) on one card within
  minutes, at online shops, gift cards or streaming services;
- ``account_takeover``: a spree of large electronics or jewelry purchases far
  from home, mostly at night;
- ``impossible_travel``: a purchase thousands of km away, in another country,
  minutes after a purchase near home;
- ``cash_out``: large money transfers and gift cards at unusual hours.

No fraud event is extreme in one feature alone (normal cards make small online
purchases, buy laptops, travel abroad); the patterns stand out in combination,
which is what a mixture model sees. ``txns_last_hour`` and ``amount_last_24h``
are computed from the stream itself: the card's earlier events (excluding the
event itself). ``distance_km`` is from the card's home to the point of sale, or,
online, to where the device's IP address is located. ``hour`` and ``weekday``
are the cardholder's local time, taken as UTC.

The stream is deterministic for a seed and does not depend on how many events
are asked for: ``generate_batch(1000, seed=1)`` is a prefix of
``generate_batch(5000, seed=1)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from streamgmm.synth._fraud import _fraud_chunk
from streamgmm.synth._normal import _normal_chunk
from streamgmm.synth._tables import (
    _CHUNK_MS,
    DAY_MS,
    DEFAULT_START_MS,
    FEATURE_FIELDS,
    FRAUD_PATTERNS,
    HOUR_MS,
    LABEL_FIELDS,
    MCC_VOCABULARY,
    MINUTE_MS,
    _Population,
    _population,
)

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "DEFAULT_START_MS",
    "FEATURE_FIELDS",
    "FRAUD_PATTERNS",
    "LABEL_FIELDS",
    "MCC_VOCABULARY",
    "generate_batch",
    "generate_events",
]

class _History:
    """Each card's purchases of the last 24 hours, for the velocity features."""

    def __init__(self, n_cards: int) -> None:
        self.times = [deque() for _ in range(n_cards)]
        self.amounts = [deque() for _ in range(n_cards)]

    def update(self, card: int, ts: int, amount: float) -> tuple[int, float]:
        times, amounts = self.times[card], self.amounts[card]
        while times and times[0] <= ts - DAY_MS:
            times.popleft()
            amounts.popleft()
        last_hour = 0
        for earlier in reversed(times):
            if earlier <= ts - HOUR_MS:
                break
            last_hour += 1
        total = sum(amounts, 0.0)
        times.append(ts)
        amounts.append(amount)
        return last_hour, total


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    merged = {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in parts[0]}
    order = np.argsort(merged["ts"], kind="stable")
    return {key: value[order] for key, value in merged.items()}


def _validate(n_events: int | None, fraud_rate: float, n_cards: int) -> None:
    if n_events is not None and (not isinstance(n_events, int) or n_events < 0):
        raise ValueError(f"n_events: expected a non-negative integer or None, got {n_events!r}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate: expected a number in [0, 0.5), got {fraud_rate!r}")
    if not isinstance(n_cards, int) or n_cards < 10:
        raise ValueError(f"n_cards: expected an integer >= 10, got {n_cards!r}")


def generate_events(
    n_events: int | None,
    seed: int = 0,
    fraud_rate: float = 0.008,
    start_ms: int = DEFAULT_START_MS,
    n_cards: int = 1000,
) -> Iterator[dict]:
    """Yield synthetic card transactions in time order, with fraud labels.

    Parameters
    ----------
    n_events : int or None
        How many events to yield; None streams without end.
    seed : int, default 0
        Seeds every random draw: the same seed gives the same stream.
    fraud_rate : float, default 0.008
        Expected share of fraudulent events, in [0, 0.5).
    start_ms : int
        Epoch milliseconds of the stream's start. The simulation runs a day
        before it, unseen, so velocity features start from a realistic history.
    n_cards : int, default 1000
        Size of the card population (at least 10).

    Yields
    ------
    dict
        ``txn_id``, ``card_id``, ``ts``, ``amount``, ``hour``, ``weekday``,
        ``mcc``, ``distance_km``, ``txns_last_hour``, ``amount_last_24h``,
        ``country_mismatch``, and the labels ``is_fraud``, ``fraud_pattern``.

    Examples
    --------
    >>> events = list(generate_events(3, seed=7))
    >>> [e["txn_id"] for e in events]
    ['t000000001', 't000000002', 't000000003']
    >>> sorted(set(FEATURE_FIELDS) - set(events[0]))
    []
    """
    _validate(n_events, fraud_rate, n_cards)
    rng = np.random.default_rng(seed)
    pop = _population(rng, n_cards)
    history = _History(n_cards)
    pending: list[dict[str, np.ndarray]] = []
    credit = dict.fromkeys(FRAUD_PATTERNS, 0.0)
    emitted, last_ts, t0 = 0, start_ms - DAY_MS - 1, start_ms - DAY_MS
    while n_events is None or emitted < n_events:
        t1 = t0 + _CHUNK_MS
        normal = _normal_chunk(rng, pop, t0, t1)
        fraud = _fraud_chunk(rng, pop, normal, credit, fraud_rate, t0, t1)
        events = _merge([*pending, normal, *fraud])
        later = events["ts"] >= t1  # episodes running into the next chunk
        pending = [{key: value[later] for key, value in events.items()}]
        for event in _events({k: v[~later] for k, v in events.items()}):
            last_ts = max(event["ts"], last_ts + 1)  # strictly increasing time
            event["ts"] = last_ts
            last_hour, total = history.update(event["card"], last_ts, event["amount"])
            if last_ts < start_ms:
                continue
            emitted += 1
            yield _to_json(event, emitted, pop, last_hour, total)
            if emitted == n_events:
                return
        t0 = t1


def _events(cols: dict[str, np.ndarray]) -> Iterator[dict]:
    amount = np.round(np.maximum(cols["amount"], 0.5), 2).tolist()
    distance = np.round(cols["distance"], 1).tolist()
    mismatch = np.asarray(cols["mismatch"]).astype(int).tolist()
    for i, (ts, card, mcc, pattern) in enumerate(
        zip(cols["ts"].tolist(), cols["card"].tolist(), cols["mcc"].tolist(),
            cols["pattern"].tolist(), strict=True)
    ):  # fmt: skip
        yield {"ts": ts, "card": card, "amount": amount[i], "mcc": mcc,
               "distance": distance[i], "mismatch": mismatch[i], "pattern": pattern}  # fmt: skip


def _to_json(event: dict, seq: int, pop: _Population, last_hour: int, total: float) -> dict:
    ts, pattern = event["ts"], event["pattern"]
    return {
        "txn_id": f"t{seq:09d}",
        "card_id": pop.ids[event["card"]],
        "ts": ts,
        "amount": event["amount"],
        "hour": (ts // HOUR_MS) % 24,
        "weekday": (ts // DAY_MS + 3) % 7,
        "mcc": MCC_VOCABULARY[event["mcc"]],
        "distance_km": event["distance"],
        "txns_last_hour": last_hour,
        "amount_last_24h": round(total, 2),
        "country_mismatch": event["mismatch"],
        "is_fraud": int(pattern > 0),
        "fraud_pattern": FRAUD_PATTERNS[pattern - 1] if pattern else None,
    }


def generate_batch(
    n: int, seed: int = 0, fraud_rate: float = 0.008, n_cards: int = 1000
) -> list[dict]:
    """Return the first ``n`` events of :func:`generate_events` as a list."""
    return list(generate_events(n, seed=seed, fraud_rate=fraud_rate, n_cards=n_cards))
