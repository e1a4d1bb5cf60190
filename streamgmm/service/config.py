"""Load, validate and print the daemon's YAML configuration.

The schema is declared once, as frozen dataclasses in
``streamgmm.service.schema``; one generic validator (``validate.py``) walks
those declarations (type hints, per-field bounds in the field metadata, each
section's ``check()`` for cross-field rules) and reports every problem at
once, each naming the dotted key, the offending value and what was expected::

    detector.contamination: expected a number in (0, 0.5), got 2
    detector.n_componets: unknown key; did you mean 'n_components'?

Why not pydantic: the schema is small, the validator (environment overrides
included) is under 300 lines of plain Python, and a daemon that runs in
containers is better off without a large runtime dependency (and its
major-version migrations) for it. The
dataclasses stay plain, frozen and importable anywhere.

Environment overrides: ``STREAMGMM__SECTION__KEY=value`` sets ``section.key``
(double underscores separate levels; names match the schema case-insensitively).
The value is read with YAML scalar and flow rules (``500``, ``true``,
``[a, b]``), except for a key whose type is a string, which takes the text
verbatim so that a password such as ``123456`` or ``p#ss`` stays a string.
An error caused by an override names the variable.

The YAML files shipped in the package (``streamgmm/config/*.yaml``) are the
single source of the embedded default and the examples; ``config/*.yaml`` at
the repository root are copies for operators and deploy files, kept
identical by a test (plain copies, not symlinks: symlinks break in Docker
build contexts that copy only ``config/``, in zip archives and on Windows
checkouts).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from streamgmm.service.schema import Config
from streamgmm.service.validate import INVALID, Validator, yaml_error
from streamgmm.stream.features import config_fingerprint
from streamgmm.stream.redact import redact_config

__all__ = [
    "Config",
    "ConfigError",
    "config_fingerprint",
    "default_config_text",
    "dump_config",
    "from_dict",
    "load_config",
]


class ConfigError(Exception):
    """An invalid configuration; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str], origin: str | None = None) -> None:
        self.problems = list(problems)
        self.origin = origin
        where = f" in {origin}" if origin else ""
        count = len(self.problems)
        header = f"{count} configuration problem{'s' if count != 1 else ''}{where}:"
        super().__init__("\n  ".join([header, *self.problems]))


# ------------------------------------------------------------------------- loading


def default_config_text(name: str = "default.yaml") -> str:
    """Text of a YAML file shipped in the package (``default``, ``kafka``, ``fraud``)."""
    return resources.files("streamgmm").joinpath("config", name).read_text(encoding="utf-8")


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment and validate a configuration file.

    Parameters
    ----------
    path : str, Path or None
        The YAML file; None loads the embedded default (the synthetic stream).
    env : mapping, optional
        Environment variables to take ``STREAMGMM__...`` overrides from;
        default ``os.environ``. Pass ``{}`` to ignore the environment.

    Raises
    ------
    ConfigError
        With every problem found.
    """
    env = os.environ if env is None else env
    origin = "<embedded default.yaml>" if path is None else str(path)
    try:
        text = default_config_text() if path is None else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{origin}: cannot read: {exc.strerror or exc}"], origin) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{origin}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                           f"offset {exc.start}); save the file as UTF-8"], origin) from exc
    data, problems = _parse_yaml(text)
    if data is INVALID:
        raise ConfigError(problems, origin)
    return _validate(Config, data, env, origin, problems)


def from_dict(
    cls: type, data: Any, *, env: Mapping[str, str] | None = None, origin: str | None = None
) -> Any:
    """Validate plain data (as YAML gives it) into an instance of a schema dataclass.

    ``from_dict(Config, doc)`` checks a whole document, ``from_dict(FeaturesConfig,
    {...})`` one section; ``env`` overrides are read relative to ``cls``.

    Raises
    ------
    ConfigError
        With every problem found.
    """
    return _validate(cls, data, env, origin, [])


def _validate(
    cls: type, data: Any, env: Mapping[str, str] | None, origin: str | None, problems: list[str]
) -> Any:
    validator = Validator()
    validator.problems.extend(problems)
    if env:
        data = validator.apply_env(data, env, cls)
    value = validator.convert(data, cls, "", {})
    if validator.problems or value is INVALID:
        raise ConfigError(validator.problems, origin)
    return value


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, recording duplicate keys (plain safe_load keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<' may be overridden by design
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                line = key_node.start_mark.line + 1
                self.duplicates.append(f"line {line}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> tuple[Any, list[str]]:
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        return INVALID, [f"invalid YAML: {yaml_error(exc)}"]
    finally:
        loader.dispose()
    return data, loader.duplicates


# ------------------------------------------------------------------- output, hashing


def dump_config(config: Config) -> str:
    """The resolved configuration as YAML, secrets redacted (for logs and check-config)."""
    return yaml.safe_dump(redact_config(config), sort_keys=False, default_flow_style=False)
