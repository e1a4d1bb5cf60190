"""Declared rules for parameters: intervals and choices, checked and described.

In scikit-learn's ``_parameter_constraints`` manner, a parameter is declared
with the alternatives it may take (``Interval(int, 1, None)``,
``Options("anomaly", "novelty")``, ``Pair(1)``, ``bool``, ``None``), and a
bound it takes from another parameter is declared beside them (``Bound``).
``streamgmm.detect.params`` holds the detector's table; the YAML schema reads
the same declarations (``Interval.schema_bounds``), so the two cannot
disagree. Nothing here imports numpy: the schema is read by light commands.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def is_integer(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """Integers (``kind`` int) or numbers (float) from ``low`` to ``high``
    (None: unbounded); ``closed`` says which ends belong, as in scikit-learn:
    'left' (the default), 'right', 'both' or 'neither'. ``unit`` follows a
    bound in messages ('2 events')."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"
    unit: str = ""

    @property
    def low_closed(self) -> bool:
        return self.closed in ("left", "both")

    @property
    def high_closed(self) -> bool:
        return self.closed in ("right", "both")

    @property
    def noun(self) -> str:
        return "an integer" if self.kind is int else "a number"

    def of_kind(self, value: Any) -> bool:
        return is_integer(value) if self.kind is int else is_number(value)

    @classmethod
    def from_bounds(cls, kind: type, meta: Mapping[str, Any]) -> Interval:
        """The interval YAML schema field metadata (``min``, ``max``...) declare."""
        closed = {(True, True): "both", (True, False): "left", (False, True): "right",
                  (False, False): "neither"}
        return cls(kind, meta.get("min"), meta.get("max"),
                   closed[not meta.get("exclusive_min"), not meta.get("exclusive_max")])

    def accepts(self, value: Any) -> bool:
        """``value`` is of the kind (NaN is no number here) and within the bounds."""
        return self.of_kind(value) and value == value and self.within(value)

    def within(self, value: float) -> bool:
        """``value`` is within the bounds (whatever its kind)."""
        if self.low is not None and (value < self.low or (value == self.low
                                                          and not self.low_closed)):
            return False
        return self.high is None or value < self.high or (value == self.high
                                                          and self.high_closed)

    def describe(self) -> str:
        """'an integer >= 1', 'a number in (0, 0.5)': the YAML validator's words."""
        return self.noun + self.bounds_text()

    def bounds_text(self) -> str:
        """' >= 1', ' in (0, 0.5)', or '' when unbounded."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
            return f" in {left}{low}, {high}{right}"
        if low is not None:
            return f" {'>=' if self.low_closed else '>'} {low}"
        if high is not None:
            return f" {'<=' if self.high_closed else '<'} {high}"
        return ""

    def schema_bounds(self) -> dict[str, Any]:
        """The bounds as the YAML schema's field metadata (``min``, ``max``...)."""
        out: dict[str, Any] = {}
        if self.low is not None:
            out.update(min=self.low, exclusive_min=not self.low_closed)
        if self.high is not None:
            out.update(max=self.high, exclusive_max=not self.high_closed)
        return out


@dataclass(frozen=True)
class Options:
    """One of a few strings."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str) -> None:
        object.__setattr__(self, "choices", choices)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        if len(self.choices) == 1:
            return repr(self.choices[0])
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class Pair:
    """A pair of integers ``(low, high)`` with ``least <= low <= high``."""

    least: int = 1

    def accepts(self, value: Any) -> bool:
        try:
            items = tuple(value)
        except TypeError:
            return False
        return (len(items) == 2 and all(is_integer(k) for k in items)
                and self.least <= items[0] <= items[1])

    def describe(self) -> str:
        return f"(low, high) with {self.least} <= low <= high"


@dataclass(frozen=True)
class Bound:
    """``name`` is at least (``side`` 'min') or at most ('max') the value of
    the parameter ``by`` (or what ``value`` derives from the parameters)."""

    name: str
    side: str
    by: str
    value: Callable[[Mapping[str, Any]], float] | None = None

    def of(self, params: Mapping[str, Any]) -> float:
        return params[self.by] if self.value is None else self.value(params)

    def holds(self, params: Mapping[str, Any]) -> bool:
        x, bound = params[self.name], self.of(params)
        return x is None or (x >= bound if self.side == "min" else x <= bound)

    def named(self, params: Mapping[str, Any]) -> str:
        return f"{self.by} ({self.of(params)})"
