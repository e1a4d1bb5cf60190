"""The detector's parameters: one declared table, checked at construction and
read by the YAML schema.

``PARAMETERS`` declares what each parameter may be (any one of its
alternatives, scikit-learn's ``_parameter_constraints`` manner); ``BOUNDS``
the bounds one parameter's value sets on another's. ``DetectorParameters``,
AnomalyDetector's base, checks both at construction and stores the
parameters as attributes of the same names (but ``top_features``, kept as
``n_top``). ``streamgmm.service.detector_config`` declares the YAML's
``detector`` section from the same table (``schema_bounds``, the choices,
``bound_problems``), so the daemon and the library cannot disagree.

The detector names the parameter, what it may be given the others, and the
value: ``trim: expected a number in [contamination (0.02), 0.25] or None, got
0.3``; ``warmup: expected at least n_components (4) and 2 events, got 2``. A
range whose ends are single bounds reads as an interval; one end bounded by
several reads as words, for the end that failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamgmm.model import COVARIANCE_TYPES
from streamgmm.model.constraints import Bound, Interval, Options, Pair

MODES = ("anomaly", "novelty")
REFIT_WORKERS = ("thread", "process")
# The largest share of the window ``trim`` may keep out of learning (a quarter
# trimmed is the usual bound of robust estimates, ``gate.py``).
MAX_TRIM = 0.25
# The fewest components 'auto' may choose from.
K_LEAST = 1

PARAMETERS: dict[str, tuple] = {
    "n_components": (Interval(int, K_LEAST, None), Options("auto")),
    "covariance_type": (Options(*COVARIANCE_TYPES),),
    "contamination": (Interval(float, 0, 0.5, closed="neither"),),
    "trim": (Interval(float, 0, MAX_TRIM, closed="right"), None),
    "window": (Interval(int, 1, None),),
    "select_k": (Pair(K_LEAST),),
    "warmup": (Interval(int, 2, None, unit="events"),),
    "mode": (Options(*MODES),),
    "learn_from_anomalies": (bool,),
    "refit_every": (Interval(int, 0, None),),
    "refit_seconds": (Interval(float, 0, None),),
    "refit_n_init": (Interval(int, 1, None),),
    "refit_max_duty": (Interval(float, 0, 1, closed="both"), None),
    "refit_worker": (Options(*REFIT_WORKERS),),
    "refit_enabled": (bool,),
    "reg_covar": (Interval(float, 0, None),),
    "standardize": (bool,),
    "tight_ratio": (Interval(float, 0, None, closed="neither"),),
    "top_features": (Interval(int, 0, None),),
    "random_state": (Interval(int, 0, None), None),
}


def fewest_components(params: Mapping[str, Any]) -> int:
    """The fewest components a fit may have: ``n_components``, or the least of
    ``select_k`` with 'auto'."""
    k = params["n_components"]
    return tuple(params["select_k"])[0] if k == "auto" else k


BOUNDS = (
    Bound("warmup", "max", "window"),
    Bound("trim", "min", "contamination"),
    Bound("warmup", "min", "n_components", fewest_components),
)


def interval(name: str) -> Interval:
    """The interval declared for ``name``."""
    return next(c for c in PARAMETERS[name] if isinstance(c, Interval))


def choices(name: str) -> tuple[str, ...]:
    """The choices declared for ``name``."""
    return next(c for c in PARAMETERS[name] if isinstance(c, Options)).choices


def schema_bounds(name: str) -> dict[str, Any]:
    """The static bounds of ``name``, as YAML schema field metadata."""
    return interval(name).schema_bounds()


def check_params(params: Mapping[str, Any]) -> None:
    """Raise a ValueError for the first parameter (in table order) that breaks
    its declaration or a bound."""
    for name, alternatives in PARAMETERS.items():
        value = params[name]
        if value is None and None in alternatives:
            continue
        bounds = [b for b in BOUNDS if b.name == name]
        if not any(_accepts(c, value) for c in alternatives) or not all(
                b.holds(params) for b in bounds):
            raise ValueError(f"{name}: expected {_expected(name, value, params)}, "
                             f"got {value!r}")


def bound_problems(params: Mapping[str, Any], null: str = "null") -> list[tuple[str, str]]:
    """The ``BOUNDS`` that ``params`` (each valid on its own) break, as (name,
    message) in the YAML validator's words: 'expected at least contamination
    (0.02), got 0.01'; ``null``: how the schema writes None."""
    problems = []
    for b in BOUNDS:
        if b.holds(params):
            continue
        value, high = params[b.name], interval(b.name).high
        if b.side == "min" and high is not None and b.of(params) > high:
            message = f"{null} with {b.named(params)} above {high}"
        else:
            message = f"{'at least' if b.side == 'min' else 'at most'} {b.named(params)}"
        problems.append((b.name, f"expected {message}, got {value}"))
    return problems


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint is bool:
        return isinstance(value, bool)
    return constraint.accepts(value)


def _describe(constraint: Any, null: str = "None") -> str:
    if constraint is None:
        return null
    return "True or False" if constraint is bool else constraint.describe()


def _expected(name: str, value: Any, params: Mapping[str, Any]) -> str:
    """What ``name`` may be, given the other parameters (the detector's words)."""
    bounds = [b for b in BOUNDS if b.name == name]
    alternatives = PARAMETERS[name]
    if not bounds:
        return " or ".join(_describe(c) for c in alternatives)
    text = _bounded(interval(name), bounds, value, params)
    return text if None not in alternatives or text.startswith("None") else text + " or None"


def _bounded(iv: Interval, bounds: list[Bound], value: Any, params: Mapping[str, Any]) -> str:
    """An interval with bounds set by other parameters, given their values."""
    lows = [b for b in bounds if b.side == "min"]
    highs = [b for b in bounds if b.side == "max"]
    # A bound of the interval's own that a named bound implies is not repeated
    # (trim > 0 follows from trim >= contamination, contamination being > 0).
    low_implied = any(interval(b.by).low is not None and iv.low is not None
                      and interval(b.by).low >= iv.low for b in lows)
    low_words = [b.named(params) for b in lows] + (
        [] if iv.low is None or low_implied else [f"{iv.low} {iv.unit}".strip()])
    high_words = [b.named(params) for b in highs] + (
        [] if iv.high is None else [f"{iv.high} {iv.unit}".strip()])
    least = max([b.of(params) for b in lows] + ([iv.low] if iv.low is not None else []))
    if iv.high is not None and least > iv.high:
        return f"None with {' and '.join(low_words)} above {iv.high}"
    if len(low_words) == 1 and len(high_words) == 1:
        left = "[" if lows or iv.low_closed else "("
        right = "]" if highs or iv.high_closed else ")"
        return f"{iv.noun} in {left}{low_words[0]}, {high_words[0]}{right}"
    low_failed = not iv.of_kind(value) or value < least
    high_failed = not iv.of_kind(value) or not low_failed
    sides = ([f"at least {' and '.join(low_words)}"] if low_failed and low_words else []) + (
        [f"at most {' and '.join(high_words)}"] if high_failed and high_words else [])
    return " and ".join(sides)


class DetectorParameters:
    """The parameters of ``AnomalyDetector`` (documented there), checked and stored.

    ``_start_state(model_path)`` is the detector's: it sets up the state once
    the parameters are in.
    """

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
        check_params(locals())  # every argument, by name, against PARAMETERS and BOUNDS
        self.n_components = n_components if n_components == "auto" else int(n_components)
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

