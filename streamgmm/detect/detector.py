"""AnomalyDetector: prequential scoring, a rolling percentile threshold, online
learning that leaves flagged events out, background refits on the cleaned
window, and explanations. It knows nothing of Kafka."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np

from streamgmm.detect.explain import mahalanobis_shares, top_features
from streamgmm.detect.groups import GroupRule, select_by_bic, spread_logdet
from streamgmm.detect.refit import RefitResult, Refitter
from streamgmm.detect.threshold import RollingThreshold
from streamgmm.detect.window import FeatureWindow
from streamgmm.model.base import MAX_MAGNITUDE, ConvergenceWarning, check_array
from streamgmm.model.estep import log_gaussian_prob, logsumexp_rows
from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.online import OnlineGaussianMixture

log = logging.getLogger(__name__)

MODES = ("anomaly", "novelty")

# The variance floor under which the masking guard judges how tight a component
# is (``reg_covar`` hides it from the scores): near-identical events stay tight.
GUARD_FLOOR = 1e-6

# Restarts of the warm-up fit: it runs once on a few hundred events, so it can
# afford many, and everything after it starts from its solution.
WARMUP_RESTARTS = 10

# Share of the window's scored events (those the model was not fitted on) that
# events kept out of learning may reach before they are taken as a change of
# regime rather than a burst of anomalies (see ``_update_hold``): half, when
# they are as many as the rest.
REGIME_SHARE = 0.5
# The largest share of the window ``trim`` may keep out of learning.
MAX_TRIM = 0.25
# Held events spread over this share of the window's tenths are a recurring
# pattern or a partial change of the stream, not a burst (see ``_update_hold``).
SPREAD_SHARE = 0.75


class Detections:
    """Per-event results of one ``process`` call (arrays of length n).

    ``top_features`` and ``top_shares`` (the explanation of every event) are
    worked out on first use, from the model as it scored the batch: a caller
    that explains only its alerts asks :meth:`explanation` for those rows and
    pays for nothing else.
    """

    def __init__(
        self, score: np.ndarray, is_anomaly: np.ndarray, threshold: np.ndarray,
        percentile: np.ndarray, component: np.ndarray,
        explain: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        model_version: int, ready: bool,
    ) -> None:
        self.score = score
        self.is_anomaly = is_anomaly
        self.threshold = threshold
        self.percentile = percentile
        self.component = component
        self.model_version = model_version
        self.ready = ready
        self._explain = explain
        self._all: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.score.shape[0]

    def explanation(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top feature indices and their shares of D^2, (len(rows), t) each, for ``rows``."""
        rows = np.asarray(rows, dtype=np.intp)
        if self._all is not None:
            return self._all[0][rows], self._all[1][rows]
        return self._explain(rows)

    @property
    def top_features(self) -> np.ndarray:
        """Indices (n, t) of each event's features with the largest shares of D^2."""
        return self._explained()[0]

    @property
    def top_shares(self) -> np.ndarray:
        """Those features' shares (n, t); they sum to one over all features."""
        return self._explained()[1]

    def _explained(self) -> tuple[np.ndarray, np.ndarray]:
        if self._all is None:
            self._all = self._explain(np.arange(len(self)))
        return self._all


