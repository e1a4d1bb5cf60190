"""The ``detector`` section of the daemon's configuration, and the parameters it gives.

The section is declared from the detector's own table
(``streamgmm.detect.params``): the bounds, the choices and the rules between
parameters are the ones ``AnomalyDetector`` checks, so a configuration the
schema takes is one the detector takes. The one bound of the schema's own is
``MAX_WINDOW``: the daemon keeps the window in memory.
``detector_params`` translates the section into AnomalyDetector's keyword
arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streamgmm.detect.params import (
    K_LEAST,
    MODES,
    REFIT_WORKERS,
    bound_problems,
    schema_bounds,
)
from streamgmm.model import COVARIANCE_TYPES
from streamgmm.stream.declare import option

# The largest window the daemon takes: window x features x 8 bytes, kept in
# memory and copied for a refit, must fit a container's memory.
MAX_WINDOW = 10_000_000


@dataclass(frozen=True)
class SelectKConfig:
    """The range 'auto' chooses the number of components from, by BIC."""

    enabled: bool = option(
        True, help="Obsolete switch kept for old files: n_components: auto is what chooses."
    )
    min: int = option(1, help="Fewest components tried.", min=K_LEAST)
    max: int = option(8, help="Most components tried.", min=K_LEAST)

    def check(self) -> list[tuple[str, str]]:
        """min <= max."""
        if self.min > self.max:
            return [("min", f"expected at most max ({self.max}), got {self.min}")]
        return []


@dataclass(frozen=True)
class RefitConfig:
    """Periodic batch refit of the window, against outlier bias."""

    enabled: bool = option(True, help="Refit in the background at all.")
    every_events: int = option(5_000, help="Refit after this many events; 0 = off.",
                               **schema_bounds("refit_every"))
    every_seconds: float = option(0.0, help="Refit after this many seconds; 0 = off.",
                                  **schema_bounds("refit_seconds"))
    n_init: int = option(2, help="Fresh restarts beside the warm start.",
                         **schema_bounds("refit_n_init"))
    max_duty: float = option(
        0.25,
        help="Most of the wall clock that background refits may take (a refit of t seconds "
        "is followed by the next no sooner than t / max_duty after it began), so that at "
        "high event rates refits leave the stream its processor; 0 = no bound.",
        **schema_bounds("refit_max_duty"),
    )
    worker: Literal[REFIT_WORKERS] = option(
        "process",
        help="Where refits run: a process of its own (started once, so a refit never competes "
        "with the stream for the interpreter) or a thread of the daemon's (no extra process; "
        "batches take up to about twice as long while a refit runs).",
    )
    select_k: SelectKConfig = option(help="Choice of n_components by BIC.", factory=SelectKConfig)


@dataclass(frozen=True)
class DetectorConfig:
    """The mixture and the anomaly threshold."""

    n_components: int | Literal["auto"] = option(
        "auto",
        help="Gaussian components in the mixture, or 'auto' to choose them by BIC over "
        "refit.select_k at the warm-up and at every refit.",
        **schema_bounds("n_components"),
    )
    covariance_type: Literal[COVARIANCE_TYPES] = option(
        "full", help="Covariance form, as in scikit-learn."
    )
    contamination: float = option(
        0.02,
        help="Share of events flagged: the threshold is this percentile of recent scores.",
        **schema_bounds("contamination"),
    )
    trim: float | None = option(
        None,
        help="Share of recent events kept out of learning and refits (the lowest-scoring); "
        "null: contamination. Set it above the share of events expected to be anomalous "
        "when that is more than the alert budget, so that they are not learned as normal "
        "(a compact group that recurs all over the window is still learned as a mode).",
        **schema_bounds("trim"),
    )
    window: int = option(
        5_000,
        help="Events in the rolling threshold and refit window (kept in memory: "
        "window x features x 8 bytes, twice over during a refit).",
        **{**schema_bounds("window"), "max": MAX_WINDOW},
    )
    warmup: int = option(
        1_000, help="Events buffered and batch-fitted before the first score (at most "
        "window, at least n_components).", **schema_bounds("warmup")
    )
    mode: Literal[MODES] = option(
        "anomaly",
        help="anomaly: learn from the stream scored; novelty: fit on a clean reference "
        "(model_path or the warm-up) and only score.",
    )
    model_path: str | None = option(
        None,
        help="A model file trained offline: the novelty reference, or a start without warm-up.",
    )
    learn_from_anomalies: bool = option(
        False,
        help="Let events below the learning gate (flagged, or trimmed) into the online "
        "update (off: a fraud burst cannot teach the model that fraud is normal).",
    )
    random_state: int | None = option(None, help="Seed for initialisation; set it to reproduce.",
                                      **schema_bounds("random_state"))
    top_features: int = option(
        3,
        help="Features named in each alert's explanation (at most the number of columns).",
        **schema_bounds("top_features"),
    )
    refit: RefitConfig = option(help="Periodic refit.", factory=RefitConfig)

    def check(self) -> list[tuple[str, str]]:
        """The bounds between the detector's parameters (``params.BOUNDS``): the
        warm-up fits in the window and has an event per component; trim is at
        least contamination."""
        return bound_problems(detector_params(self))


def detector_params(cfg: Any, feature_names: list[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``AnomalyDetector`` that a ``detector`` config
    section gives, for a fresh detector and for ``AnomalyDetector.from_state_arrays``
    on a restart alike.

    ``refit.max_duty: 0`` (no bound) becomes None; ``top_features`` is at
    most the number of feature columns.
    """
    refit = cfg.refit
    return dict(
        n_components=cfg.n_components, covariance_type=cfg.covariance_type,
        contamination=cfg.contamination, trim=cfg.trim, window=cfg.window,
        warmup=cfg.warmup,
        mode=cfg.mode, learn_from_anomalies=cfg.learn_from_anomalies,
        refit_every=refit.every_events, refit_seconds=refit.every_seconds,
        refit_n_init=refit.n_init, refit_max_duty=refit.max_duty or None,
        refit_worker=refit.worker, refit_enabled=refit.enabled,
        select_k=(refit.select_k.min, refit.select_k.max),
        top_features=min(cfg.top_features, len(feature_names or []) or cfg.top_features),
        feature_names=list(feature_names) if feature_names else None,
        model_path=cfg.model_path, random_state=cfg.random_state,
    )
