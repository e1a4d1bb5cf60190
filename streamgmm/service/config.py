"""Load, validate and print the daemon's YAML configuration.

The schema is declared once, as frozen dataclasses in
``streamgmm.service.schema``; one generic validator here walks those
declarations (type hints, per-field bounds in the field metadata, each
section's ``check()`` for cross-field rules) and reports every problem at
once, each naming the dotted key, the offending value and what was expected::

    detector.contamination: expected a number in (0, 0.5), got 2
    detector.n_componets: unknown key; did you mean 'n_components'?

Why not pydantic: the schema is small, the validator (environment overrides
included) is about 250 lines of plain Python, and a daemon that runs in
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

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from streamgmm.service.schema import SECRET_WORDS, Config, FeaturesConfig

ENV_PREFIX = "STREAMGMM__"
REDACTED = "***"
_INVALID = object()  # a value that failed validation (its problem is already recorded)

__all__ = [
    "Config",
    "ConfigError",
    "config_fingerprint",
    "default_config_text",
    "dump_config",
    "from_dict",
    "load_config",
    "redacted",
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
    if data is _INVALID:
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
    validator = _Validator()
    validator.problems.extend(problems)
    if env:
        data = validator.apply_env(data, env, cls)
    value = validator.convert(data, cls, "", {})
    if validator.problems or value is _INVALID:
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
        return _INVALID, [f"invalid YAML: {_yaml_error(exc)}"]
    finally:
        loader.dispose()
    return data, loader.duplicates


def _yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


# ----------------------------------------------------------------------- validator


class _Validator:
    """Converts YAML data to schema dataclasses, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.env_paths: dict[str, str] = {}  # dotted path -> the variable that set it

    def problem(self, path: str, message: str) -> None:
        source = next(
            (
                var
                for p, var in self.env_paths.items()
                if path == p or path.startswith(p + ".") or path.startswith(p + "[")
            ),
            None,
        )
        where = f"{path} (from {source})" if source else path
        self.problems.append(f"{where}: {message}" if where else message)

    def convert(self, value: Any, hint: Any, path: str, meta: Mapping[str, Any]) -> Any:
        """``value`` checked against ``hint`` and the bounds in ``meta``, or ``_INVALID``."""
        origin = typing.get_origin(hint)
        if origin in (Union, types.UnionType):
            return self._union(value, typing.get_args(hint), path, meta)
        if dataclasses.is_dataclass(hint):
            return self._dataclass(hint, value, path)
        if origin is list:
            return self._list(value, typing.get_args(hint)[0], path, meta)
        if origin is dict:
            return self._dict(value, typing.get_args(hint)[1], path)
        ok = _scalar_ok(value, hint)
        if not ok:
            self.problem(path, self._expected(hint, value, meta))
            return _INVALID
        if hint in (int, float) and not _in_bounds(value, meta):
            self.problem(path, self._expected(hint, value, meta))
            return _INVALID
        return float(value) if hint is float else value

    def _expected(self, hint: Any, value: Any, meta: Mapping[str, Any]) -> str:
        message = f"expected {_describe(hint)}{_bounds_text(meta)}, got {_render(value, meta)}"
        if typing.get_origin(hint) is Literal and isinstance(value, str):
            close = difflib.get_close_matches(value, [str(a) for a in typing.get_args(hint)], 1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        return message

    def _union(self, value: Any, args: tuple, path: str, meta: Mapping[str, Any]) -> Any:
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:  # Optional[X]: X's own, more precise message
            return self.convert(value, options[0], path, meta)
        for option in options:
            trial = _Validator()
            result = trial.convert(value, option, path, meta)
            if result is not _INVALID and not trial.problems:
                return result
        # Bounds belong to the numeric options: "an integer >= 1 or one of 'auto'".
        expected = " or ".join(
            _describe(a) + (_bounds_text(meta) if a in (int, float) else "") for a in options
        )
        self.problem(path, f"expected {expected}, got {_render(value, meta)}")
        return _INVALID

    def _list(self, value: Any, item: Any, path: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_render(value, meta)}")
            return _INVALID
        if len(value) < meta.get("min_items", 0):
            self.problem(path, f"expected at least {meta['min_items']} item(s), got none")
            return _INVALID
        items = [self.convert(v, item, f"{path}[{i}]", meta) for i, v in enumerate(value)]
        return _INVALID if any(v is _INVALID for v in items) else items

    def _dict(self, value: Any, item: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_render(value, {})}")
            return _INVALID
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                self.problem(path, f"expected string keys, got {_render(key, {})}")
                out[key] = _INVALID
                continue
            out[key] = self.convert(v, item, _join(path, key), {"secret": _secret_key(key)})
        return _INVALID if any(v is _INVALID for v in out.values()) else out

    def _dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:  # an empty section in YAML ("alerts:") means all defaults
            value = {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_render(value, {})}")
            return _INVALID
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = _hints(cls)
        for key in value:
            if key not in fields:
                suggestion = _suggest(str(key), list(fields))
                self.problem(_join(path, str(key)), "unknown key" + suggestion)
        kwargs, ok = {}, True
        for name, field in fields.items():
            if name in value:
                kwargs[name] = self.convert(
                    value[name], hints[name], _join(path, name), field.metadata
                )
                ok = ok and kwargs[name] is not _INVALID
            elif _required(field):
                self.problem(
                    _join(path, name), f"missing required key (expected {_describe(hints[name])})"
                )
                ok = False
        if not ok:
            return _INVALID
        instance = cls(**kwargs)
        for key, message in getattr(instance, "check", list)():
            self.problem(_join(path, key), message)
        return instance

    # ----------------------------------------------------------- environment overrides

    def apply_env(self, data: Any, env: Mapping[str, str], root: type = Config) -> Any:
        """``data`` (a ``root`` document) with every ``STREAMGMM__...`` variable applied."""
        data = {} if data is None else copy.deepcopy(data)
        if not isinstance(data, dict):
            return data  # the validator reports the document's type
        for var in sorted(env):
            if var.upper().startswith(ENV_PREFIX):
                self._apply_one(data, var, env[var], root)
        return data

    def _apply_one(self, data: dict, var: str, text: str, root: type) -> None:
        keys, hint = [], root
        for part in var[len(ENV_PREFIX) :].split("__"):
            hint = _unwrap_optional(hint)
            where = ".".join(keys) or "the top level"
            if typing.get_origin(hint) is dict and part:
                keys.append(part.lower())
                hint = typing.get_args(hint)[1]
            elif dataclasses.is_dataclass(hint):
                names = {f.name.lower(): f.name for f in dataclasses.fields(hint)}
                if part.lower() not in names:
                    suggestion = _suggest(part.lower(), list(names.values()))
                    self.problems.append(
                        f"{var}: unknown key {part.lower()!r} in {where}" + suggestion
                    )
                    return
                keys.append(names[part.lower()])
                hint = _hints(hint)[keys[-1]]
            else:
                self.problems.append(f"{var}: {where} has no sub-keys (set the whole value)")
                return
        hint = _unwrap_optional(hint)
        if hint is str:
            value = text
        else:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                self.problems.append(f"{var}: not a YAML value: {_yaml_error(exc)}")
                return
            if typing.get_origin(hint) is list and isinstance(value, str):
                value = [item.strip() for item in value.split(",") if item.strip()]
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
        self.env_paths[".".join(keys)] = var


# ------------------------------------------------------------------------- helpers


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(valid)}"


