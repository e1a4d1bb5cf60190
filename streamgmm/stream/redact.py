"""Secrets out of logs and printed configurations: one list of secret names.

An option or field is secret when its name contains one of ``SECRET_WORDS``
(``sasl_plain_password``, ``ssl_password``, ``client_secret``, ``api_token``,
``sasl_oauth_token_provider``, ``ssl_keyfile``...), or when the schema
declares it ``secret``. Its value is replaced by ``REDACTED`` wherever it is
shown: the daemon's log lines (``logs.py``), the Kafka clients' option logs
(``kafka_io.py``), ``check-config`` and the configuration the daemon logs at
start (``redact_config``). ``None`` stays ``None``: a log still shows which
options were left unset. A bare ``key`` is not secret: the record key and
``features.key`` name data, not credentials; a client's key file is
(``keyfile``), and so are API and private keys.

Examples
--------
>>> redact({"sasl_plain_username": "u", "sasl_plain_password": "p", "ssl_cafile": None})
{'sasl_plain_username': 'u', 'sasl_plain_password': '***', 'ssl_cafile': None}
>>> redact_text("connecting with sasl_plain_password=hunter2, user=alice")
'connecting with sasl_plain_password=***, user=alice'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "keyfile",
                "api_key", "apikey", "private_key")
REDACTED = "***"

_WORDS = "|".join(SECRET_WORDS)
# key=value, key: value, "key": "value" where the key names a secret.
_SECRET_IN_TEXT = re.compile(
    rf"""(?ix)
    (["']?[\w.-]*(?:{_WORDS})[\w.-]*["']?\s*[=:]\s*)   # the key and its separator
    ("[^"]*"|'[^']*'|[^\s,;}}\]]+)                     # the value
    """
)


def is_secret(name: object) -> bool:
    """Whether an option or field called ``name`` holds a secret."""
    text = str(name).lower()
    return any(word in text for word in SECRET_WORDS)


def redact(value: Any) -> Any:
    """``value`` with every secret's value replaced, recursively: mappings by
    key name, and the items of lists, tuples and namedtuples (the input is
    not changed)."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret(k) and v is not None else redact(v)
                for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        # A namedtuple (kafka-python logs TopicPartition): rebuilt field by field.
        return type(value)(*(redact(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def redact_config(config: Any) -> Any:
    """A configuration (schema dataclasses) as plain data, secrets replaced: a
    field declared ``secret`` or named as one, and secret keys of mappings
    (``client_options``). What ``check-config`` prints and the daemon logs."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        out = {}
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            secret = field.metadata.get("secret") or is_secret(field.name)
            out[field.name] = REDACTED if secret and value is not None else redact_config(value)
        return out
    if isinstance(config, list):  # of sections: features.fields
        return [redact_config(v) for v in config]
    return redact(config)


def redact_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Client options with secrets masked, for logs and error messages (None: {})."""
    return redact(dict(options or {}))


def redact_text(text: str) -> str:
    """Replace the values of ``secret_name=value`` pairs written inside free text."""
    return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)
