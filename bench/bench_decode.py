"""How fast ``Decoder.decode`` turns JSON records into features, next to ``json.loads``.

Prints events per second of

* ``json.loads`` in a plain loop (parsing only: no checks, no features), and
* ``Decoder.decode`` (parse, type checks, dotted paths, transforms, the
  feature matrix) on the same records,

and the ratio decode / json.loads. Run::

    .venv/bin/python bench/bench_decode.py [--events 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from streamgmm.service.config import from_dict, load_config
from streamgmm.service.schema import FeaturesConfig
from streamgmm.stream.decode import Decoder
from streamgmm.stream.records import Record

SMALL_FEATURES = {
    "key": "id",
    "fields": [
        {"name": "amount", "transform": "log1p"},
        {"name": "hour", "transform": "cyclic", "period": 24},
        {"name": "mcc", "transform": "onehot", "vocabulary": ["grocery", "fuel", "travel"]},
        {"name": "distance_km", "transform": "log1p"},
    ],
}
MCC = ["grocery", "fuel", "travel", "restaurant", "electronics"]


def small_events(n: int, rng: np.random.Generator) -> list[bytes]:
    """About 100-byte events for SMALL_FEATURES."""
    amount = rng.lognormal(3, 1, n).round(2)
    hour = rng.integers(0, 24, n)
    mcc = rng.integers(0, len(MCC), n)
    dist = rng.exponential(5, n).round(3)
    return [
        json.dumps(
            {
                "id": f"txn-{i:08d}",
                "amount": float(amount[i]),
                "hour": int(hour[i]),
                "mcc": MCC[mcc[i]],
                "distance_km": float(dist[i]),
                "channel": "pos",
            }
        ).encode()
        for i in range(n)
    ]


def card_events(n: int, rng: np.random.Generator) -> list[bytes]:
    """Events shaped like the synthetic card stream (the embedded default features)."""
    return [
        json.dumps(
            {
                "txn_id": f"t{i}",
                "card_id": f"c{i % 1000}",
                "ts": 1_700_000_000_000 + i,
                "amount": float(rng.lognormal(3, 1)),
                "hour": i % 24,
                "weekday": i % 7,
                "mcc": MCC[i % len(MCC)],
                "distance_km": float(rng.exponential(5)),
                "txns_last_hour": int(rng.poisson(1)),
                "amount_last_24h": float(rng.lognormal(4, 1)),
                "country_mismatch": int(i % 50 == 0),
                "is_fraud": 0,
            }
        ).encode()
        for i in range(n)
    ]


def best_rate(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def bench(
    name: str, features: FeaturesConfig, values: list[bytes], repeat: int, batch: int
) -> None:
    records = [Record("bench", 0, i, None, v) for i, v in enumerate(values)]
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    # The same stream with 1 % bad records (a string amount): those batches take the
    # record-by-record path.
    spoiled = [
        r._replace(value=b'{"amount": "12,50"}') if i % 100 == 7 else r
        for i, r in enumerate(records)
    ]
    spoiled_batches = [spoiled[i : i + batch] for i in range(0, len(spoiled), batch)]
    decoder = Decoder(features)
    assert sum(len(decoder.decode(b).ok) for b in batches) == len(records)
    loads = json.loads
    baseline = best_rate(lambda: [loads(v) for v in values], len(values), repeat)
    ours = best_rate(lambda: [decoder.decode(b) for b in batches], len(values), repeat)
    mixed = best_rate(lambda: [decoder.decode(b) for b in spoiled_batches], len(values), repeat)
    size = sum(map(len, values)) / len(values)
    print(
        f"{name}: {len(values)} events of {size:.0f} bytes, {decoder.n_features} features, "
        f"batches of {batch}"
    )
    print(f"  json.loads loop         : {baseline:10,.0f} events/s (parse only)")
    print(
        f"  Decoder.decode          : {ours:10,.0f} events/s (parse, check, transform)"
        f"  ratio {ours / baseline:.2f}x"
    )
    print(f"  Decoder.decode, 1% bad  : {mixed:10,.0f} events/s  ratio {mixed / baseline:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="records per decode call")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    small = from_dict(FeaturesConfig, SMALL_FEATURES)
    bench("small", small, small_events(args.events, rng), args.repeat, args.batch)
    card = load_config(None, env={}).features
    bench(
        "card stream (default.yaml)", card, card_events(args.events, rng), args.repeat, args.batch
    )


if __name__ == "__main__":
    main()
