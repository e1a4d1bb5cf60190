"""The ``streamgmm`` command: one sub-command per module that owns the work."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module named here exposes ``register(subparsers)``, which adds its
# sub-command(s) and sets ``func`` (taking the parsed args, returning an exit code).
COMMAND_MODULES = [
    "streamgmm.commands.fit_score",
    "streamgmm.commands.check_config",
    "streamgmm.commands.generate",
    "streamgmm.commands.run",
    "streamgmm.commands.produce",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgmm",
        description="Streaming anomaly detection on Gaussian mixtures.",
    )
    from streamgmm import __version__

    parser.add_argument("--version", action="version", version=f"streamgmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (e.g. piped into ``head``): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
