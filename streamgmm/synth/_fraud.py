"""The four fraud patterns, placed in time at the configured rate."""

from __future__ import annotations

import numpy as np

from streamgmm.synth._tables import (
    _CASHOUT_GIFT,
    _MCC,
    _MEAN_SESSION,
    _MEDIAN,
    _PATTERN_HOURS,
    _PATTERN_SHARE,
    _PATTERN_SIZE,
    _SIGMA,
    _VISITS_PER_CARD_DAY,
    DAY_MS,
    FRAUD_PATTERNS,
    MINUTE_MS,
    _choose,
    _far_km,
    _hour,
    _lognormal,
)


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
