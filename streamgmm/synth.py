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
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_START_MS",
    "FEATURE_FIELDS",
    "FRAUD_PATTERNS",
    "LABEL_FIELDS",
    "MCC_VOCABULARY",
    "generate_batch",
    "generate_events",
]

DEFAULT_START_MS = 1_709_510_400_000  # 2024-03-04 00:00 UTC, a Monday
FEATURE_FIELDS = (
    "amount", "hour", "weekday", "mcc", "distance_km",
    "txns_last_hour", "amount_last_24h", "country_mismatch",
)  # fmt: skip
LABEL_FIELDS = ("is_fraud", "fraud_pattern")
FRAUD_PATTERNS = ("card_testing", "account_takeover", "impossible_travel", "cash_out")

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000
_CHUNK_MS = 6 * HOUR_MS  # simulated time per vectorised step

# Merchant categories: median amount, lognormal sigma, share of transactions,
# probability that the purchase is card-not-present (online).
_MCC_TABLE = {
    "grocery":        (42.0, 0.60, 0.220, 0.03),
    "restaurant":     (30.0, 0.55, 0.190, 0.00),
    "fuel":           (48.0, 0.35, 0.090, 0.00),
    "online_retail":  (38.0, 1.00, 0.160, 1.00),
    "travel":         (220.0, 0.90, 0.030, 0.60),
    "electronics":    (140.0, 0.90, 0.040, 0.30),
    "pharmacy":       (22.0, 0.65, 0.070, 0.05),
    "entertainment":  (32.0, 0.70, 0.090, 0.40),
    "jewelry":        (260.0, 0.90, 0.006, 0.10),
    "gift_cards":     (50.0, 0.50, 0.015, 0.50),
    "money_transfer": (160.0, 0.90, 0.020, 0.70),
}  # fmt: skip
MCC_VOCABULARY = tuple(_MCC_TABLE)
_MCC = {name: i for i, name in enumerate(MCC_VOCABULARY)}
_MEDIAN, _SIGMA, _SHARE, _ONLINE = (np.array(col) for col in zip(*_MCC_TABLE.values(), strict=True))

# Relative activity by hour of day (UTC is the cards' local time) and weekday (Monday = 0).
_DIURNAL = np.array([
    0.25, 0.12, 0.07, 0.05, 0.05, 0.08, 0.20, 0.45, 0.70, 0.80, 0.90, 1.00,
    1.15, 1.10, 0.95, 0.90, 0.95, 1.05, 1.15, 1.10, 0.95, 0.75, 0.55, 0.40,
])  # fmt: skip
_DIURNAL = _DIURNAL / _DIURNAL.mean()
_WEEKLY = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.2, 0.85])
_WEEKLY = _WEEKLY / _WEEKLY.mean()

_GIFT_DENOMINATIONS = np.array([10.0, 20.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0])
_CASHOUT_GIFT = np.array([200.0, 250.0, 300.0, 500.0])

# Fraud patterns: share of fraud events, mean episode size, relative weight by hour.
_NIGHT = np.where(np.arange(24) < 6, 1.0, 0.0)
_PATTERN_SHARE = {
    "card_testing": 0.35, "account_takeover": 0.25, "impossible_travel": 0.20, "cash_out": 0.20,
}  # fmt: skip
_PATTERN_SIZE = {"card_testing": (8, 25), "account_takeover": (4, 8),
                 "impossible_travel": (1, 3), "cash_out": (3, 6)}  # fmt: skip
_PATTERN_HOURS = {
    "card_testing": 1.0 + 0.5 * _NIGHT,
    "account_takeover": 1.0 + 12.0 * _NIGHT,
    "cash_out": 1.0 + 12.0 * _NIGHT * (np.arange(24) >= 1),
}

_VISITS_PER_CARD_DAY = 1.3
_SESSION_P = 0.75  # a visit has Geometric(p) purchases: mean 1/p
_BUSY_SHARE, _BUSY_P = 0.015, 0.3  # a market, a fair, a day out: many purchases close together
_MEAN_SESSION = (1 - _BUSY_SHARE) / _SESSION_P + _BUSY_SHARE / _BUSY_P
_MICRO_SHARE = 0.08  # apps, songs, in-game items: 0.99 to 8.99
_TRIP_START_P = 0.004  # per purchase, when not already travelling


