"""Why a record was rejected: the fixed set of reasons and the error that carries one."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["REASONS", "Problem", "Reason"]


#: Every reason a record can be rejected for, in a fixed order.
REASONS = (
    "too_large",  # the payload exceeds features.max_message_bytes
    "bad_json",  # not valid JSON (or not UTF-8)
    "bad_csv",  # a CSV line that does not parse or has the wrong number of columns
    "wrong_type",  # not an object, or a value of the wrong JSON type (true for a number)
    "missing_field",  # a field without a default is absent or null
    "not_a_number",  # a string where a number is expected
    "non_finite",  # a number out of float range (or nan/inf in CSV)
    "transform",  # the transform is undefined for the value (log1p of -3)
    "out_of_range",  # a feature beyond ±MAX_MAGNITUDE, an event time outside years 1-9999
    "rejected",  # decoded, then refused by the detector (the detail says why)
)


class Reason(NamedTuple):
    """Why a record was rejected: a code from :data:`REASONS` and a detail for people."""

    code: str
    detail: str


class Problem(Exception):
    """One value's problem, raised inside the generic path and turned into a Reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = Reason(code, detail)
