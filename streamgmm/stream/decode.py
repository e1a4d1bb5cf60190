"""Decode a batch of raw records into a feature matrix, and say why the rest failed.

This is the only per-event Python work on the hot path, so it is built for
speed: a msgspec ``Struct`` generated from the feature configuration parses and
type-checks each JSON payload in C (unknown fields are skipped without being
materialised); the values are then gathered into columns and every check and
transform runs on whole columns with NumPy. A payload the typed decoder
rejects goes through a generic decode and a dotted-path lookup, which finds
the precise reason. ``NaN`` and ``inf`` never reach ``X``.

Every rejected record gets one reason from the fixed set :data:`REASONS`
(the dead-letter metric has one label per reason) and a detail for people::

    ("not_a_number", 'amount: expected a number, got "12,50"')
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from streamgmm.model.base import MAX_MAGNITUDE
from streamgmm.stream.fast_json import CATEGORY, KEY, NUMBER, TIME_NUMBER, TIME_TEXT, fast_decoder
from streamgmm.stream.features import FeatureField, FeaturesConfig
from streamgmm.stream.reasons import REASONS, Problem, Reason
from streamgmm.stream.records import Record
from streamgmm.stream.transforms import Transform, build_transform, show_number
from streamgmm.stream.values import (
    FIRST_MS,
    LAST_MS,
    check_value,
    first_reason,
    iso_times,
    json_type,
    lookup,
    stdlib_json,
    too_large,
)


@dataclass
class Decoded:
    """A decoded batch.

    Attributes
    ----------
    X : ndarray of shape (n_ok, n_features)
        Feature vectors of the good records, finite float64.
    ok : ndarray of int64, shape (n_ok,)
        Index into the input records of each row of ``X``, increasing.
    keys : list of str or None, length n_ok
        Event id of each good record (``features.key``, else the Kafka key).
    event_time_ms : ndarray of float64, shape (n_ok,)
        Event time in epoch milliseconds; NaN where unknown.
    errors : list of (int, Reason)
        Index and reason of each rejected record, by increasing index.
    """

    X: np.ndarray
    ok: np.ndarray
    keys: list[str | None]
    event_time_ms: np.ndarray
    errors: list[tuple[int, Reason]] = field(default_factory=list)


# Stands in for the record of an event given as an object (no key, no timestamp).
_NO_RECORD = Record("", 0, -1, None, b"")


class Decoder:
    """Turns raw JSON records into feature vectors as ``features`` declares.

    Parameters
    ----------
    features : FeaturesConfig
        The ``features`` section of the configuration.

    Attributes
    ----------
    feature_names : list of str
        Column names after expansion (``hour_sin``, ``hour_cos``, ``mcc=grocery``, ...).
    n_features : int
        Number of columns.

    Examples
    --------
    >>> features = FeaturesConfig(fields=[FeatureField("amount", transform="log1p"),
    ...                                   FeatureField("hour", transform="cyclic", period=24)])
    >>> decoder = Decoder(features)
    >>> decoder.feature_names
    ['amount', 'hour_sin', 'hour_cos']
    >>> out = decoder.decode([Record("t", 0, 0, None, b'{"amount": 0, "hour": 6}'),
    ...                       Record("t", 0, 1, None, b'{"amount": "12,50", "hour": 6}')])
    >>> out.X.round(3).tolist(), out.ok.tolist()
    ([[0.0, 1.0, 0.0]], [0])
    >>> out.errors
    [(1, Reason(code='not_a_number', detail='amount: expected a number, got "12,50"'))]
    """

    def __init__(self, features: FeaturesConfig) -> None:
        self.config = features
        self.transforms: list[Transform] = [build_transform(f) for f in features.fields]
        self.feature_names = [name for t in self.transforms for name in t.names]
        self.n_features = len(self.feature_names)
        self.max_bytes = features.max_message_bytes
        self._leaves = self._declare_leaves()
        self._fast, self._getters = fast_decoder(self._leaves)
        self._generic = msgspec.json.Decoder()

    def _declare_leaves(self) -> list[tuple[str, str]]:
        """(path, kind) of every value read from an event, in a fixed order."""
        leaves = [
            (f.source_path, NUMBER if t.numeric else CATEGORY)
            for f, t in zip(self.config.fields, self.transforms, strict=True)
        ]
        if self.config.key:
            leaves.append((self.config.key, KEY))
        if self.config.event_time:
            iso = self.config.event_time_format == "iso8601"
            leaves.append((self.config.event_time, TIME_TEXT if iso else TIME_NUMBER))
        return leaves

    # ------------------------------------------------------------------ entry points

    def decode(self, records: Sequence[Record]) -> Decoded:
        """Decode records whose values are JSON objects (one event each)."""
        values = [record.value for record in records]
        if None in values:  # a Kafka tombstone (no value): record by record
            return self._decode_each(records, values)
        if self._fast is not None and max(map(len, values), default=0) <= self.max_bytes:
            try:  # the common case, every record good: one C-speed pass
                events = list(map(self._fast.decode, values))
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                pass
            else:
                columns = [list(map(get, events)) for get in self._getters]
                return self._finish(records, list(range(len(values))), columns, {}, {})
        return self._decode_each(records, values)

    def _decode_each(self, records: Sequence[Record], values: list[bytes]) -> Decoded:
        """Decode record by record, sending the ones the typed decoder rejects the slow way."""
        errors: dict[int, Reason] = {}
        fast_rows: list[int] = []
        fast_events: list[Any] = []
        slow: dict[int, list[Any]] = {}
        decode_one, max_bytes = self._fast.decode if self._fast else None, self.max_bytes
        for i, value in enumerate(values):
            if value is None:
                errors[i] = Reason("bad_json", "no value: a tombstone")
                continue
            if len(value) > max_bytes:
                errors[i] = too_large(len(value), max_bytes)
                continue
            if not value or value.isspace():
                errors[i] = Reason("bad_json", "empty message: no value to decode")
                continue
            if decode_one is not None:
                try:
                    fast_events.append(decode_one(value))
                    fast_rows.append(i)
                    continue
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    pass
            self._slow_json(i, value, slow, errors)
        if self._fast is None:
            columns: list[list[Any]] = [[] for _ in self._leaves]
        else:
            columns = [list(map(get, fast_events)) for get in self._getters]
        return self._finish(records, fast_rows, columns, slow, errors)

    def decode_objects(
        self,
        objects: Sequence[Any],
        records: Sequence[Record] | None = None,
        *,
        strings_as_numbers: bool = False,
    ) -> Decoded:
        """Decode already-parsed events (dicts); ``records`` supply keys and timestamps.

        With ``strings_as_numbers`` (CSV), numeric fields are parsed from text and an
        empty string counts as absent; dotted paths name columns literally first.
        """
        errors: dict[int, Reason] = {}
        slow: dict[int, list[Any]] = {}
        for i, obj in enumerate(objects):
            try:
                slow[i] = self._inspect(obj, strings_as_numbers)
            except Problem as problem:
                errors[i] = problem.reason
        records = records if records is not None else [_NO_RECORD] * len(objects)
        return self._finish(records, [], [[] for _ in self._leaves], slow, errors)

    def decode_csv(self, records: Sequence[Record], header: Sequence[str]) -> Decoded:
        """Decode records whose values are CSV lines, with the column names in ``header``."""
        errors: dict[int, Reason] = {}
        objects: list[Any] = [None] * len(records)
        for i, record in enumerate(records):
            if len(record.value) > self.max_bytes:
                errors[i] = too_large(len(record.value), self.max_bytes)
                continue
            try:
                text = record.value.decode("utf-8")
                rows = list(csv.reader([text.rstrip("\r\n")]))
            except (UnicodeDecodeError, csv.Error) as exc:
                errors[i] = Reason("bad_csv", str(exc))
                continue
            row = rows[0] if rows else []
            if len(row) != len(header):
                errors[i] = Reason("bad_csv", f"expected {len(header)} columns, got {len(row)}")
                continue
            objects[i] = dict(zip(header, row, strict=True))
        keep = [i for i in range(len(records)) if i not in errors]
        inner = self.decode_objects(
            [objects[i] for i in keep], [records[i] for i in keep], strings_as_numbers=True
        )
        return _reindex(inner, keep, errors)

    # ------------------------------------------------------------------- slow path

    def _slow_json(self, i: int, value: bytes, slow: dict, errors: dict) -> None:
        try:
            obj = self._generic.decode(value)
        except msgspec.ValidationError:
            obj = stdlib_json(value)  # a number beyond float range: find out which field
        except msgspec.DecodeError as exc:
            errors[i] = Reason("bad_json", str(exc))
            return
        except RecursionError:
            errors[i] = Reason("bad_json", "nested too deeply to decode")
            return
        if isinstance(obj, Reason):
            errors[i] = obj
            return
        try:
            slow[i] = self._inspect(obj, False)
        except Problem as problem:
            errors[i] = problem.reason

    def _inspect(self, obj: Any, text_numbers: bool) -> list[Any]:
        """The leaf values of one parsed event, checked as the fast decoder checks them."""
        if not isinstance(obj, dict):
            raise Problem("wrong_type", f"expected a JSON object, got {json_type(obj)}")
        return [
            check_value(path, kind, lookup(obj, path, text_numbers), text_numbers)
            for path, kind in self._leaves
        ]

    # ---------------------------------------------------------------- column stage

    def _finish(
        self,
        records: Sequence[Record],
        fast_rows: list[int],
        columns: list[list[Any]],
        slow: dict[int, list[Any]],
        errors: dict[int, Reason],
    ) -> Decoded:
        rows, columns = _merge(fast_rows, columns, slow)
        n = len(rows)
        row_errors: list[Reason | None] = [None] * n
        blocks = []
        for transform, fld, column in zip(
            self.transforms, self.config.fields, columns, strict=False
        ):
            blocks.append(self._feature(transform, fld, column, row_errors))
        X = np.hstack(blocks) if blocks else np.empty((n, 0))
        extra = columns[len(self.transforms) :]
        keys = _keys(records, rows, extra.pop(0) if self.config.key else None)
        times = self._times(records, rows, extra[0] if extra else None, row_errors)
        ok = np.asarray(rows, dtype=np.int64)
        if row_errors.count(None) < n:
            good = np.fromiter((e is None for e in row_errors), dtype=bool, count=n)
            for r, reason in zip(rows, row_errors, strict=True):
                if reason is not None:
                    errors[r] = reason
            X, ok, times = X[good], ok[good], times[good]
            keys = [k for k, g in zip(keys, good, strict=True) if g]
        return Decoded(
            X=np.ascontiguousarray(X),
            ok=ok,
            keys=keys,
            event_time_ms=times,
            errors=sorted(errors.items()),
        )

    def _feature(
        self, transform: Transform, fld: FeatureField, column: list[Any], errs: list[Reason | None]
    ) -> np.ndarray:
        """One feature's block; records the first problem of each row in ``errs``."""
        name = fld.source_path
        missing = [i for i, v in enumerate(column) if v is None] if None in column else []
        for i in missing:
            if fld.default is None:
                first_reason(errs, i, Reason("missing_field", name))
            else:
                column[i] = fld.default
        if not transform.numeric:
            return transform.apply(list(map(str, column)))[0]
        x = np.array(
            [0.0 if v is None else v for v in column] if missing else column, dtype=np.float64
        ).reshape(len(column))
        infinite = ~np.isfinite(x)
        for i in np.flatnonzero(infinite):
            first_reason(errs, i, Reason("non_finite", f"{name}: {x[i]}"))
        x[infinite] = 0.0
        block, bad = transform.apply(x)
        for i in np.flatnonzero(bad):
            first_reason(errs, i, Reason("transform", transform.explain(float(x[i]))))
        # The model squares feature values: keep them far inside float64's range.
        beyond = ~(np.abs(block) <= MAX_MAGNITUDE).all(axis=1)
        for i in np.flatnonzero(beyond & ~bad):
            first_reason(errs, i, Reason("out_of_range", f"{name}: {show_number(float(x[i]))} is "
                                   f"beyond ±{MAX_MAGNITUDE:g} as a feature"))
        return block

    def _times(self, records, rows, column, errs) -> np.ndarray:
        if column is None:
            chosen = records if len(rows) == len(records) else [records[r] for r in rows]
            return _floats([record.timestamp_ms for record in chosen])
        path = self.config.event_time
        if self.config.event_time_format == "iso8601":
            return iso_times(path, column, errs)
        factor = 1000.0 if self.config.event_time_format == "epoch_s" else 1.0
        given = _floats(column)
        for j in np.flatnonzero(np.isinf(given)):
            first_reason(errs, j, Reason("non_finite", f"{path}: {given[j]}"))
        with np.errstate(over="ignore"):  # an epoch_s past 1.8e305 becomes inf
            out = given * factor
        # Alerts print event times: they must name a moment of years 1-9999.
        outside = ~((out >= FIRST_MS) & (out <= LAST_MS)) & ~np.isnan(out)
        for j in np.flatnonzero(outside & np.isfinite(given)):
            first_reason(errs, j, Reason("out_of_range", f"{path}: {show_number(column[j])} is "
                                   "outside the years 1-9999"))
        return out


