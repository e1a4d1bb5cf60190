"""The detector's parameters: what each may be, checked at construction, and stored.

``DetectorParameters`` is AnomalyDetector's base: its ``__init__`` takes the
parameters, checks them, stores them as attributes of the same names (but
``top_features``, kept as ``n_top``), and hands over to the detector's
``_start_state(model_path)``.
"""

from __future__ import annotations

import numpy as np

MODES = ("anomaly", "novelty")

# The largest share of the window ``trim`` may keep out of learning.
MAX_TRIM = 0.25


def _is_int(value) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_params(n_components, contamination, trim, window, warmup, mode, select_k,
                 top_features) -> int | str:
    """Raise a ValueError naming the first bad parameter and its value;
    return ``n_components`` as a plain int (or 'auto')."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if n_components != "auto":
        if not _is_int(n_components) or n_components < 1:
            raise ValueError(f"n_components: expected an integer >= 1 or 'auto', "
                             f"got {n_components!r}")
        n_components = int(n_components)
    for name, value in (("window", window), ("warmup", warmup)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if not _is_int(top_features) or top_features < 0:
        raise ValueError(f"top_features: expected an integer >= 0, got {top_features!r}")
    if (len(tuple(select_k)) != 2 or not all(_is_int(k) for k in select_k)
            or not 1 <= select_k[0] <= select_k[1]):
        raise ValueError(f"select_k: expected (low, high) with 1 <= low <= high, "
                         f"got {select_k!r}")
    if trim is not None and not (isinstance(trim, (int, float)) and not isinstance(trim, bool)
                                 and contamination <= trim <= MAX_TRIM):
        expected = (f"a number in [contamination ({contamination}), {MAX_TRIM}] or None"
                    if contamination <= MAX_TRIM else
                    f"None with contamination ({contamination}) above {MAX_TRIM}")
        raise ValueError(f"trim: expected {expected}, got {trim!r}")
    k_min = select_k[0] if n_components == "auto" else n_components
    if warmup < max(k_min, 2):
        raise ValueError(f"warmup: expected at least n_components ({k_min}) and 2 events, "
                         f"got {warmup}")
    return n_components


class DetectorParameters:
    """The parameters of ``AnomalyDetector`` (documented there), checked and stored."""

    def __init__(
        self,
        n_components: int | str = "auto",
        covariance_type: str = "full",
        contamination: float = 0.02,
        trim: float | None = None,
        window: int = 5000,
        warmup: int = 500,
        mode: str = "anomaly",
        learn_from_anomalies: bool = False,
        refit_every: int = 5000,
        refit_seconds: float = 0.0,
        refit_n_init: int = 2,
        refit_max_duty: float | None = None,
        refit_worker: str = "process",
        refit_enabled: bool = True,
        select_k: tuple[int, int] = (1, 8),
        reg_covar: float = 1e-2,
        standardize: bool = True,
        tight_ratio: float = 5.0,
        top_features: int = 3,
        feature_names: list[str] | None = None,
        model_path: str | None = None,
        random_state: int | None = None,
        online_params: dict | None = None,
    ):
        """Check and store the parameters (``AnomalyDetector`` documents them),
        then let the detector set up its state (``_start_state``)."""
        n_components = check_params(
            n_components=n_components, contamination=contamination, trim=trim, window=window,
            warmup=warmup, mode=mode, select_k=select_k, top_features=top_features)
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.contamination = contamination
        self.trim = trim
        self.window = window
        self.warmup = warmup
        self.mode = mode
        self.learn_from_anomalies = learn_from_anomalies
        self.refit_every = refit_every
        self.refit_seconds = refit_seconds
        self.refit_n_init = refit_n_init
        self.refit_max_duty = refit_max_duty
        self.refit_worker = refit_worker
        self.refit_enabled = refit_enabled
        self.select_k = tuple(select_k)
        self.reg_covar = reg_covar
        self.standardize = standardize
        self.tight_ratio = tight_ratio
        self.n_top = top_features
        self.feature_names = list(feature_names) if feature_names else None
        self.random_state = random_state
        self.online_params = dict(online_params or {})
        self._start_state(model_path)

    def _start_state(self, model_path: str | None) -> None:
        raise NotImplementedError

    def _online(self, floor) -> dict:
        """The online mixture's parameters, with the variance floor ``floor``."""
        # The online model's own drift alarm refits synchronously and would take
        # an attack burst for drift; the detector follows drift with its rolling
        # threshold and background refits instead.
        params = dict(n_components=self._k_range()[1], covariance_type=self.covariance_type,
                      reg_covar=floor, random_state=self.random_state, drift_threshold=None)
        params.update(self.online_params)
        return params

    def _k_range(self) -> tuple[int, int]:
        """The range the number of components is chosen from (one value when fixed)."""
        if self.n_components == "auto":
            return self.select_k
        return (self.n_components, self.n_components)

    @property
    def _trim_level(self) -> float:
        """The share of the window kept out of learning: ``trim`` or ``contamination``
        (novelty mode fits a clean reference and learns nothing, so ``trim``
        does not apply)."""
        if self.trim is None or self.mode == "novelty":
            return self.contamination
        return float(self.trim)

