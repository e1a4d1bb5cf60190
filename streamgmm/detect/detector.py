"""AnomalyDetector: prequential scoring, a rolling percentile threshold, online
learning that leaves flagged events out, background refits on the cleaned
window, and explanations. It knows nothing of Kafka.

The detector wires small parts, each in a module of its own: its parameters
(``params.py``, the base class that checks and stores them), the feature
scaling and variance floor (``scaling.py``), the warm-up fit (``warmup.py``),
the masking guard (``guard.py``), the learning gate and burst hold
(``gate.py``), when refits run and how their results are taken in
(``refit_schedule.py``), the refit itself (``refit.py``), the state as plain
arrays (``state.py``). Here: fit, process, score_samples, explain.
"""

from __future__ import annotations

import threading

import numpy as np

from streamgmm.detect.detections import Detections, explainer
from streamgmm.detect.gate import LearningGate
from streamgmm.detect.guard import MaskingGuard, guarded_scores
from streamgmm.detect.params import MAX_TRIM, DetectorParameters
from streamgmm.detect.refit import RefitResult, Refitter
from streamgmm.detect.refit_schedule import BackgroundRefits, RefitSchedule
from streamgmm.detect.scaling import Scaling, quantisation_floor
from streamgmm.detect.state import CheckpointIncompatible, export_state, import_state
from streamgmm.detect.threshold import RollingThreshold
from streamgmm.detect.warmup import fit_warmup
from streamgmm.detect.window import FeatureWindow
from streamgmm.model.base import check_array
from streamgmm.model.online import OnlineGaussianMixture

__all__ = ["AnomalyDetector", "CheckpointIncompatible", "Detections", "MAX_TRIM",
           "quantisation_floor"]


