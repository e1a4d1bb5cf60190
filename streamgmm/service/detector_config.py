"""The ``detector`` section of the daemon's configuration, as AnomalyDetector's parameters."""

from __future__ import annotations

from typing import Any


def detector_params(cfg: Any, feature_names: list[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``AnomalyDetector`` that a ``detector`` config
    section (``DetectorConfig``) gives, for a fresh detector and for
    ``AnomalyDetector.from_state_arrays`` on a restart alike.

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
