"""The ``streamgmm`` command: one sub-command per module that owns the work."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Commands that process a stream in micro-batches. They run with one BLAS thread
# per Python thread: a batch of a few hundred events gains nothing from BLAS
# threads, the background refit thread takes the other core, and several
# spinning BLAS thread pools on few cores made small products up to 100x slower.
# Setting OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS overrides it.
_STREAMING_COMMANDS = {"run", "produce"}
_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Each module named here exposes ``register(subparsers)``, which adds its
# sub-command(s) and sets ``func`` (taking the parsed args, returning an exit code).
COMMAND_MODULES = [
    "streamgmm.commands.fit_score",
    "streamgmm.commands.check_config",
    "streamgmm.commands.generate",
    "streamgmm.commands.run",
    "streamgmm.commands.produce",
    "streamgmm.commands.plot",
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


def _limit_blas_threads(argv: list[str]) -> None:
    """One BLAS thread for streaming commands, unless the user chose otherwise.

    Must run before numpy is first imported, which is why the command modules
    are imported only after it.
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in _STREAMING_COMMANDS and "numpy" not in sys.modules and not any(
        v in os.environ for v in _BLAS_THREAD_VARS
    ):
        for var in _BLAS_THREAD_VARS:
            os.environ[var] = "1"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    _limit_blas_threads(args_list)
    if next((a for a in args_list if not a.startswith("-")), None) == "run":
        # Before the heavy imports: SIGTERM during start-up still shuts down cleanly.
        from streamgmm.service import signals

        signals.install()
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