# ------------------------------------------------------------------------- helpers


def _keys(records: Sequence[Record], rows: list[int], column: list[Any] | None) -> list:
    """Each row's event id: the configured field, else the record's key, else None."""
    if column is not None and None not in column:
        return list(map(str, column))
    keys: list[str | None] = []
    for j, r in enumerate(rows):
        value = column[j] if column is not None else None
        if value is None:
            raw = records[r].key
            keys.append(raw.decode("utf-8", "replace") if raw is not None else None)
        else:
            keys.append(str(value))
    return keys


def _merge(
    fast_rows: list[int], columns: list[list[Any]], slow: dict[int, list[Any]]
) -> tuple[list[int], list[list[Any]]]:
    """Fast and slow rows together, in record order."""
    if not slow:
        return fast_rows, columns
    rows = sorted([*fast_rows, *slow])
    position = {r: j for j, r in enumerate(fast_rows)}
    merged = [
        [column[position[r]] if r in position else slow[r][c] for r in rows]
        for c, column in enumerate(columns)
    ]
    return rows, merged


def _reindex(inner: Decoded, keep: list[int], errors: dict[int, Reason]) -> Decoded:
    """``inner`` decoded ``keep``'s records; map its indices back and add ``errors``."""
    index = np.asarray(keep, dtype=np.int64)
    merged = {**errors, **{int(index[i]): reason for i, reason in inner.errors}}
    inner.ok = index[inner.ok]
    inner.errors = sorted(merged.items())
    return inner


def _floats(values: list[Any]) -> np.ndarray:
    """A float64 array of numbers and Nones, NaN for None."""
    if None in values:
        values = [math.nan if v is None else v for v in values]
    return np.array(values, dtype=np.float64).reshape(len(values))


__all__ = ["REASONS", "Decoded", "Decoder", "Reason"]
