"""``streamgmm check-config``: validate a configuration file before deploying it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

from streamgmm.service.config import ConfigError, dump_config, load_config
from streamgmm.service.schema import Config

EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check-config`` sub-command."""
    parser = subparsers.add_parser(
        "check-config",
        help="validate a configuration file and print it resolved, secrets redacted",
        description="Validate a YAML configuration (with STREAMGMM__* environment overrides "
        "applied). Prints OK and the resolved configuration, secrets redacted; or every "
        f"problem found and exits with status {EXIT_INVALID}.",
    )
    parser.add_argument(
        "file", nargs="?", default=None, help="the YAML file (default: the embedded default)"
    )
    parser.add_argument(
        "--schema", action="store_true", help="list every key with its type, default and help"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check ``args.file``; 0 if valid, 2 if not."""
    if args.schema:
        sys.stdout.write(schema_text())
        return 0
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    print("OK")
    sys.stdout.write(dump_config(config))
    return 0


def schema_text(cls: type = Config, prefix: str = "") -> str:
    """Every key of the schema, one per line: path, type, default and help."""
    lines = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path = f"{prefix}{field.name}"
        hint = hints[field.name]
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if typing.get_origin(hint) is list and inner:
            path += "[]"
        target = hint if dataclasses.is_dataclass(hint) else (inner[0] if inner else None)
        if target is not None:
            lines.append(f"{path}: {field.metadata.get('help', '')}\n")
            lines.append(schema_text(target, path + "."))
            continue
        if field.default is not dataclasses.MISSING:
            default = f"default {field.default!r}"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"default {field.default_factory()!r}"
        else:
            default = "required"
        kind = _type_name(hint)
        lines.append(f"{path} ({kind}; {default}): {field.metadata.get('help', '')}\n")
    return "".join(lines)


def _type_name(hint: typing.Any) -> str:
    """A type hint as YAML users read it: ``int``, ``'a' | 'b'``, ``list[str] | None``."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))
