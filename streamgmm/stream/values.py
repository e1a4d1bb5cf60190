"""One value at a time, off the fast path: dotted-path lookup, checks that name the field
and the value, the standard-library JSON parse, ISO 8601 event times."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from streamgmm.stream.fast_json import NUMBER, TIME_NUMBER, TIME_TEXT
from streamgmm.stream.reasons import Problem, Reason

__all__ = ["FIRST_MS", "LAST_MS", "check_value", "first_reason", "iso_times", "json_type",
           "lookup", "show", "stdlib_json", "to_number", "too_large"]

# Event times must name a moment of years 1-9999 in UTC (alerts print them).
FIRST_MS = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp() * 1000.0
LAST_MS = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp() * 1000.0


def lookup(obj: dict, path: str, literal: bool) -> Any:
    """The value at a dotted path; None if absent. ``literal``: a key 'a.b' wins (CSV)."""
    if literal and path in obj:
        return obj[path]
    node: Any = obj
    walked = []
    for part in path.split("."):
        if node is None:
            return None
        if not isinstance(node, dict):
            raise Problem(
                "wrong_type",
                f"{path}: expected an object at {'.'.join(walked)}, got {json_type(node)}",
            )
        node = node.get(part)
        walked.append(part)
    return node


def check_value(path: str, kind: str, value: Any, text_numbers: bool) -> Any:
    """A leaf value as the fast decoder gives it, or a Problem."""
    if value is None or (text_numbers and value == ""):
        return None
    if kind in (NUMBER, TIME_NUMBER):
        return to_number(path, value, text_numbers)
    if kind == TIME_TEXT:
        if isinstance(value, str):
            return value
        raise Problem("wrong_type", f"{path}: expected an ISO 8601 string, got {show(value)}")
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Problem("wrong_type", f"{path}: expected a string or an integer, got {show(value)}")


def to_number(path: str, value: Any, text_numbers: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Problem("wrong_type", f"{path}: expected a number, got {show(value)}")
    if isinstance(value, str):
        if not text_numbers:
            raise Problem("not_a_number", f"{path}: expected a number, got {show(value)}")
        try:
            number = float(value)
        except ValueError:
            raise Problem(
                "not_a_number", f"{path}: expected a number, got {show(value)}"
            ) from None
    else:
        try:
            number = float(value)
        except OverflowError:
            raise Problem("non_finite", f"{path}: {show(value)} is out of range") from None
    if not math.isfinite(number):
        raise Problem("non_finite", f"{path}: {number}")
    return number


def stdlib_json(value: bytes) -> Any:
    """Parse with the standard library, which reads 1e400 as inf (msgspec refuses it)."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    try:
        return json.loads(value, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        return Reason("bad_json", str(exc))


def iso_times(path: str, column: list[Any], errs: list[Reason | None]) -> np.ndarray:
    out = np.full(len(column), math.nan)
    for j, text in enumerate(column):
        if text is None:
            continue
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            first_reason(
                errs,
                j,
                Reason("wrong_type", f"{path}: expected an ISO 8601 time, got {show(text)}"),
            )
            continue
        if moment.tzinfo is None:  # a time without offset is taken as UTC
            moment = moment.replace(tzinfo=timezone.utc)
        ms = moment.timestamp() * 1000.0
        if not FIRST_MS <= ms <= LAST_MS:  # e.g. 0001-01-01T00:00+01:00
            first_reason(errs, j, Reason("out_of_range", f"{path}: {show(text)} is outside "
                                   "the years 1-9999 in UTC"))
            continue
        out[j] = ms
    return out


def first_reason(errs: list[Reason | None], i: int, reason: Reason) -> None:
    if errs[i] is None:
        errs[i] = reason


def too_large(size: int, limit: int) -> Reason:
    return Reason("too_large", f"{size} bytes > max_message_bytes {limit}")


def json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return show(value)


def show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json_type(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
