"""Log output of the daemon: plain text for people, or one JSON object a line for machines.

Structured fields travel with a record as ``extra={"fields": {...}}``; the
JSON format merges them into the object and the text format appends them as
``key=value``. A redaction filter runs first, so the value of any key that
contains ``password``, ``secret`` or ``token`` (``sasl_plain_password``,
``api_token``...) never reaches the output, whichever way it was logged.

Examples
--------
>>> import io, json, logging
>>> out = io.StringIO()
>>> handler = setup_logging("INFO", "json", stream=out)
>>> logging.getLogger("streamgmm.loop").info(
...     "batch done", extra={"fields": {"events": 500, "sasl_plain_password": "hunter2"}})
>>> doc = json.loads(out.getvalue())
>>> doc["event"], doc["events"], doc["sasl_plain_password"]
('batch done', 500, '***')
>>> logging.getLogger().removeHandler(handler)
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

SECRET_WORDS = ("password", "passwd", "secret", "token")
REDACTED = "***"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")

# JSON object keys the formatter owns; a field with one of these names is
# renamed rather than allowed to overwrite them.
_RESERVED = ("time", "level", "event", "logger", "exception")
_SECRET_KEY = "|".join(SECRET_WORDS)
# key=value, key: value, "key": "value" where the key names a secret.
_SECRET_IN_TEXT = re.compile(
    rf"""(?ix)
    (["']?[\w.-]*(?:{_SECRET_KEY})[\w.-]*["']?\s*[=:]\s*)   # the key and its separator
    ("[^"]*"|'[^']*'|[^\s,;}}\]]+)                          # the value
    """
)


def is_secret_key(key: object) -> bool:
    """Tell whether a field name stands for a secret value."""
    name = str(key).lower()
    return any(word in name for word in SECRET_WORDS)


def redact(value: Any) -> Any:
    """Return ``value`` with every secret-named key's value replaced, recursively."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        # A namedtuple (kafka-python logs TopicPartition): rebuilt field by field.
        return type(value)(*(redact(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def redact_text(text: str) -> str:
    """Replace the values of ``secret_key=value`` pairs written inside free text."""
    return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


class RedactionFilter(logging.Filter):
    """Strip secrets from a record's fields, arguments and message before any output."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = redact(fields)
        # Render the message once with redacted arguments, then scrub the text.
        if record.args:
            record.args = redact(record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A format string that does not match its arguments: leave the
            # record to the handler, which reports the mistake itself.
            return True
        record.msg = redact_text(message)
        record.args = None
        return True


def _jsonable(value: Any) -> Any:
    # NumPy scalars and arrays know how to become plain Python values.
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, event, logger, fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        doc: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        for key, value in (fields if isinstance(fields, dict) else {}).items():
            doc[f"field_{key}" if key in _RESERVED else str(key)] = value
        if record.exc_info:
            doc["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=_jsonable, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Format a record as a plain line, with its fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        fields = fields if isinstance(fields, dict) else {}
        pairs = " ".join(f"{k}={json.dumps(v, default=_jsonable)}" for k, v in fields.items())
        return f"{line} {pairs}" if pairs else line


def setup_logging(
    level: str = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record of the process to ``stream`` in the chosen format.

    Calling it again replaces the handler it installed before (a reload, or
    tests), and leaves handlers installed by anyone else alone.

    Parameters
    ----------
    level : {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        The lowest level written.
    fmt : {"text", "json"}
        Plain text, or one JSON object a line.
    stream : file-like, optional
        Where lines go; ``sys.stderr`` (at call time) by default.

    Returns
    -------
    logging.Handler
        The handler installed on the root logger.
    """
    name = str(level).upper()
    if name not in LEVELS:
        raise ValueError(f"logging.level: expected one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"logging.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactionFilter())
    handler._streamgmm = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_streamgmm", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(name)
    # kafka-python narrates every connection attempt at INFO; the daemon logs
    # what matters (broker lost, retrying, recovered) itself. DEBUG shows all.
    level = logging.getLevelName(name)
    logging.getLogger("kafka").setLevel(level if level <= logging.DEBUG
                                        else max(level, logging.WARNING))
    return handler
