"""The validator: YAML data against the schema's declarations, every problem at once.

It walks the frozen dataclasses of ``streamgmm.service.schema`` (type hints,
per-field bounds in the field metadata, each section's ``check()`` for
cross-field rules) and reports every problem, each naming the dotted key, the
offending value and what was expected; ``load_config`` and ``from_dict``
(``config.py``) call it. Environment overrides (``STREAMGMM__SECTION__KEY``)
are applied here too, and a problem they cause names the variable.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import yaml

from streamgmm.model.constraints import Interval
from streamgmm.service.schema import Config
from streamgmm.stream.redact import REDACTED, is_secret

ENV_PREFIX = "STREAMGMM__"
INVALID = object()  # a value that failed validation (its problem is already recorded)


def yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


class Validator:
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
        """``value`` checked against ``hint`` and the bounds in ``meta``, or ``INVALID``."""
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
            return INVALID
        if hint in (int, float) and not _in_bounds(value, meta):
            self.problem(path, self._expected(hint, value, meta))
            return INVALID
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
            trial = Validator()
            result = trial.convert(value, option, path, meta)
            if result is not INVALID and not trial.problems:
                return result
        # Bounds belong to the numeric options: "an integer >= 1 or one of 'auto'".
        expected = " or ".join(
            _describe(a) + (_bounds_text(meta) if a in (int, float) else "") for a in options
        )
        self.problem(path, f"expected {expected}, got {_render(value, meta)}")
        return INVALID

    def _list(self, value: Any, item: Any, path: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_render(value, meta)}")
            return INVALID
        if len(value) < meta.get("min_items", 0):
            self.problem(path, f"expected at least {meta['min_items']} item(s), got none")
            return INVALID
        items = [self.convert(v, item, f"{path}[{i}]", meta) for i, v in enumerate(value)]
        return INVALID if any(v is INVALID for v in items) else items

    def _dict(self, value: Any, item: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_render(value, {})}")
            return INVALID
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                self.problem(path, f"expected string keys, got {_render(key, {})}")
                out[key] = INVALID
                continue
            out[key] = self.convert(v, item, _join(path, key), {"secret": is_secret(key)})
        return INVALID if any(v is INVALID for v in out.values()) else out

    def _dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:  # an empty section in YAML ("alerts:") means all defaults
            value = {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_render(value, {})}")
            return INVALID
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
                ok = ok and kwargs[name] is not INVALID
            elif _required(field):
                self.problem(
                    _join(path, name), f"missing required key (expected {_describe(hints[name])})"
                )
                ok = False
        if not ok:
            return INVALID
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
                self.problems.append(f"{var}: not a YAML value: {yaml_error(exc)}")
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
    return Interval.from_bounds(float, meta).within(value)


def _bounds_text(meta: Mapping[str, Any]) -> str:
    return Interval.from_bounds(float, meta).bounds_text()


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
