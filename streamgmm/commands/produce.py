"""``streamgmm produce``: send the synthetic (or a recorded) stream to a Kafka topic at a rate.

For demos and benchmarks: each event is one JSON record keyed by its
``card_id`` (so one card's events stay in order on one partition). Every
send is checked through its future; the command exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from streamgmm.commands.argtypes import non_negative_float, non_negative_int

EXIT_FAILED = 1
_PROGRESS_S = 5.0
_CHECK_EVERY = 1000  # sends between checks of the pending futures


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``produce`` sub-command to the ``streamgmm`` parser."""
    parser = subparsers.add_parser(
        "produce",
        help="send the synthetic card stream (or a JSON-lines file) to a Kafka topic",
        description=(
            "Send events to a Kafka topic at a chosen rate, keyed by card_id: the built-in "
            "synthetic card-transaction stream (with its is_fraud / fraud_pattern labels), "
            "or the JSON lines of --file. Progress goes to stderr."
        ),
    )
    parser.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT",
                        help="broker address(es), comma-separated")
    parser.add_argument("--topic", required=True, help="topic to write to")
    parser.add_argument("--rate", type=non_negative_float, default=1000.0, metavar="EPS",
                        help="events per second (default 1000; 0 = as fast as possible)")
    parser.add_argument("-n", "--events", type=non_negative_int, default=0,
                        help="events to send (default 0: the whole file, or without end)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    parser.add_argument("--fraud-rate", type=float, default=0.01,
                        help="share of fraud in the synthetic stream (default 0.01)")
    parser.add_argument("--file", default=None, metavar="JSONL",
                        help="replay this JSON-lines file instead of generating events")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Send the events; 0 when every send was acknowledged, 1 otherwise."""
    from streamgmm.stream.kafka_io import close_producer

    producer = _connect(args.bootstrap_servers)
    sent, failed = 0, 0
    try:
        sent, failed = _send_all(producer, args)
    finally:
        close_producer(producer, 10.0)
    print(f"produce: {sent} events sent to {args.topic}, {failed} failed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def _connect(servers: str) -> Any:
    """A producer, retried with backoff while no broker answers (e.g. Kafka still starting)."""
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    from streamgmm.stream.kafka_io import make_producer

    delay = 1.0
    brokers = [s.strip() for s in servers.split(",") if s.strip()]
    while True:
        try:
            return make_producer(brokers)
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            print(f"produce: no broker at {servers} ({type(exc).__name__}); retrying in "
                  f"{delay:.0f}s", file=sys.stderr)
            time.sleep(delay)
            delay = min(2 * delay, 10.0)


def _events(args: argparse.Namespace) -> Iterator[bytes]:
    """The JSON payloads to send."""
    if args.file:
        with open(args.file, "rb") as handle:
            lines = (line.rstrip(b"\r\n") for line in handle)
            yield from itertools.islice((ln for ln in lines if ln.strip()), args.events or None)
        return
    from streamgmm.synth import generate_events

    encode = msgspec.json.Encoder().encode
    for event in generate_events(args.events or None, seed=args.seed,
                                 fraud_rate=args.fraud_rate):
        yield encode(event)


def _key(value: bytes) -> bytes | None:
    try:
        card = json.loads(value).get("card_id")
    except (ValueError, AttributeError):
        return None  # a bad line is sent as it is: the daemon dead-letters it
    return None if card is None else str(card).encode()


def _send_all(producer: Any, args: argparse.Namespace) -> tuple[int, int]:
    start = last_report = time.monotonic()
    pending: list[Any] = []
    sent = failed = 0
    for i, value in enumerate(_events(args)):
        if args.rate > 0:
            ahead = start + i / args.rate - time.monotonic()
            if ahead > 0.002:
                time.sleep(ahead)
        pending.append(producer.send(args.topic, value=value, key=_key(value)))
        sent += 1
        if len(pending) >= _CHECK_EVERY:
            pending, n_failed = _check(pending)
            failed += n_failed
        now = time.monotonic()
        if now - last_report >= _PROGRESS_S:
            print(f"produce: {sent} sent ({sent / (now - start):.0f}/s), {failed} failed",
                  file=sys.stderr)
            last_report = now
    producer.flush(timeout=30)
    _, n_failed = _check(pending, final=True)
    return sent, failed + n_failed


def _check(futures: list[Any], final: bool = False) -> tuple[list[Any], int]:
    """Futures still pending, and how many of the finished ones failed."""
    waiting, failed = [], 0
    for future in futures:
        if not future.is_done:
            if final:
                failed += 1
            else:
                waiting.append(future)
        elif future.failed():
            failed += 1
            if failed == 1:
                print(f"produce: a send failed: {future.exception}", file=sys.stderr)
    return waiting, failed
