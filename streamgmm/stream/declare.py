"""How a configuration key is declared: ``option()``, a dataclass field with its help and bounds.

The daemon's YAML schema is frozen dataclasses, one per section
(``streamgmm.service.schema``; the feature spec, ``features.py``, lives in the
stream layer that reads it). Each field carries metadata that the validator
(``streamgmm.service.config``) checks and ``check-config --schema`` prints:

``help``
    What the key is for, shown by ``streamgmm check-config --schema``.
``min``, ``max``, ``exclusive_min``, ``exclusive_max``
    Range bounds for numbers (inclusive unless the ``exclusive_*`` flag is set).
``min_items``
    Smallest allowed length of a list.
``secret``
    The value is redacted in logs and in ``check-config`` output (``redact.py``).

A field without a default is required. Cross-field rules live in each
section's ``check()`` method, which returns ``(key, message)`` pairs relative
to that section; the validator calls it once the section itself is valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    **bounds: Any,
) -> Any:
    """Declare a schema field with its help string and bounds.

    Parameters
    ----------
    default : object, optional
        Default value; leave it out (and ``factory`` too) to make the key required.
    help : str
        What the key is for.
    factory : callable, optional
        Builds a mutable default (a list, a dict or a nested section).
    **bounds
        ``min``, ``max``, ``exclusive_min``, ``exclusive_max``, ``min_items``, ``secret``.
    """
    metadata = {"help": help, **bounds}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
