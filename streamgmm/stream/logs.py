"""Log output of every streamgmm process: plain text for people, or one JSON object a line.

The daemon and its consumer child process (``kafka_process.py``) both write
through ``setup_logging``, so the module sits in the stream layer, where the
child is. Structured fields travel with a record as ``extra={"fields":
{...}}``; the JSON format merges them into the object and the text format
appends them as ``key=value``. A redaction filter runs first, so the value of
any key that names a secret (``redact.SECRET_WORDS``: ``sasl_plain_password``,
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
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from streamgmm.stream.redact import redact, redact_text

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")

# JSON object keys the formatter owns; a field with one of these names is
# renamed rather than allowed to overwrite them.
_RESERVED = ("time", "level", "event", "logger", "exception")


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