class AnomalyDetector(DetectorParameters, BackgroundRefits):
    """Streaming anomaly detector on a Gaussian mixture.

    Parameters
    ----------
    n_components : int or 'auto', default='auto'
        Components of the mixture; 'auto' chooses them by BIC over ``select_k``
        at the warm-up and at every refit, pruning components that rest on
        fewer than five events per free parameter (``groups.py``).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    contamination : float, default=0.02
        Fraction of events flagged: the threshold is this percentile of the
        scores of the last ``window`` events.
    trim : float or None, default=None
        Share of the window's lowest-scoring events kept out of learning and
        refits (None: ``contamination``); set it above the share of anomalous
        events when that is more than the alert budget (``gate.py``). At least
        ``contamination``, at most 0.25; novelty mode ignores it.
    window : int, default=5000
        Events kept for the threshold and for refits.
    warmup : int, default=500
        Events buffered before the first batch fit; their score is NaN and none
        is flagged. At least ``n_components`` and 2, at most ``window``.
    mode : {'anomaly', 'novelty'}, default='anomaly'
        'anomaly' learns from the stream it scores; 'novelty' fits on a
        reference set (``fit``) or a model file (``model_path``) and only scores.
    learn_from_anomalies : bool, default=False
        Whether events below the learning gate enter the online update; a
        burst of them freezes the gate until it has passed (``gate.py``).
    refit_every : int, default=5000
        Events between background refits (0 = never by count).
    refit_seconds : float, default=0
        Seconds between refits (0 = never by time).
    refit_n_init : int, default=2
        Fresh initialisations tried at each refit, beside the warm start.
    refit_worker : {'process', 'thread'}, default='process'
        Where refits run: a process of its own, kept for the detector's life,
        or a thread, which slows ``process`` while a refit runs (``refit.py``).
    refit_max_duty : float, optional
        Most of the wall clock refits may take (``refit_schedule.py``; the
        daemon sets 0.25). None: no bound.
    refit_enabled : bool, default=True
    select_k : tuple (min, max), default=(1, 8)
        The range of components 'auto' chooses from.
    reg_covar : float, default=1e-2
        Variance added to every covariance's diagonal, in units of each
        feature's warm-up scale, plus the rounding of discrete features
        (``scaling.py``).
    standardize : bool, default=True
        Centre and scale features by the warm-up's median and MAD (fixed
        afterwards); scores stay log-densities of the original features.
    tight_ratio : float, default=5.0
        A component lighter than ``contamination`` this many times narrower
        than the typical one is a dense anomaly cluster, left out of the
        scores (the masking guard, ``guard.py``).
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

    def _start_state(self, model_path: str | None) -> None:
        """The state before the first event: no model (or the one in
        ``model_path``), empty windows, no refits."""
        self.threshold_ = RollingThreshold(self.window, self.contamination)
        self.model: OnlineGaussianMixture | None = None
        self.model_version = 0
        self.n_events_ = 0
        self._warm: list[np.ndarray] = []
        self._frozen_threshold: float | None = None
        self._scaling: Scaling | None = None
        self._window: FeatureWindow | None = None
        self._major: np.ndarray | None = None
        self._guard = MaskingGuard(self.contamination, self.tight_ratio, self.reg_covar)
        self._learning = LearningGate(self._trim_level, self.contamination,
                                      protect=not self.learn_from_anomalies)
        self._lock = threading.RLock()
        self._refitter = Refitter(self.refit_n_init, self.reg_covar, k_range=self._k_range(),
                                  random_state=self.random_state, worker=self.refit_worker)
        self._refits = RefitSchedule(self._refitter)
        if model_path is not None:
            from streamgmm.model.io import load

            self._start_from(load(model_path))
            self._set_scaling(Scaling.identity(self.model.n_features_in_, self.reg_covar))

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
    def center_(self) -> np.ndarray | None:
        """The features' centre (d,), fixed at the warm-up; None before it."""
        return None if self._scaling is None else self._scaling.center

    @property
    def scale_(self) -> np.ndarray | None:
        """The features' scale (d,), fixed at the warm-up; None before it."""
        return None if self._scaling is None else self._scaling.scale

    @property
    def floor_(self) -> np.ndarray | None:
        """The variance floor per scaled feature (d,); None before the warm-up."""
        return None if self._scaling is None else self._scaling.floor

    # -- starting ------------------------------------------------------------
    def _set_scaling(self, scaling: Scaling) -> None:
        """Fix the feature scaling and the variance floor (refits use it too)."""
        self._scaling = scaling
        self._refitter.reg_covar = scaling.floor

    def _floor(self):
        """The variance floor in use: per feature once the scaling is fixed."""
        return self.reg_covar if self._scaling is None else self._scaling.floor

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return self._scaling(X)

    def _start_from(self, fitted, X: np.ndarray | None = None) -> None:
        n_events = None if X is None else X.shape[0]
        params = self._online(self._floor())
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
        """Fix the scaling and fit the warm-up model (``warmup.fit_warmup``)."""
        self._set_scaling(Scaling.fit(X_raw, self.reg_covar, self.standardize))
        X = self._scaled(X_raw)
        gm, keep = fit_warmup(X, self._k_range(), self.covariance_type, self._scaling.floor,
                              self._trim_level, self.random_state)
        self._start_from(gm, X[keep])
        seq = self.n_events_ - X.shape[0] + np.arange(X.shape[0])
        score, _, log_norm, _ = self._scores(X)
        self._window.push(X, seq, log_norm, keep)
        self.threshold_.push(score)
        self._refits.last_events = self.n_events_
        self._learning.first_scored = self.n_events_

    # -- scoring -------------------------------------------------------------
    def _update_major(self) -> None:
        """Mark light, tight components (dense anomaly clusters) as not 'major'."""
        self._major = self._guard.major(self.model)

    def _scores(self, X: np.ndarray):
        """Scores of scaled events X.

        Returns (score: log-density of the original event under the major
        components, responsibilities, log-density of the scaled event under the
        whole mixture, weighted log-probabilities per component).
        """
        log_major, resp, log_norm, wlp = guarded_scores(self.model, X, self._major)
        return log_major - self._scaling.log_jacobian, resp, log_norm, wlp

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

    def _gate(self) -> float:
        """The score below which an event is kept out of learning and refits
        (``gate.LearningGate.level``)."""
        return self._learning.level(self.threshold_, self._frozen_threshold)

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
            self._take_refit(self._refits.poll())
            if self.model is None:
                return self._buffer_warmup(X) if learn else self._unscored(X)
            return self._process_ready(self._scaled(X), learn, alert)

    def _unscored(self, X: np.ndarray) -> Detections:
        return Detections.unscored(*X.shape, self.n_top, self.model_version, self.ready)

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
                self._scaling = None
                self.threshold_ = RollingThreshold(self.window, self.contamination)
                raise
            self._warm = []
        return self._unscored(X)

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
        explain = explainer(X, component, self.model, self.n_top)
        if learn:
            self._record(X, score, held, resp, log_norm, gate)
        return Detections(score, flagged, np.full(n, thr), pct, component, explain,
                          self.model_version, ready)

    def _record(self, X, score, held, resp, log_norm, gate) -> None:
        """Enter a scored (scaled) batch into the model, the windows and the count.

        ``held``: events kept out of learning (below the learning gate)."""
        if self.mode == "anomaly":
            self.model.learn(X, resp, log_norm, self._learning.weights(held))
            self._update_major()
        seq = self.n_events_ + np.arange(X.shape[0])
        self.n_events_ += X.shape[0]
        if self._frozen_threshold is None:
            self.threshold_.push(score)
            self._window.push(X, seq, log_norm, ~held)
            if self.ready and self._learning.after_batch(self._window, gate):
                self._refits.soon = True
        self._maybe_refit()

    # -- refits (when and how: refit_schedule.BackgroundRefits) ----------------
    def _refit_job(self) -> tuple | None:
        """The cleaned window for a refit, or None when too few events are clean."""
        X, seq, preq = self._window.ordered()
        keep = self.threshold_.values() >= self._gate()
        if keep.sum() < 5 * self.model.weights_.shape[0]:
            return None
        return (X, preq, self.model._get_params(), int(seq[-1]), keep,
                self._guard.group_rule(self.model))

    def _take_refit(self, result: RefitResult | None) -> None:
        """Swap in an accepted refit's model and re-score the window with it."""
        if result is None or result.outcome != "accepted":
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
        self._learning.carry_over(old_scores, self.threshold_)

    # -- explanations --------------------------------------------------------
    def explain(self, detections: Detections, i: int) -> list[tuple[str, float]]:
        """[(feature name, share of D^2)] for event ``i`` of a ``process`` result."""
        return detections.named(i, self.feature_names)

    # -- state ---------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as plain arrays (model statistics, windows, counters;
        the keys are listed in ``state.py``)."""
        with self._lock:
            return export_state(self)

    @classmethod
    def from_state_arrays(cls, arrays: dict, **params) -> AnomalyDetector:
        """A detector restored from ``state_arrays`` (constructed with the same params)."""
        params.pop("model_path", None)
        det = cls(**params)
        import_state(det, arrays)
        return det
