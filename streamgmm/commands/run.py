"""``streamgmm run``: the long-running daemon (the embedded synthetic stream by default)."""

from __future__ import annotations

import argparse
import sys

from streamgmm.service.config import ConfigError, load_config

EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` sub-command to the ``streamgmm`` parser."""
    parser = subparsers.add_parser(
        "run",
        help="run the detector daemon on a configured source",
        description=(
            "Run the consumer loop: read events from the configured source (Kafka, a file, "
            "stdin or the built-in synthetic card stream), score them, publish alerts and "
            "dead letters, commit offsets and write checkpoints, until SIGTERM or SIGINT "
            "(or the end of a file, stdin or the generated stream). Without --config it "
            "runs the embedded default: the synthetic stream, alerts on stdout, and a "
            "precision/recall summary at the end. STREAMGMM__SECTION__KEY=value "
            "environment variables override the configuration."
        ),
    )
    parser.add_argument("--config", "-c", default=None, metavar="FILE",
                        help="YAML configuration (default: the embedded default)")
    parser.add_argument(
        "--alerts-format", choices=("auto", "pretty", "json"), default="auto",
        help="alerts on stdout: one readable line each (pretty), JSON lines (json), or "
        "pretty on a terminal and JSON lines otherwise (auto, the default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the configuration and run the daemon; 2 for an invalid configuration."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    from streamgmm.service.daemon import run_daemon

    return run_daemon(config, alerts_format=args.alerts_format)