@dataclass
class _Population:
    ids: list[str]
    activity_cdf: np.ndarray  # cumulative share of purchases per card
    spend: np.ndarray  # amount multiplier per card
    home_radius: np.ndarray  # typical km from home for local purchases
    preference: np.ndarray  # (n_cards, n_mcc) category multipliers
    trip_until: list[int]  # per-card trip state, advanced in time order
    trip_km: list[float]
    trip_foreign: list[int]


def _population(rng: np.random.Generator, n_cards: int) -> _Population:
    activity = rng.lognormal(0.0, 0.6, n_cards)
    return _Population(
        ids=[f"c{i:06d}" for i in range(n_cards)],
        activity_cdf=np.cumsum(activity) / activity.sum(),
        spend=rng.lognormal(0.0, 0.5, n_cards),
        home_radius=rng.lognormal(np.log(4.0), 0.5, n_cards),
        preference=rng.gamma(2.0, 0.5, (n_cards, len(MCC_VOCABULARY))),
        trip_until=[0] * n_cards,
        trip_km=[0.0] * n_cards,
        trip_foreign=[0] * n_cards,
    )


def _hour(ts: np.ndarray) -> np.ndarray:
    return (ts // HOUR_MS) % 24


def _weekday(ts: np.ndarray) -> np.ndarray:
    return (ts // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


def _poisson_times(rng, rate_per_ms: float, weight, peak: float, t0: int, t1: int) -> np.ndarray:
    """Arrival times in [t0, t1) of a Poisson process with rate ``rate * weight(t)``.

    Thinning: draw at the peak rate, keep each draw with probability weight / peak.
    """
    n = rng.poisson(rate_per_ms * peak * (t1 - t0))
    ts = np.sort(rng.integers(t0, t1, n))
    return ts[rng.random(n) * peak < weight(ts)]


def _normal_weight(ts: np.ndarray) -> np.ndarray:
    return _DIURNAL[_hour(ts)] * _WEEKLY[_weekday(ts)]


def _lognormal(rng, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(np.shape(median)))


def _round_to(values: np.ndarray, choices: np.ndarray) -> np.ndarray:
    return choices[np.abs(values[:, None] - choices[None, :]).argmin(axis=1)]


def _far_km(rng, n: int, median: float, sigma: float, low: float, high: float) -> np.ndarray:
    return np.clip(_lognormal(rng, np.full(n, median), sigma), low, high)


def _choose(rng, n: int, names_probs: dict[str, float]) -> np.ndarray:
    codes = np.array([_MCC[name] for name in names_probs])
    probs = np.array(list(names_probs.values()))
    return codes[rng.choice(len(codes), n, p=probs / probs.sum())]


# -- normal behaviour --------------------------------------------------------


def _sessions(rng, visits: np.ndarray, cards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand visits into purchases: a few more within the next hour, now and then."""
    busy = rng.random(len(visits)) < _BUSY_SHARE
    counts = rng.geometric(np.where(busy, _BUSY_P, _SESSION_P))
    first = np.cumsum(counts) - counts
    position = np.arange(counts.sum()) - np.repeat(first, counts)
    scale = np.repeat(np.where(busy, 4 * MINUTE_MS, 13 * MINUTE_MS), counts)
    gaps = np.where(position > 0, MINUTE_MS + scale * rng.exponential(1.0, len(position)), 0)
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[first], counts)
    ts = np.repeat(visits, counts) + offset.astype(np.int64)
    order = np.argsort(ts, kind="stable")
    return ts[order], np.repeat(cards, counts)[order]


def _trips(rng, pop: _Population, ts: np.ndarray, cards: np.ndarray):
    """Per purchase: trip distance (0 at home) and foreign country flag."""
    n = len(ts)
    starts = (rng.random(n) < _TRIP_START_P).tolist()
    length = (rng.uniform(2, 8, n) * DAY_MS).astype(np.int64).tolist()
    km = _far_km(rng, n, 600.0, 1.3, 80.0, 15_000.0)
    foreign = (rng.random(n) < np.where(km > 1500, 0.6, 0.03)).astype(int).tolist()
    km = km.tolist()
    trip_km, trip_foreign = [0.0] * n, [0] * n
    until, where, abroad = pop.trip_until, pop.trip_km, pop.trip_foreign
    for i, (t, c) in enumerate(zip(ts.tolist(), cards.tolist(), strict=True)):
        if until[c] <= t and starts[i]:
            until[c], where[c], abroad[c] = t + length[i], km[i], foreign[i]
        if until[c] > t:
            trip_km[i], trip_foreign[i] = where[c], abroad[c]
    return np.array(trip_km), np.array(trip_foreign, dtype=np.int8)


def _normal_mcc(rng, pop: _Population, ts, cards, travelling) -> np.ndarray:
    hour, weekend = _hour(ts), _weekday(ts) >= 5
    probs = _SHARE[None, :] * pop.preference[cards]
    probs[:, _MCC["restaurant"]] *= np.where(np.isin(hour, (12, 13, 19, 20, 21)), 2.0, 0.8)
    probs[:, _MCC["entertainment"]] *= np.where(hour >= 18, 2.0, 0.7) * np.where(weekend, 1.4, 1)
    probs[:, _MCC["grocery"]] *= np.where((hour >= 8) & (hour <= 20), 1.2, 0.4)
    probs[:, _MCC["fuel"]] *= np.where(np.isin(hour, (7, 8, 17, 18)), 1.8, 1.0)
    probs[:, _MCC["online_retail"]] *= np.where((hour >= 21) | (hour <= 1), 1.8, 1.0)
    probs[travelling, _MCC["travel"]] *= 4.0
    probs[travelling, _MCC["restaurant"]] *= 1.5
    probs[travelling, _MCC["grocery"]] *= 0.5
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(ts)) * cdf[:, -1]
    return (cdf < u[:, None]).sum(axis=1)


def _normal_amounts(rng, pop: _Population, cards, mcc) -> np.ndarray:
    amount = np.maximum(_lognormal(rng, _MEDIAN[mcc] * pop.spend[cards], _SIGMA[mcc]), 0.5)
    gift = mcc == _MCC["gift_cards"]
    amount[gift] = _round_to(amount[gift], _GIFT_DENOMINATIONS)
    transfer = (mcc == _MCC["money_transfer"]) & (rng.random(len(mcc)) < 0.5) & (amount > 20)
    amount[transfer] = np.round(amount[transfer], -1)
    digital = np.isin(mcc, (_MCC["online_retail"], _MCC["entertainment"]))
    micro = digital & (rng.random(len(mcc)) < _MICRO_SHARE)
    amount[micro] = rng.integers(1, 10, micro.sum()) - 0.01
    return amount


def _normal_chunk(rng, pop: _Population, t0: int, t1: int) -> dict[str, np.ndarray]:
    rate = len(pop.ids) * _VISITS_PER_CARD_DAY / DAY_MS
    peak = float(_DIURNAL.max() * _WEEKLY.max())
    visits = _poisson_times(rng, rate, _normal_weight, peak, t0, t1)
    cards = np.searchsorted(pop.activity_cdf, rng.random(len(visits)), side="right")
    ts, cards = _sessions(rng, visits, np.minimum(cards, len(pop.ids) - 1))
    trip_km, foreign = _trips(rng, pop, ts, cards)
    travelling = trip_km > 0
    mcc = _normal_mcc(rng, pop, ts, cards, travelling)
    n = len(ts)
    online = rng.random(n) < _ONLINE[mcc]
    # Online, the location is the device's IP address: home, coarsely geolocated,
    # or now and then a mobile network or VPN exit far away.
    local = _lognormal(rng, pop.home_radius[cards] * np.where(online, 3.0, 1.0), np.full(n, 0.9))
    away = trip_km * np.exp(0.1 * rng.standard_normal(n)) + local
    vpn = online & ~travelling & (rng.random(n) < 0.03)
    distance = np.where(travelling, away, local)
    distance[vpn] = _far_km(rng, int(vpn.sum()), 800.0, 1.0, 50.0, 12_000.0)
    mismatch = (travelling & (foreign == 1)) | (vpn & (rng.random(n) < 0.4))
    return {
        "ts": ts, "card": cards, "amount": _normal_amounts(rng, pop, cards, mcc), "mcc": mcc,
        "distance": distance, "mismatch": mismatch.astype(np.int8),
        "pattern": np.zeros(len(ts), dtype=np.int8),
    }  # fmt: skip


# -- fraud -------------------------------------------------------------------


def _episodes(rng, starts: np.ndarray, pattern: str, gap_min: tuple[float, float]):
    """Events of episodes beginning at ``starts``: times and episode index of each."""
    low, high = _PATTERN_SIZE[pattern]
    sizes = rng.integers(low, high + 1, len(starts))
    episode = np.repeat(np.arange(len(starts)), sizes)
    first = np.cumsum(sizes) - sizes
    position = np.arange(sizes.sum()) - np.repeat(first, sizes)
    gaps = np.where(position > 0, rng.uniform(*gap_min, len(episode)) * MINUTE_MS, 0.0)
    cum = np.cumsum(gaps)
    ts = starts[episode] + (cum - np.repeat(cum[first], sizes)).astype(np.int64)
    return ts, episode


def _card_testing(rng, pop, starts: np.ndarray) -> dict[str, np.ndarray]:
    ts, ep = _episodes(rng, starts, "card_testing", (0.07, 1.5))
    n, n_ep = len(ts), len(starts)
    site = _choose(rng, n_ep, {"online_retail": 0.6, "gift_cards": 0.25, "entertainment": 0.15})
    mcc = np.where(rng.random(n) < 0.85, site[ep], _MCC["online_retail"])
    typical = np.array([0.5, 1.0, 1.0, 1.99, 2.0, 2.5, 3.0, 4.99, 5.0])
    amount = np.where(rng.random(n) < 0.6, rng.uniform(0.5, 5.0, n), rng.choice(typical, n))
    return {
        "ts": ts, "card": rng.integers(0, len(pop.ids), n_ep)[ep], "amount": amount, "mcc": mcc,
        "distance": _far_km(rng, n_ep, 900.0, 1.2, 5.0, 15_000.0)[ep],
        "mismatch": (rng.random(n_ep) < 0.35)[ep],
    }  # fmt: skip


def _account_takeover(rng, pop, starts: np.ndarray) -> dict[str, np.ndarray]:
    ts, ep = _episodes(rng, starts, "account_takeover", (2.0, 20.0))
    n, n_ep = len(ts), len(starts)
    mcc = _choose(rng, n, {"electronics": 0.5, "jewelry": 0.2, "online_retail": 0.2,
                           "gift_cards": 0.10})  # fmt: skip
    median = np.select(
        [mcc == _MCC["electronics"], mcc == _MCC["jewelry"]], [650.0, 1100.0], default=450.0
    )
    amount = _lognormal(rng, median, np.full(n, 0.45))
    gift = mcc == _MCC["gift_cards"]
    amount[gift] = rng.choice(_CASHOUT_GIFT, gift.sum())
    where = _far_km(rng, n_ep, 600.0, 0.8, 40.0, 5000.0)[ep]
    distance = where * np.exp(0.1 * rng.standard_normal(n))
    return {
        "ts": ts, "card": rng.integers(0, len(pop.ids), n_ep)[ep], "amount": amount, "mcc": mcc,
        "distance": distance, "mismatch": (rng.random(n_ep) < 0.25)[ep],
    }  # fmt: skip


def _cash_out(rng, pop, starts: np.ndarray) -> dict[str, np.ndarray]:
    ts, ep = _episodes(rng, starts, "cash_out", (3.0, 25.0))
    n, n_ep = len(ts), len(starts)
    mcc = _choose(rng, n, {"money_transfer": 0.55, "gift_cards": 0.45})
    amount = _lognormal(rng, np.full(n, 850.0), np.full(n, 0.45))
    amount = np.where(rng.random(n) < 0.6, np.round(amount, -1), amount)
    gift = mcc == _MCC["gift_cards"]
    amount[gift] = rng.choice(_CASHOUT_GIFT, gift.sum(), p=[0.3, 0.3, 0.1, 0.3])
    return {
        "ts": ts, "card": rng.integers(0, len(pop.ids), n_ep)[ep], "amount": amount, "mcc": mcc,
        "distance": _far_km(rng, n_ep, 400.0, 1.2, 2.0, 12_000.0)[ep],
        "mismatch": (rng.random(n_ep) < 0.2)[ep],
    }  # fmt: skip


def _impossible_travel(rng, normal: dict[str, np.ndarray], n_ep: int) -> dict[str, np.ndarray]:
    """Far-away purchases on a card minutes after one of its purchases near home."""
    local = np.flatnonzero((normal["distance"] < 30) & (normal["mismatch"] == 0))
    anchors = rng.choice(local, min(n_ep, len(local)), replace=False) if len(local) else local
    starts = normal["ts"][anchors] + (rng.uniform(8, 75, len(anchors)) * MINUTE_MS).astype(np.int64)
    ts, ep = _episodes(rng, starts, "impossible_travel", (5.0, 30.0))
    n = len(ts)
    mcc = _choose(rng, n, {"electronics": 0.35, "jewelry": 0.15, "restaurant": 0.1,
                           "travel": 0.1, "entertainment": 0.1, "money_transfer": 0.1,
                           "grocery": 0.1})  # fmt: skip
    where = _far_km(rng, len(anchors), 4000.0, 0.5, 2000.0, 15_000.0)
    return {
        "ts": ts, "card": normal["card"][anchors][ep],
        "amount": _lognormal(rng, 2.5 * _MEDIAN[mcc], _SIGMA[mcc]), "mcc": mcc,
        "distance": where[ep] * np.exp(0.05 * rng.standard_normal(n)), "mismatch": np.ones(n),
    }  # fmt: skip


def _place(rng, n: int, hours: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """``n`` times in [t0, t1) drawn with density proportional to ``hours[hour(t)]``."""
    found = np.zeros(0, dtype=np.int64)
    while len(found) < n:
        draws = rng.integers(t0, t1, 4 * n)
        kept = draws[rng.random(4 * n) * hours.max() < hours[_hour(draws)]]
        found = np.concatenate([found, kept])
    return np.sort(found[:n])


def _fraud_chunk(rng, pop, normal, credit: dict[str, float], fraud_rate: float, t0: int, t1: int):
    """Fraud episodes for one chunk, as many as the rate asks.

    ``credit`` carries fractional expected episodes from chunk to chunk, so the
    fraud share holds closely even over short streams.
    """
    odds = fraud_rate / (1.0 - fraud_rate)
    normal_per_ms = len(pop.ids) * _VISITS_PER_CARD_DAY * _MEAN_SESSION / DAY_MS
    parts = []
    for code, pattern in enumerate(FRAUD_PATTERNS, start=1):
        per_event = odds * _PATTERN_SHARE[pattern] / (sum(_PATTERN_SIZE[pattern]) / 2)
        if pattern == "impossible_travel":
            credit[pattern] += per_event * len(normal["ts"])
        else:
            hours = _PATTERN_HOURS[pattern] / _PATTERN_HOURS[pattern].mean()
            share = hours[_hour(np.arange(t0, t1, 5 * MINUTE_MS))].mean()
            credit[pattern] += per_event * normal_per_ms * (t1 - t0) * share
        n_episodes = int(credit[pattern])
        credit[pattern] -= n_episodes
        if pattern == "impossible_travel":
            part = _impossible_travel(rng, normal, n_episodes)
        else:
            make = _MAKERS[pattern]
            part = make(rng, pop, _place(rng, n_episodes, hours, t0, t1))
        part["pattern"] = np.full(len(part["ts"]), code, dtype=np.int8)
        parts.append(part)
    return parts


_MAKERS = {
    "card_testing": _card_testing, "account_takeover": _account_takeover, "cash_out": _cash_out,
}  # fmt: skip


# -- the stream ----------------------------------------------------------------


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
