"""The synthetic stream's tables and common draws.

Merchant categories, daily and weekly rhythms, the shapes of the fraud
patterns, the card population, and the small random helpers every part
draws with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