class AnomalyDetector:
    """Streaming anomaly detector on a Gaussian mixture.

    Parameters
    ----------
    n_components : int or 'auto', default='auto'
        Components of the mixture; 'auto' chooses them by BIC over
        ``select_k`` at the warm-up and at every refit, so the model grows with
        what the stream shows (a few components on a few hundred events in many
        dimensions, more on long streams of few features). Components that do
        not rest on five events per free parameter (45 events for a full
        covariance in 3 dimensions, 1,260 in 21) are pruned from every fit
        before it is compared: a smaller group is scored as unusual rather than
        modelled as a mode of its own (``groups.supported``). A fixed number is
        kept as given.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    contamination : float, default=0.02
        Fraction of events flagged: the threshold is this percentile of the
        scores of the last ``window`` events.
    trim : float or None, default=None
        Share of the window's lowest-scoring events kept out of learning and
        out of refits (the learning gate is this percentile of the window's
        scores); None: ``contamination``. ``contamination`` is the alert
        budget; ``trim`` is how much of the stream is not taken as normal.
        Robust estimates need the trimmed share to exceed the share of
        anomalous events: a stream with more anomalies than the alerts should
        name (a 5 % fraud rate, one alert per 200 events) learns them as normal
        unless ``trim`` is set above that rate. It keeps out anomalies that are
        scattered or spread wide; a compact group that recurs all over the
        window is taken back by refits as a mode of its own, as a small
        legitimate mode would be (see ``learn_from_anomalies``). Trimming more
        than the stream needs costs the model its tails and small modes (they
        are not learned), so it stays at ``contamination`` unless the rate is
        known to be higher. At least ``contamination``, at most 0.25 (a
        quarter trimmed is the usual bound of robust estimates; the window must
        keep room to tell a surge of low scores, and a change of regime, from
        the trimmed share). Novelty mode ignores it: its reference is clean,
        and it does not learn.
    window : int, default=5000
        Events kept for the threshold and for refits.
    warmup : int, default=500
        Events buffered before the first batch fit; their score is NaN and none
        is flagged.
    mode : {'anomaly', 'novelty'}, default='anomaly'
        'anomaly' learns from the stream it scores; 'novelty' fits on a
        reference set (``fit``) or a model file (``model_path``) and only scores.
    learn_from_anomalies : bool, default=False
        Whether events below the learning gate (the flagged ones, and with
        ``trim`` set the rest of the trimmed share) enter the online update.
        When many more events than that share score low at once (a burst of
        attacks), the bar for learning stays where it was until the burst has
        passed, so a burst cannot teach the model that it is normal;
        low-scoring events that fill half the window, or keep coming all over
        it, are learned as a change of the stream. A refit also takes back
        held-out events that recur over the window as a group of their own,
        neither as tight as an attack cluster nor scattered (a small
        legitimate mode the model lacked, which would otherwise be flagged,
        never learned, and flagged for good).
    refit_every : int, default=5000
        Events between background refits (0 = never by count).
    refit_seconds : float, default=0
        Seconds between refits (0 = never by time).
    refit_n_init : int, default=2
        Fresh initialisations tried at each refit, beside the warm start.
    refit_worker : {'process', 'thread'}, default='process'
        Where refits run. A process of its own (``python -m
        streamgmm.detect.refit_worker``, started at the first refit and kept for
        the detector's life; it never imports the caller's script, and what
        crosses is plain arrays) costs the stream nothing but handing over the
        window. A thread shares the interpreter with ``process``, whose batches
        then take up to about twice as long while a refit runs (the refit holds
        the GIL between its numpy calls). Where no process can be started,
        refits move to a thread, with an error in the log. ``close()`` stops
        the worker; so does the end of the interpreter.
    refit_max_duty : float, optional
        Most of the wall-clock time background refits may take: a refit that
        took t seconds is followed by the next no sooner than t / max_duty
        seconds after it started. At high event rates ``refit_every`` would
        otherwise keep a core busy refitting (and contend with ``process``
        for the interpreter); the daemon sets 0.25. None: no bound.
    select_k : tuple (min, max), default=(1, 8)
        The range of components 'auto' chooses from.
    reg_covar : float, default=1e-2
        Variance added to every covariance's diagonal, in units of each
        feature's warm-up scale (see ``standardize``): no component is narrower
        than a tenth of a feature's typical spread. Real streams repeat values
        (mass points: the same request size, the same amount); without a floor a
        component collapses onto them, and an ordinary event just beside them
        gets a log-density in the hundreds below zero, ranked below real attacks.
        The masking guard judges tightness without this floor, so a burst of
        near-identical events still stands out. Discrete features (few distinct values in
        the warm-up: flags, one-hot columns, counts) also get the variance of
        their rounding, step^2 / 12: a component where such a feature never
        varies otherwise gives an event one step away an absurd log-density.
    standardize : bool, default=True
        Centre and scale features by the warm-up's median and median absolute
        deviation (the standard deviation where that is 0) before modelling
        (fixed afterwards, saved with the state), so that the variance floor and
        the mixture do not depend on the features' units.
        Scores are reported as log-densities of the original features.
    tight_ratio : float, default=5.0
        A component lighter than ``contamination`` whose standard deviation
        (without the ``reg_covar`` part of the floor) is this many times smaller
        than the typical component's is treated as a dense anomaly cluster:
        events are scored against the other components.
    top_features : int, default=3
    feature_names : list of str or None
    model_path : str or None
        A model file to start from (skips the warm-up).
    random_state : int or None
    online_params : dict or None
        Extra parameters of the OnlineGaussianMixture (schedule, horizon).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0)
    >>> normal = rng.normal(0, 1, (1000, 2))
    >>> out = det.process(normal)
    >>> out = det.process(np.array([[0.1, 0.0], [8.0, 0.0]]))
    >>> out.is_anomaly.tolist()
    [False, True]
    >>> det.explain(out, 1)[0][0]
    'x0'
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
        self.threshold_ = RollingThreshold(window, contamination)
        self.model: OnlineGaussianMixture | None = None
        self.model_version = 0
        self.n_events_ = 0
        self._warm: list[np.ndarray] = []
        self._frozen_threshold: float | None = None
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.floor_: np.ndarray | None = None
        self._window: FeatureWindow | None = None
        self._major: np.ndarray | None = None
        self._refit_soon = False
        self._hold_gate: float | None = None
        # Sequence number of the first event scored by a model not fitted on it
        # (the first after the warm-up): the window's older events are in-sample.
        self._first_scored = 0
        self._lock = threading.RLock()
        self._refitter = Refitter(refit_n_init, reg_covar, k_range=self._k_range(),
                                  random_state=random_state, worker=refit_worker)
        self._last_refit_events = 0
        self._last_refit_time = time.monotonic()
        self.refit_counts = {"accepted": 0, "rejected": 0, "failed": 0}
        self.last_refit_seconds = float("nan")
        #: Called with (outcome, seconds) as each refit is applied (the daemon's metrics).
        self.on_refit: Callable[[str, float], None] | None = None
        if model_path is not None:
            from streamgmm.model.io import load

            self._start_from(load(model_path))
            self._set_scaling(None)

    # -- properties read by the daemon ---------------------------------------
    @property
    def ready(self) -> bool:
        """True once a model exists and the threshold has enough scores."""
        return self.model is not None and (
            self._frozen_threshold is not None or len(self.threshold_) >= min(self.warmup,
                                                                              self.window))

    @property
    def threshold_value(self) -> float:
        return self._threshold()

    @property
    def mean_score(self) -> float:
        return self.threshold_.mean()

    @property
    def weights(self) -> np.ndarray:
        return np.array([]) if self.model is None else self.model.weights_.copy()

    @property
    def refit_stats(self) -> dict:
        return {**self.refit_counts, "last_seconds": self.last_refit_seconds}

    # -- starting ------------------------------------------------------------
    def _online(self) -> dict:
        # The online model's own drift alarm refits synchronously and would take
        # an attack burst for drift; the detector follows drift with its rolling
        # threshold and background refits instead.
        params = dict(n_components=self._k_range()[1], covariance_type=self.covariance_type,
                      reg_covar=self._floor(), random_state=self.random_state,
                      drift_threshold=None)
        params.update(self.online_params)
        return params

    def _set_scaling(self, X: np.ndarray | None) -> None:
        """Fix the feature scaling from warm-up (or reference) events; None = identity."""
        if X is None or not self.standardize:
            d = self.model.n_features_in_ if X is None else X.shape[1]
            self.center_, self.scale_ = np.zeros(d), np.ones(d)
        else:
            # Robust: a warm-up holding a far cluster or outliers must not inflate
            # the scale of the normal data (MAD, falling back to the standard
            # deviation for features such as one-hot columns whose MAD is 0).
            self.center_ = np.median(X, axis=0)
            mad = 1.4826 * np.median(np.abs(X - self.center_), axis=0)
            std = X.std(axis=0)
            # A spread too small to square in float64 counts as none.
            tiny = 1.0 / MAX_MAGNITUDE
            self.scale_ = np.where(mad > tiny, mad, np.where(std > tiny, std, 1.0))
        # log p(x) = log p(z) - sum(log scale): scores stay densities of x.
        self._log_jacobian = float(np.log(self.scale_).sum())
        floor = np.zeros_like(self.scale_) if X is None else quantisation_floor(X) / self.scale_**2
        self.floor_ = self.reg_covar + floor
        self._refitter.reg_covar = self.floor_

    def _k_range(self) -> tuple[int, int]:
        """The range the number of components is chosen from (one value when fixed)."""
        if self.n_components == "auto":
            return self.select_k
        return (self.n_components, self.n_components)

    def _floor(self):
        """The variance floor in use: per feature once the scaling is fixed."""
        return self.reg_covar if self.floor_ is None else self.floor_

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        # Clipped: a value far beyond a small warm-up spread stays finite when
        # squared (it is astronomically unusual either way). A tenth of the
        # input bound, so that means of clipped values pass as means_init.
        Z = (X - self.center_) / self.scale_
        return np.clip(Z, -SCALED_BOUND, SCALED_BOUND, out=Z)

    def _start_from(self, fitted, X: np.ndarray | None = None) -> None:
        n_events = None if X is None else X.shape[0]
        params = self._online()
        params["n_components"] = fitted.weights_.shape[0]
        # A model file keeps the variance floor it was fitted with.
        params["reg_covar"] = getattr(fitted, "reg_covar", self._floor())
        self.model = OnlineGaussianMixture.from_model(fitted, n_events=n_events, X=X, **params)
        self.model_version += 1
        if self._window is None:
            # A swap keeps the window: the next refit and the re-scoring need it.
            self._window = FeatureWindow(self.window, self.model.n_features_in_)
        self._update_major()
        extras = getattr(fitted, "extras_", {})
        if self.mode == "novelty" and "score_percentiles" in extras:
            self._frozen_threshold = float(np.interp(
                100 * self.contamination, extras["percentile_levels"],
                extras["score_percentiles"]))

    def fit(self, X) -> AnomalyDetector:
        """Fit on a reference set (novelty mode) or as the warm-up (anomaly mode)."""
        X = check_array(X)
        with self._lock:
            self._fit_initial(X)
            if self.mode == "novelty":
                self._frozen_threshold = self._threshold()
        return self

    def _fit_initial(self, X_raw: np.ndarray) -> None:
        """Batch EM on the warm-up, refitted once without its lowest-scoring events."""
        self._set_scaling(X_raw)
        X = self._scaled(X_raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            low, high = self._k_range()
            ks = [k for k in range(low, high + 1) if k < X.shape[0]] or [low]
            restarts = max(2, WARMUP_RESTARTS // len(ks))
            fits = [GaussianMixture(k, covariance_type=self.covariance_type,
                                    reg_covar=self.floor_, n_init=restarts,
                                    random_state=self.random_state).fit(X)
                    for k in ks]
            gm = select_by_bic(fits, X, reg_covar=self.floor_ if low < high else None)
            k = gm.weights_.shape[0]
            scores = gm.score_samples(X)
            keep = scores >= np.percentile(scores, 100 * self._trim_level)
            if keep.sum() > 2 * k:
                gm = GaussianMixture(k, covariance_type=self.covariance_type,
                                     reg_covar=self.floor_, weights_init=gm.weights_,
                                     means_init=gm.means_, precisions_init=gm.precisions_
                                     ).fit(X[keep])
        self._start_from(gm, X[keep])
        seq = self.n_events_ - X.shape[0] + np.arange(X.shape[0])
        score, _, log_norm, _ = self._scores(X)
        self._window.push(X, seq, log_norm, keep)
        self.threshold_.push(score)
        self._last_refit_events = self.n_events_
        self._first_scored = self.n_events_

    # -- scoring -------------------------------------------------------------
    def _update_major(self) -> None:
        """Mark light, tight components (dense anomaly clusters) as not 'major'."""
        m = self.model
        k = m.weights_.shape[0]
        major = np.ones(k, dtype=bool)
        if m.covariance_type != "tied" and k > 1:
            logdet = self._spread_logdet() / m.n_features_in_
            heavy = m.weights_ >= self.contamination
            if heavy.any():
                typical = np.average(logdet[heavy], weights=m.weights_[heavy])
                tight = logdet < typical - 2.0 * np.log(self.tight_ratio)
                major = ~((m.weights_ < self.contamination) & tight)
        self._major = major if major.any() else np.ones(k, dtype=bool)

    def _spread_logdet(self) -> np.ndarray:
        """log det of each component's covariance without the ``reg_covar`` part of
        the floor: how tight its events are, which the floor hides from the scores."""
        m = self.model
        return spread_logdet(m.covariances_, m.covariance_type, self._guard_shift())

    def _guard_shift(self) -> np.ndarray:
        """The part of the model's variance floor the guard does not count."""
        d = self.model.n_features_in_
        floor = np.broadcast_to(np.asarray(self.model.reg_covar, dtype=np.float64), (d,))
        return np.clip(np.minimum(self.reg_covar, floor) - GUARD_FLOOR, 0.0, None)

    def _group_rule(self) -> GroupRule | None:
        """The guard's reference for a refit's recurring groups (None: no guard)."""
        m = self.model
        heavy = m.weights_ >= self.contamination
        if m.covariance_type == "tied" or not heavy.any():
            return None
        logdet = self._spread_logdet() / m.n_features_in_
        typical = float(np.average(logdet[heavy], weights=m.weights_[heavy]))
        return GroupRule(typical, self.tight_ratio, self._guard_shift()) \
            if np.isfinite(typical) else None

    def _scores(self, X: np.ndarray):
        """Scores of scaled events X.

        Returns (score: log-density of the original event under the major
        components, responsibilities, log-density of the scaled event under the
        whole mixture, weighted log-probabilities per component).
        """
        m = self.model
        wlp = log_gaussian_prob(X, m.means_, m.precisions_cholesky_, m.covariance_type)
        with np.errstate(divide="ignore"):
            wlp += np.log(m.weights_)
        top = wlp.max(axis=1, keepdims=True)
        e = np.exp(wlp - top)
        total = e.sum(axis=1)
        log_norm = np.log(total) + top[:, 0]
        resp = e / total[:, None]
        major = self._major
        if major.all():
            score = log_norm - self._log_jacobian
        else:
            # In log space from the major components' own maximum: an event far
            # out along a minor component would underflow to -inf through ``e``.
            score = (logsumexp_rows(wlp[:, major]) - np.log(m.weights_[major].sum())
                     - self._log_jacobian)
        return score, resp, log_norm, wlp

    def score_samples(self, X) -> np.ndarray:
        """The anomaly score of each event (its log-density under the major
        components), without flagging, learning or recording anything."""
        with self._lock:
            if self.model is None:
                raise ValueError("score_samples: no model yet (the warm-up is not complete)")
            X = check_array(X, n_features=self.model.n_features_in_)
            return self._scores(self._scaled(X))[0]

    def score(self, X) -> float:
        """Mean anomaly score (log-density) of the events: a held-out log-likelihood."""
        return float(self.score_samples(X).mean())

    def _threshold(self) -> float:
        if self._frozen_threshold is not None:
            return self._frozen_threshold
        return self.threshold_.threshold()

    @property
    def _trim_level(self) -> float:
        """The share of the window kept out of learning: ``trim`` or ``contamination``
        (novelty mode fits a clean reference and learns nothing, so ``trim``
        does not apply)."""
        if self.trim is None or self.mode == "novelty":
            return self.contamination
        return float(self.trim)

    def _surge_margin(self, n: int) -> float:
        """How far above the trimmed share the held events may go before a hold
        starts: ``contamination``, or with a larger ``trim`` at least three binomial
        standard deviations of the held count in a window of ``n`` (a large
        trimmed share varies more than a small budget from window to window,
        and a clean stream must not look like a surge)."""
        t = self._trim_level
        if t == self.contamination:
            return self.contamination
        return max(self.contamination, 3.0 * np.sqrt(t * (1.0 - t) / max(n, 1)))

    def _gate(self) -> float:
        """The score below which an event is kept out of learning and refits.

        Normally the ``trim`` percentile of the window (the threshold, unless
        ``trim`` is set). About that share of the window is then kept out of
        learning; when many more events score low (``_surge_margin`` more),
        the window's percentile would soon sit inside them and let the rest of
        them in: a burst of 1,000 near-identical attacks would teach the model
        that it is normal. So while such a surge lasts, the gate stays where it
        was when the surge began, and the surge stays out (``_update_hold``).
        """
        if self._hold_gate is not None:
            return self._hold_gate
        if self._frozen_threshold is not None:
            return self._frozen_threshold
        return self.threshold_.quantile(self._trim_level)

    def _update_hold(self, gate: float) -> None:
        """Start, keep or end a hold after a batch scored against ``gate``.

        A hold ends when the held events leave the window (the burst is over),
        or when they are not a burst: when they fill ``REGIME_SHARE`` of the
        window's scored events (an abrupt change of regime): they are taken as
        normal, the gate returns to its percentile and a refit comes next. Scored
        events, not the whole window: the warm-up's events were fitted, so few
        of them are held (its lowest-scoring trimmed share), and early on they
        would hide a change that every fresh event shows (the warm-up of a card
        stream that began at midnight has no evening in it: most evening
        events score below its threshold). This is judged before a hold
        starts, so a change seen in the first batches after the warm-up never
        freezes the gate at the warm-up's threshold. Held
        events spread over the window rather than bunched in time (more than
        the trimmed share plus its margin, ``_surge_margin``, in
        ``SPREAD_SHARE`` of its tenths) are a recurring pattern, or a part of
        the traffic that changed: they are taken as normal too, except in
        tenths that are mostly held (a burst still in the window stays out).
        """
        n, held = len(self._window), self._window.unlearned()
        budget = self._trim_level + self._surge_margin(n)
        if held <= budget * n:
            self._hold_gate = None
        elif self._changed_regime():
            self._window.mark_learned()
            self._hold_gate = None
            self._refit_soon = True
        elif self._hold_gate is None:
            self._hold_gate = gate
        else:
            share = self._held_by_tenth()
            if np.mean(share > budget) >= SPREAD_SHARE:
                self._window.mark_learned(np.repeat(share <= REGIME_SHARE, self._tenths()))
                self._refit_soon = True

    def _changed_regime(self) -> bool:
        """Whether held events are ``REGIME_SHARE`` of the window's scored events."""
        scored, held = self._window.count_since(self._first_scored)
        return held >= REGIME_SHARE * scored

    def _tenths(self) -> np.ndarray:
        """Sizes of the window's tenths, oldest first."""
        return np.diff(np.linspace(0, len(self._window), 11).astype(int))

    def _held_by_tenth(self) -> np.ndarray:
        """Share of held events in each tenth of the window, oldest first."""
        sizes = self._tenths()
        held = ~self._window.learned_ordered()
        return np.add.reduceat(held, np.r_[0, np.cumsum(sizes)[:-1]]) / np.maximum(sizes, 1)

    def process(self, X, learn: bool = True, alert: bool = True) -> Detections:
        """Score a micro-batch, flag events below the threshold, then learn from it.

        Parameters
        ----------
        X : array-like of shape (n_events, n_features)
        learn : bool, default=True
            Record the batch: update the model (anomaly mode), the threshold and
            feature windows and the event count. False scores the batch without
            changing any state (e.g. a batch redone after a failed delivery,
            which was recorded the first time); during warm-up it returns NaN.
        alert : bool, default=True
            False replays events already alerted (learn-only): the same learning
            as the first pass, with no flags returned.
        """
        with self._lock:
            X = check_array(X, n_features=None if self.model is None else
                            self.model.n_features_in_)
            if self.model is None and self._warm and X.shape[1] != self._warm[0].shape[1]:
                raise ValueError(f"X: has {X.shape[1]} features, but the warm-up's earlier "
                                 f"events have {self._warm[0].shape[1]}")
            self._apply_refit(self._refitter.poll())
            if self.model is None:
                return self._buffer_warmup(X) if learn else self._empty(*X.shape)
            return self._process_ready(self._scaled(X), learn, alert)

    def _buffer_warmup(self, X: np.ndarray) -> Detections:
        n = X.shape[0]
        self._warm.append(X)
        self.n_events_ += n
        buffered = sum(x.shape[0] for x in self._warm)
        if buffered >= self.warmup:
            version = self.model_version
            try:
                self._fit_initial(np.vstack(self._warm))
            except Exception:
                # The batch is refused as a whole: the next one finds the
                # warm-up as it was, not a buffer that fails every fit again.
                self._warm.pop()
                self.n_events_ -= n
                self.model, self.model_version, self._window, self._major = None, version, \
                    None, None
                self.center_ = self.scale_ = self.floor_ = None
                self.threshold_ = RollingThreshold(self.window, self.contamination)
                raise
            self._warm = []
        return self._empty(n, X.shape[1])

    def _empty(self, n: int, d: int) -> Detections:
        t = min(self.n_top, d)
        nan = np.full(n, np.nan)

        def nothing(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return np.full((rows.size, t), -1), np.full((rows.size, t), np.nan)

        return Detections(nan, np.zeros(n, bool), nan.copy(), nan.copy(),
                          np.full(n, -1), nothing, self.model_version, self.ready)

    def _process_ready(self, X: np.ndarray, learn: bool, alert: bool) -> Detections:
        n = X.shape[0]
        score, resp, log_norm, wlp = self._scores(X)
        thr = self._threshold()
        ready = self.ready
        below = (score < thr) if ready else np.zeros(n, dtype=bool)
        gate = self._gate()
        held = (score < gate) if ready else below
        flagged = below if alert else np.zeros(n, dtype=bool)
        pct = self.threshold_.percentile_rank(score)
        wlp[:, ~self._major] = -np.inf
        component = np.argmax(wlp, axis=1)
        m = self.model
        # Explained on demand, against the model that scored (learning moves it next).
        means, prec_chol, kind, n_top = (m.means_.copy(), m.precisions_cholesky_.copy(),
                                         m.covariance_type, self.n_top)

        def explain(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            shares = mahalanobis_shares(X[rows], component[rows], means, prec_chol, kind)
            return top_features(shares, n_top)

        if learn:
            self._record(X, score, held, resp, log_norm, gate)
        return Detections(score, flagged, np.full(n, thr), pct, component, explain,
                          self.model_version, ready)

    def _record(self, X, score, held, resp, log_norm, gate) -> None:
        """Enter a scored (scaled) batch into the model, the windows and the count.

        ``held``: events kept out of learning (below the learning gate)."""
        if self.mode == "anomaly":
            weights = None if self.learn_from_anomalies else (~held).astype(np.float64)
            self.model.learn(X, resp, log_norm, weights)
            self._update_major()
        seq = self.n_events_ + np.arange(X.shape[0])
        self.n_events_ += X.shape[0]
        if self._frozen_threshold is None:
            self.threshold_.push(score)
            self._window.push(X, seq, log_norm, ~held)
            if self.ready:
                self._update_hold(gate)
        self._maybe_refit()

    # -- refits --------------------------------------------------------------
    def _maybe_refit(self) -> None:
        if not self.refit_enabled or self.mode != "anomaly" or self._refitter.busy:
            return
        # The warm-up model is fitted on the fewest events, so the first refit
        # comes early: once the window holds twice the warm-up.
        gap = self.refit_every
        if self.model_version == 1 and sum(self.refit_counts.values()) == 0:
            gap = min(gap, self.warmup) if gap else self.warmup
        due_events = gap and self.n_events_ - self._last_refit_events >= gap
        due_time = self.refit_seconds and (
            time.monotonic() - self._last_refit_time >= self.refit_seconds)
        if not (due_events or due_time or self._refit_soon) or self._refit_resting():
            return
        X, seq, preq = self._window.ordered()
        scores = self.threshold_.values()
        keep = scores >= self._gate()
        if keep.sum() < 5 * self.model.weights_.shape[0]:
            return
        self._last_refit_events = self.n_events_
        self._last_refit_time = time.monotonic()
        self._refit_soon = False
        self._refitter.submit(X, preq, self.model._get_params(), int(seq[-1]), keep=keep,
                              rule=self._group_rule())

    def _refit_resting(self) -> bool:
        """Whether the last refit's share of the wall clock bars the next one yet."""
        last = self.last_refit_seconds
        if not self.refit_max_duty or last != last:  # no bound, or no refit done yet
            return False
        return time.monotonic() - self._last_refit_time < last / self.refit_max_duty

    def _apply_refit(self, result: RefitResult | None) -> None:
        if result is None:
            return
        self.refit_counts[result.outcome] += 1
        self.last_refit_seconds = result.seconds
        if self.on_refit is not None:
            self.on_refit(result.outcome, result.seconds)
        log.info("refit %s in %.2fs (candidate %.4f vs current %.4f)%s%s", result.outcome,
                 result.seconds, result.candidate_score, result.current_score,
                 f"; {result.taken_back.size} held-out events taken back as a recurring mode"
                 if result.taken_back.size else "", f": {result.error}" if result.error else "")
        if result.outcome != "accepted":
            return
        X, seq, _ = self._window.ordered()
        old_scores = self.threshold_.values()
        state = (self.model.n_seen_, self.model.t_)
        # The statistics of the events the candidate was fitted on, as far as
        # they are still in the window: the cleaned ones and any taken back.
        fitted = (old_scores >= self._gate()) | np.isin(seq, result.taken_back)
        self._start_from(result.model, X[fitted])
        # Continue the schedule where it was: the model has seen the same stream.
        self.model.n_seen_, self.model.t_ = state
        self.threshold_.replace(self._scores(X)[0])
        if self._hold_gate is not None:
            # Carried over by rank: the same share of the window stays below it.
            self._hold_gate = self.threshold_.quantile(np.mean(old_scores < self._hold_gate))

    def apply_finished_refit(self) -> bool:
        """Apply a background refit that has finished, if any, without waiting
        (``process`` does this at every batch; a caller whose stream has gone
        quiet calls it instead). True when a refit's result was taken in."""
        with self._lock:
            result = self._refitter.poll()
            self._apply_refit(result)
            return result is not None

    def start_refit_worker(self, timeout: float = 60.0) -> str | None:
        """Start the refit worker now rather than at the first refit, so that a
        worker process that cannot start shows (and refits move to a thread)
        before the stream does. Returns where refits run, 'process' or
        'thread'; None when this detector does not refit."""
        if not self.refit_enabled or self.mode != "anomaly":
            return None
        self._refitter.start(timeout)
        return self._refitter.worker

    @property
    def refit_worker_pid(self) -> int | None:
        """The refit worker process's id; None before it starts or on a thread."""
        return self._refitter.worker_pid

    def wait_for_refit(self, timeout: float | None = None) -> None:
        """Block until a running refit finishes and apply it (for tests and shutdown)."""
        with self._lock:
            self._apply_refit(self._refitter.poll(wait=True, timeout=timeout))

    def close(self) -> None:
        self._refitter.close()

    # -- explanations --------------------------------------------------------
    def explain(self, detections: Detections, i: int) -> list[tuple[str, float]]:
        """[(feature name, share of D^2)] for event ``i`` of a ``process`` result."""
        names = self.feature_names
        out = []
        for j, share in zip(detections.top_features[i], detections.top_shares[i], strict=True):
            if j < 0:
                continue
            name = names[j] if names and j < len(names) else f"x{j}"
            out.append((name, float(share)))
        return out

    # -- state ---------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as plain arrays (model statistics, windows, counters)."""
        with self._lock:
            out = {
                "det_counters": np.array([self.n_events_, self.model_version,
                                          self.refit_counts["accepted"],
                                          self.refit_counts["rejected"],
                                          self.refit_counts["failed"],
                                          self._last_refit_events], dtype=np.int64),
                "det_threshold_window": self.threshold_.values(),
                "det_frozen_threshold": np.array(
                    [np.nan if self._frozen_threshold is None else self._frozen_threshold]),
                "det_hold_gate": np.array(
                    [np.nan if self._hold_gate is None else self._hold_gate]),
                "det_first_scored": np.array([self._first_scored], dtype=np.int64),
            }
            if self._warm:
                out["det_warmup"] = np.vstack(self._warm)
            if self.model is not None:
                m = self.model
                out.update({f"model_{k}": np.asarray(getattr(m, k)) for k in
                            ("weights_", "means_", "covariances_", "precisions_cholesky_")})
                out["model_covariance_type"] = np.array(m.covariance_type)
                out.update({f"model_{k}": v for k, v in m._state_arrays().items()})
                X, seq, preq = self._window.ordered()
                out["det_window_X"], out["det_window_seq"] = X, seq
                out["det_window_preq"] = preq
                out["det_window_learned"] = self._window.learned_ordered()
                out["det_scaling"] = np.vstack([self.center_, self.scale_, self.floor_])
            return out

    @classmethod
    def from_state_arrays(cls, arrays: dict, **params) -> AnomalyDetector:
        """A detector restored from ``state_arrays`` (constructed with the same params)."""
        params.pop("model_path", None)
        det = cls(**params)
        c = arrays["det_counters"]
        det.n_events_, det.model_version = int(c[0]), int(c[1])
        det.refit_counts = {"accepted": int(c[2]), "rejected": int(c[3]), "failed": int(c[4])}
        det._last_refit_events = int(c[5])
        frozen = float(arrays["det_frozen_threshold"][0])
        det._frozen_threshold = None if np.isnan(frozen) else frozen
        hold = float(arrays.get("det_hold_gate", [np.nan])[0])
        det._hold_gate = None if np.isnan(hold) else hold
        det._first_scored = int(arrays.get("det_first_scored", [0])[0])
        if "det_warmup" in arrays:
            det._warm = [np.asarray(arrays["det_warmup"], dtype=np.float64)]
        if "model_weights_" in arrays:
            from streamgmm.model.em import MixtureParams

            k = arrays["model_weights_"].shape[0]
            d = np.shape(arrays["model_means_"])[-1]
            shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            if "model_covariance_type" in arrays:
                saved = [str(arrays["model_covariance_type"])]
            else:  # written before the type was saved: what its shape allows
                shape = np.shape(arrays["model_covariances_"])
                saved = [kind for kind, s in shapes.items() if s == shape]
            if det.covariance_type not in saved:
                raise CheckpointIncompatible(
                    f"the saved model has covariance_type "
                    f"{' or '.join(map(repr, saved)) or 'of no known shape'}, the detector is "
                    f"configured with {det.covariance_type!r}")
            m = OnlineGaussianMixture(**det._online())
            m.n_components = k
            m._set_params(MixtureParams(det.covariance_type, *(
                np.asarray(arrays[f"model_{k}"], dtype=np.float64) for k in
                ("weights_", "means_", "covariances_", "precisions_cholesky_"))))
            m._load_state_arrays({k[len("model_"):]: v for k, v in arrays.items()
                                  if k.startswith("model_")})
            det.model = m
            det._window = FeatureWindow(det.window, m.n_features_in_)
            wx = np.asarray(arrays["det_window_X"], dtype=np.float64)
            preq = arrays.get("det_window_preq")
            learned = arrays.get("det_window_learned")
            det._window.replace(wx, np.asarray(arrays["det_window_seq"], dtype=np.int64),
                                np.full(wx.shape[0], np.nan) if preq is None
                                else np.asarray(preq, dtype=np.float64),
                                None if learned is None else np.asarray(learned, dtype=bool))
            if "det_scaling" in arrays:
                center, scale, floor = np.asarray(arrays["det_scaling"], dtype=np.float64)
                det.center_, det.scale_, det.floor_ = center, scale, floor
                det._log_jacobian = float(np.log(scale).sum())
                det._refitter.reg_covar = floor
            else:
                det.center_, det.scale_ = None, None
                det._set_scaling(None)
            det._update_major()
        det.threshold_.replace(np.asarray(arrays["det_threshold_window"], dtype=np.float64))
        return det

    @staticmethod
    def config_params(cfg, feature_names: list[str] | None = None) -> dict:
        """The keyword arguments the daemon's ``detector`` config section gives
        (for ``from_config`` and for ``from_state_arrays`` on a restart)."""
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

    @classmethod
    def from_config(cls, cfg, feature_names: list[str] | None = None) -> AnomalyDetector:
        """A detector from the daemon's ``detector`` config section."""
        return cls(**cls.config_params(cfg, feature_names))


SCALED_BOUND = MAX_MAGNITUDE / 10.0


class CheckpointIncompatible(ValueError):
    """Saved state that the detector as configured cannot take (another
    covariance type): a configuration change, not damage."""


def _is_int(value) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def quantisation_floor(X: np.ndarray) -> np.ndarray:
    """Per-feature variance step^2 / 12 of discrete features, 0 for continuous ones.

    A feature is discrete when the events take at most a quarter as many
    distinct values as there are events; its step is the median gap between
    neighbouring values. A feature constant in ``X`` is taken to step by 1
    (flags, one-hot columns and counts are the usual constant features).
    """
    n, d = X.shape
    out = np.zeros(d)
    for j in range(d):  # a loop over features, run once per warm-up
        values = np.unique(X[:, j])
        if values.size == 1:
            out[j] = 1.0 / 12.0
        elif values.size <= max(2, n // 4):
            out[j] = float(np.median(np.diff(values))) ** 2 / 12.0
    return out

