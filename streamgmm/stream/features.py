"""The feature spec: how an event becomes a feature vector (the ``features`` section).

Declared here, in the stream layer that reads it (``decode.py``,
``transforms.py``), as frozen dataclasses with ``declare.option`` fields; the
daemon's YAML schema (``streamgmm.service.schema``) nests ``FeaturesConfig``
and its validator checks a document against these declarations.
``config_fingerprint`` hashes what a feature vector means, so that
checkpoints and model files refuse a spec that changed it.

Examples
--------
>>> spec = FeaturesConfig(fields=[FeatureField("amount", transform="log1p"),
...                               FeatureField("hour", transform="cyclic", period=24)])
>>> spec.n_features
3
>>> spec.check()
[]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from streamgmm.stream.declare import option

#: The key that carries each transform's parameters.
PARAMETER_OF = {"scale": "scale", "cyclic": "period", "onehot": "vocabulary"}


@dataclass(frozen=True)
class ScaleConfig:
    """Parameters of the ``scale`` transform: (x - center) / scale."""

    center: float = option(0.0, help="Subtracted first (a typical value, e.g. the median).")
    scale: float = option(
        1.0, help="Divided by next (a typical spread).", min=0, exclusive_min=True
    )


@dataclass(frozen=True)
class FeatureField:
    """One input field of an event and how it becomes feature columns."""

    name: str = option(help="Feature name; prefixes the column names after expansion.")
    path: str | None = option(
        None, help="Dotted path of the field in the event (e.g. 'merchant.mcc'); default: name."
    )
    transform: Literal["none", "log1p", "scale", "cyclic", "onehot"] = option(
        "none",
        help="none; log1p (log(1 + x), x > -1); scale ((x - center) / scale); "
        "cyclic (sin and cos of 2 pi x / period); onehot (one column per vocabulary "
        "entry plus 'other').",
    )
    scale: ScaleConfig | None = option(None, help="center and scale, for transform 'scale'.")
    period: float | None = option(
        None,
        help="Period, for transform 'cyclic' (24 for an hour, 7 for a weekday).",
        min=0,
        exclusive_min=True,
    )
    vocabulary: list[str] | None = option(
        None,
        help="Known categories, for transform 'onehot'; anything else is 'other'.",
        min_items=1,
    )
    default: float | str | None = option(
        None,
        help="Value used when the field is absent or null; without it such an event is "
        "a decode error (reason missing_field).",
    )

    @property
    def source_path(self) -> str:
        """The dotted path read from the event."""
        return self.path or self.name

    def check(self) -> list[tuple[str, str]]:
        """The name is not empty, the path has no empty part; each transform's
        parameters are present, and only with that transform."""
        problems = []
        if not self.name.strip():
            problems.append(("name", f"expected a non-empty name, got {self.name!r}"))
        elif "" in self.source_path.split("."):
            key = "path" if self.path else "name"
            problems.append((key, f"expected dotted names with no empty part, "
                                  f"got {self.source_path!r}"))
        for transform, key in PARAMETER_OF.items():
            present = getattr(self, key) is not None
            if self.transform == transform and not present:
                problems.append((key, f"required with transform {transform}"))
            if self.transform != transform and present:
                problems.append((key, f"only used with transform {transform}"))
        if self.vocabulary is not None:
            if len(set(self.vocabulary)) != len(self.vocabulary):
                problems.append(("vocabulary", "expected distinct entries"))
            if "other" in self.vocabulary:
                problems.append(("vocabulary", "'other' is reserved for unknown categories"))
        if self.default is not None:
            if self.transform == "onehot" and not isinstance(self.default, str):
                problems.append(("default", f"expected a string, got {self.default!r}"))
            if self.transform != "onehot" and isinstance(self.default, str):
                problems.append(("default", f'expected a number, got "{self.default}"'))
        return problems


@dataclass(frozen=True)
class FeaturesConfig:
    """How an event becomes a feature vector."""

    fields: list[FeatureField] = option(help="The input fields, in column order.", min_items=1)
    key: str | None = option(
        None, help="Dotted path of the event's id, carried into alerts (default: the Kafka key)."
    )
    event_time: str | None = option(
        None, help="Dotted path of the event time (default: the record's timestamp)."
    )
    event_time_format: Literal["epoch_ms", "epoch_s", "iso8601"] = option(
        "epoch_ms", help="How event_time is written."
    )
    max_message_bytes: int = option(
        1_048_576, help="Larger messages are dead-lettered (reason too_large).", min=1
    )

    def check(self) -> list[tuple[str, str]]:
        """Feature names are distinct."""
        seen: set[str] = set()
        problems = []
        for i, field in enumerate(self.fields):
            if field.name in seen:
                problems.append((f"fields[{i}].name", f"duplicate feature name {field.name!r}"))
            seen.add(field.name)
        return problems

    @property
    def n_features(self) -> int:
        """Number of feature columns after expansion (cyclic gives 2, onehot |vocabulary| + 1)."""
        widths = {"cyclic": lambda f: 2, "onehot": lambda f: len(f.vocabulary or ()) + 1}
        return sum(widths.get(f.transform, lambda f: 1)(f) for f in self.fields)


def config_fingerprint(features: FeaturesConfig) -> str:
    """A stable hash of what a feature vector means: the fields, paths and transforms.

    Checkpoints and model files store it and refuse to load under a config whose
    fingerprint differs (the columns would mean something else). Settings that do
    not change the vector (key, event time, message size limit) are left out, so
    changing them keeps checkpoints usable.
    """
    canonical = []
    for field in features.fields:
        entry = {
            "name": field.name,
            "path": field.source_path,
            "transform": field.transform,
            "default": field.default,
        }
        key = PARAMETER_OF.get(field.transform)
        if key is not None:
            value = getattr(field, key)
            entry[key] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        canonical.append(entry)
    text = json.dumps(["streamgmm-features/1", canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