def _scalar_ok(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) is Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(hint))
    if isinstance(value, bool):  # YAML's true is not the integer 1
        return hint is bool or hint is Any
    if hint is float:
        return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
    return hint is Any or isinstance(value, hint)


def _in_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value <= low if meta.get("exclusive_min") else value < low):
        return False
    return not (high is not None and (value >= high if meta.get("exclusive_max") else value > high))


def _bounds_text(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        left = "(" if meta.get("exclusive_min") else "["
        right = ")" if meta.get("exclusive_max") else "]"
        return f" in {left}{low}, {high}{right}"
    if low is not None:
        return f" {'>' if meta.get('exclusive_min') else '>='} {low}"
    if high is not None:
        return f" {'<' if meta.get('exclusive_max') else '<='} {high}"
    return ""


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        text = " or ".join(_describe(a) for a in args if a is not type(None))
        return text + (" or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {_describe(typing.get_args(hint)[0]).split(' ', 1)[-1]}s"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, "a mapping")


def _render(value: Any, meta: Mapping[str, Any]) -> str:
    if meta.get("secret") and value is not None:
        return REDACTED
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _secret_key(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


# ------------------------------------------------------------------- output, hashing


def redacted(config: Any) -> Any:
    """A schema dataclass as plain data, secret values replaced by ``'***'``."""
    if dataclasses.is_dataclass(config):
        out = {}
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            secret = field.metadata.get("secret") and value is not None
            out[field.name] = REDACTED if secret else redacted(value)
        return out
    if isinstance(config, dict):
        return {k: REDACTED if _secret_key(k) else redacted(v) for k, v in config.items()}
    if isinstance(config, list):
        return [redacted(v) for v in config]
    return config


def dump_config(config: Config) -> str:
    """The resolved configuration as YAML, secrets redacted (for logs and check-config)."""
    return yaml.safe_dump(redacted(config), sort_keys=False, default_flow_style=False)


def config_fingerprint(features: FeaturesConfig) -> str:
    """A stable hash of what a feature vector means: the fields, paths and transforms.

    Checkpoints and model files store it and refuse to load under a config whose
    fingerprint differs (the columns would mean something else). Settings that do
    not change the vector (key, event time, message size limit) are left out, so
    changing them keeps checkpoints usable.
    """
    params = {"scale": ("scale",), "cyclic": ("period",), "onehot": ("vocabulary",)}
    canonical = []
    for field in features.fields:
        entry = {
            "name": field.name,
            "path": field.source_path,
            "transform": field.transform,
            "default": field.default,
        }
        for key in params.get(field.transform, ()):
            value = getattr(field, key)
            entry[key] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        canonical.append(entry)
    text = json.dumps(["streamgmm-features/1", canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
