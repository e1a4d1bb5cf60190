"""``streamgmm generate``: write the synthetic card-transaction stream as JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from streamgmm.commands.argtypes import fraud_rate, non_negative_int
from streamgmm.synth import generate_events


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` sub-command to the ``streamgmm`` parser."""
    parser = subparsers.add_parser(
        "generate",
        help="write synthetic card transactions with labelled fraud as JSON lines",
        description=(
            "Write a synthetic card-transaction stream (JSON lines, one event per line) "
            "with four labelled fraud patterns: card_testing, account_takeover, "
            "impossible_travel, cash_out. The labels is_fraud and fraud_pattern are for "
            "evaluation only; a detector must not use them."
        ),
    )
    parser.add_argument("-n", "--events", type=non_negative_int, default=10_000,
                        help="number of events (default 10000; 0 streams without end)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--fraud-rate", type=fraud_rate, default=0.008,
                        help="expected share of fraudulent events (default 0.008)")
    parser.add_argument("--cards", type=int, default=1000,
                        help="size of the card population (default 1000)")
    parser.add_argument("-o", "--output", default="-",
                        help="output file, or - for standard output (default)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the events and return the exit code."""
    n_events = args.events or None
    if args.output == "-":
        return _write(sys.stdout, n_events, args)
    with open(args.output, "w", encoding="utf-8") as out:
        return _write(out, n_events, args)


def _write(out: TextIO, n_events: int | None, args: argparse.Namespace) -> int:
    events = generate_events(
        n_events, seed=args.seed, fraud_rate=args.fraud_rate, n_cards=args.cards
    )
    try:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()
    except BrokenPipeError:
        # `streamgmm generate -n 0 | head` ends with a closed pipe: not an error.
        # Point stdout at devnull so the interpreter's final flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
