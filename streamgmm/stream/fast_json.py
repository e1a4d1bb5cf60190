"""The typed JSON decoder: a msgspec Struct shaped like the configured feature paths.

msgspec parses and type-checks each payload in C and skips unknown fields
without materialising them; a getter per path then reads each leaf.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["CATEGORY", "FAST_TYPES", "KEY", "NUMBER", "TIME_NUMBER", "TIME_TEXT", "fast_decoder"]

# The kinds of value a path can hold, with the type the fast decoder gives them.
NUMBER, CATEGORY, KEY, TIME_NUMBER, TIME_TEXT = "number", "category", "key", "tnum", "ttext"
FAST_TYPES: dict[str, Any] = {
    NUMBER: float | None,
    TIME_NUMBER: float | None,
    CATEGORY: str | int | None,
    KEY: str | int | None,
    TIME_TEXT: str | None,
}


def fast_decoder(leaves: list[tuple[str, str]]) -> tuple[Any, list[Callable[[Any], Any]]]:
    """A msgspec decoder of a Struct shaped like the leaves, and a getter per leaf.

    Returns ``(None, [])`` when the leaves cannot be one Struct (a path used with two
    kinds, or both as a value and as an object): the generic path then does it all.
    """
    tree: dict[str, Any] = {}
    for path, kind in leaves:
        node, parts = tree, path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None, []
        existing = node.get(parts[-1])
        if existing is not None and (
            isinstance(existing, dict) or FAST_TYPES[existing] != FAST_TYPES[kind]
        ):
            return None, []
        node[parts[-1]] = kind
    root, chains = _struct(tree, "Event")
    getters = [_getter(chains[path]) for path, _ in leaves]
    return msgspec.json.Decoder(root), getters


def _struct(tree: dict[str, Any], name: str) -> tuple[type, dict[str, list[str]]]:
    """A Struct type for ``tree`` and the attribute chain of each leaf path under it."""
    fields, rename, chains = [], {}, {}
    for i, (key, sub) in enumerate(tree.items()):
        attr = f"f{i}"  # JSON names need not be identifiers
        rename[attr] = key
        if isinstance(sub, dict):
            child, sub_chains = _struct(sub, f"{name}_{i}")
            chains.update({f"{key}.{path}": [attr, *chain] for path, chain in sub_chains.items()})
            fields.append((attr, child | None, None))
        else:
            chains[key] = [attr]
            fields.append((attr, FAST_TYPES[sub], None))
    return msgspec.defstruct(name, fields, rename=rename), chains


def _getter(chain: list[str]) -> Callable[[Any], Any]:
    if len(chain) == 1:
        return operator.attrgetter(chain[0])

    def get(obj: Any) -> Any:
        for attr in chain:
            if obj is None:
                return None
            obj = getattr(obj, attr)
        return obj

    return get
