"""Normal spending: visits and sessions, trips, merchant categories and amounts per card."""

from __future__ import annotations

import numpy as np

from streamgmm.synth._tables import (
    _BUSY_P,
    _BUSY_SHARE,
    _DIURNAL,
    _GIFT_DENOMINATIONS,
    _MCC,
    _MEDIAN,
    _MICRO_SHARE,
    _ONLINE,
    _SESSION_P,
    _SHARE,
    _SIGMA,
    _TRIP_START_P,
    _VISITS_PER_CARD_DAY,
    _WEEKLY,
    DAY_MS,
    MINUTE_MS,
    _far_km,
    _hour,
    _lognormal,
    _normal_weight,
    _poisson_times,
    _Population,
    _round_to,
    _weekday,
)


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
