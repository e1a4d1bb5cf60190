"""OnlineGaussianMixture: stepwise EM over centred sufficient statistics.

After each micro-batch the normalised statistics move towards the batch's
averaged statistics: ``stats <- scale(stats, 1 - step) merge scale(batch, step)``
(Liang & Klein 2009; Cappé & Moulines 2009). The step depends on the batch's
size through a per-event schedule, so three events move the model far less
than five hundred.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from streamgmm.model.base import (
    ConvergenceWarning,
    EstimatorMixin,
    NotFittedError,
    check_array,
)
from streamgmm.model.buffer import EventBuffer
from streamgmm.model.covariance import check_covariance_type, n_parameters
from streamgmm.model.em import MixtureParams, final_stats
from streamgmm.model.estep import batch_stats
from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.init import check_random_state
from streamgmm.model.reading import FittedMixtureMixin
from streamgmm.model.respawn import split_heaviest
from streamgmm.model.schedule import DriftMonitor, StepSchedule
from streamgmm.model.stats import SuffStats, stats_from_params


class OnlineGaussianMixture(FittedMixtureMixin, EstimatorMixin):
    """Gaussian mixture learned online by stepwise EM, one micro-batch at a time.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    reg_covar : float, default=1e-6
        Added to every covariance's diagonal; keeps a collapsing component invertible.
    alpha : float, default=0.6
        Decay exponent of the step schedule, in (0.5, 1].
    t0 : float, default=2.0
        Offset of the schedule, in units of ``step_unit`` events.
    step_unit : int, default=500
        Events per unit of schedule time. The step for a batch of n events is
        ``1 - (1 - eta) ** (n / step_unit)`` with ``eta = (t / step_unit + t0) ** -alpha``
        and t the number of events seen, so a poll of 3 events moves the model
        about 3/500 as far as a poll of 500.
    forget_horizon : float, default=20000
        Forgetting horizon in events: the per-event step never falls below
        ``1 / forget_horizon``, so old events fade with weight ``exp(-age / horizon)``,
        the statistics stand for at most about ``2 * forget_horizon`` effective
        events, and the model keeps tracking a slow drift. None: no floor.
    drift_threshold : float or None, default=8.0
        Page-Hinkley alarm level, in standard errors of a batch's mean
        log-likelihood. After an alarm the next ``init_events`` events are
        refitted by batch EM, and the refit replaces the statistics if it
        explains those events better than the current model by more than its
        number of parameters (an AIC test), so a false alarm costs a refit and
        nothing else. None turns drift detection off.
    min_weight : float or None, default=None
        Components lighter than this are respawned by splitting the heaviest one
        (default ``0.01 / n_components``).
    n_init : int, default=10
        Restarts of the batch EM that starts the model (and refits after drift).
    init_events : int, default=5000
        Events buffered before the first batch EM (at least ``n_components``).
        Stepwise EM stays in the basin it starts in, so the start must be good.
        Measured on random 8-component mixtures in 10 dimensions (0.5 to 3 %
        overlap): one 500-event batch with one restart missed the global
        optimum on half of them, 2000 events with 10 restarts on 1 in 7, and
        5000 events with 10 restarts on none (see bench/eval_online.py). The
        start costs well under a second; raise both for harder mixtures.
    init_params : str, default='kmeans'
    max_iter : int, default=100
    tol : float, default=1e-3
        Used by the batch EM that starts the model.
    random_state : int, RandomState or None, default=None

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
        As GaussianMixture.
    stats_ : SuffStats
        Normalised sufficient statistics (total mass 1).
    n_seen_ : float
        Events learned (sum of weights), all time.
    n_effective_ : float
        Effective number of events the statistics stand for (Kish's
        ``1 / sum w_i^2`` over the events' current weights).
    n_batches_ : int
    n_respawns_ : int
        Components respawned because their weight fell below ``min_weight``.
    n_drifts_ : int
        Refits after a drift alarm that replaced the statistics.
    n_drift_alarms_ : int
        Drift alarms, confirmed or not.

    Examples
    --------
    >>> import numpy as np
    >>> from streamgmm import OnlineGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (5000, 2)), rng.normal(6, 1, (5000, 2))])
    >>> X = X[rng.permutation(len(X))]
    >>> model = OnlineGaussianMixture(2, random_state=0)
    >>> for start in range(0, len(X), 500):
    ...     model = model.partial_fit(X[start:start + 500])
    >>> np.sort(model.means_[:, 0]).round(1) + 0.0
    array([0., 6.])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        alpha: float = 0.6,
        t0: float = 2.0,
        step_unit: int = 500,
        forget_horizon: float | None = 20000.0,
        drift_threshold: float | None = 8.0,
        min_weight: float | None = None,
        n_init: int = 10,
        init_events: int = 5000,
        init_params: str = "kmeans",
        max_iter: int = 100,
        tol: float = 1e-3,
        random_state=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.alpha = alpha
        self.t0 = t0
        self.step_unit = step_unit
        self.forget_horizon = forget_horizon
        self.drift_threshold = drift_threshold
        self.min_weight = min_weight
        self.n_init = n_init
        self.init_events = init_events
        self.init_params = init_params
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # -- start -------------------------------------------------------------
    def _start(self, stats: SuffStats, n_events: float) -> None:
        """Fresh state from statistics standing for ``n_events`` events."""
        check_covariance_type(self.covariance_type)
        self.schedule_ = StepSchedule(self.alpha, self.t0, self.step_unit, self.forget_horizon)
        self.n_seen_ = float(n_events)
        self.n_batches_ = 0
        self.n_respawns_ = 0
        self.n_drifts_ = 0
        self.n_drift_alarms_ = 0
        self._restart(stats, n_events)

    def _restart(self, stats: SuffStats, n_events: float) -> None:
        """Replace the statistics (and restart the schedule and drift monitor); keep counters."""
        stats = stats.scale(1.0 / stats.total)
        self._commit(stats, MixtureParams.from_stats(stats, self.reg_covar))
        self.sum_w2_ = 1.0 / max(n_events, 1.0)
        self.t_ = float(n_events)
        self.drift_ = DriftMonitor(self.drift_threshold)
        self._pending = None

    def _commit(self, stats: SuffStats, params: MixtureParams) -> None:
        self.stats_ = stats
        self._set_params(params)

    @property
    def n_effective_(self) -> float:
        return 1.0 / self.sum_w2_

    @classmethod
    def from_model(cls, model, n_events: float | None = None, X=None, **params):
        """An online mixture that starts from a fitted mixture or a model file.

        Parameters
        ----------
        model : GaussianMixture (streamgmm's or scikit-learn's), OnlineGaussianMixture,
            or the path of a model file
        n_events : float, default=None
            Number of events the fitted model stands for; the schedule continues
            from there. Default: an online model's ``n_effective_``, else the rows
            of ``X`` if given, else 1000.
        X : array-like of shape (n_samples, n_features), default=None
            If given, the statistics are those of X under the model.
        **params
            Constructor parameters (default: the model's own).
        """
        if isinstance(model, (str, os.PathLike)):
            from streamgmm.model.io import load

            model = load(model)
        if not hasattr(model, "precisions_cholesky_"):
            raise NotFittedError(f"model: expected a fitted mixture, got an unfitted {model!r}")
        if isinstance(model, OnlineGaussianMixture):
            params = {**model.get_params(), **params}
        params.setdefault("n_components", model.weights_.shape[0])
        params.setdefault("covariance_type", model.covariance_type)
        params.setdefault("reg_covar", model.reg_covar)
        online = cls(**params)
        if X is not None:
            X = check_array(X, n_features=model.n_features_in_)
            stats = final_stats(X, MixtureParams(
                model.covariance_type, model.weights_, model.means_, model.covariances_,
                model.precisions_cholesky_))
            n_events = X.shape[0] if n_events is None else n_events
        elif hasattr(model, "stats_"):
            stats = model.stats_.copy()
            n_events = model.n_effective_ if n_events is None else n_events
        else:
            stats = stats_from_params(model.weights_, model.means_, model.covariances_,
                                      model.covariance_type, 1.0, model.reg_covar)
            n_events = 1000.0 if n_events is None else n_events
        online._start(stats, float(n_events))
        return online

    def _batch_em(self, X: np.ndarray, sample_weight: np.ndarray | None) -> GaussianMixture:
        gm = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
            n_init=self.n_init, init_params=self.init_params, max_iter=self.max_iter,
            tol=self.tol, random_state=self.random_state,
        )
        with warnings.catch_warnings():
            # A start on a few thousand events need not converge to be useful.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X, sample_weight=sample_weight)
        return gm

    # -- learning ----------------------------------------------------------
    def partial_fit(self, X, y=None, sample_weight=None):
        """Learn from one micro-batch by a stepwise EM update.

        Until the model exists, batches are buffered; the first
        ``max(init_events, n_components)`` events start it by batch EM. Once
        it exists any batch size works, down to one event.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values only: NaN or inf raise a ValueError naming the row
            and column before anything is learned.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; 0 leaves an event out (e.g. a flagged anomaly).
        """
        started = hasattr(self, "stats_")
        X = check_array(X, n_features=self.n_features_in_ if started else None)
        sw = _weights(sample_weight, X.shape[0])
        if not started:
            self._buffer_first(X, sw)
            return self
        log_norm, resp = self._get_params().e_step(X)
        self.learn(X, resp, log_norm, sw)
        return self

    def score_partial_fit(self, X, sample_weight=None) -> np.ndarray:
        """Score a micro-batch, then learn from it: the prequential step of a stream.

        One E-step gives both the scores and the responsibilities, so this costs
        about half of ``score_samples`` followed by ``partial_fit``.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log-density of each event under the model before it learned the
            batch (NaN while the first ``init_events`` are being buffered).
        """
        started = hasattr(self, "stats_")
        X = check_array(X, n_features=self.n_features_in_ if started else None)
        sw = _weights(sample_weight, X.shape[0])
        if not started:
            self._buffer_first(X, sw)
            return np.full(X.shape[0], np.nan)
        log_norm, resp = self._get_params().e_step(X)
        self.learn(X, resp, log_norm, sw)
        return log_norm

    def _buffer_first(self, X: np.ndarray, sw: np.ndarray | None) -> None:
        buffer = getattr(self, "_init_buffer", None) or EventBuffer(X.shape[1])
        if X.shape[1] != buffer.n_features:
            raise ValueError(
                f"X: has {X.shape[1]} features, but earlier batches had {buffer.n_features}"
            )
        buffer.add(X, sw)
        self._init_buffer = buffer
        if buffer.n_rows >= max(self.init_events, self.n_components) and buffer.mass > 0:
            Xa, swa = buffer.arrays()
            self._init_buffer = None
            gm = self._batch_em(Xa, swa)
            self._start(final_stats(Xa, gm._get_params(), swa), buffer.mass)

    def learn(self, X: np.ndarray, resp: np.ndarray, log_norm: np.ndarray,
              sample_weight: np.ndarray | None = None) -> float:
        """The stepwise update from an E-step already done on a validated batch.

        Returns the step taken. Used by ``partial_fit`` and by the detector,
        which scores a batch before learning from it and so has the E-step in hand.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        resp : ndarray of shape (n_samples, n_components)
            Responsibilities under the current model.
        log_norm : ndarray of shape (n_samples,)
            Log-density of each event under the current model.
        sample_weight : ndarray of shape (n_samples,), default=None
        """
        self._check_fitted()
        total = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        if not total > 0:
            return 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            # A non-finite event surfaces in the batch statistics, checked next.
            batch = batch_stats(X, resp, self.covariance_type, sample_weight)
        _check_finite_batch(batch, X)
        step = self.schedule_.step(self.t_, total)
        stats = self.stats_.scale(1.0 - step).merge(batch.scale(step / total))
        stats = self._respawn_light_components(stats)
        self._commit(stats, self._mstep(stats))
        w2 = 1.0 / total if sample_weight is None else float(sample_weight @ sample_weight)
        w2 /= 1.0 if sample_weight is None else total**2
        self.sum_w2_ = (1.0 - step) ** 2 * self.sum_w2_ + step**2 * w2
        self.t_ += total
        self.n_seen_ += total
        self.n_batches_ += 1
        self._watch_drift(X, log_norm, sample_weight)
        return step

    def _mstep(self, stats: SuffStats) -> MixtureParams:
        try:
            return MixtureParams.from_stats(stats, self.reg_covar)
        except ValueError:
            raise ValueError(
                f"reg_covar: a covariance became singular with reg_covar={self.reg_covar!r} "
                "(a constant feature, or a component collapsed onto identical events); "
                "expected reg_covar > 0 large enough for the data's scale. The model is "
                "unchanged."
            ) from None

    def _respawn_light_components(self, stats: SuffStats) -> SuffStats:
        floor = self.min_weight if self.min_weight is not None else 0.01 / self.n_components
        weights = stats.n / stats.n.sum()
        light = np.flatnonzero(weights < floor)
        if light.size:
            seed = self.random_state
            if isinstance(seed, (int, np.integer)):
                seed = int(seed) + self.n_respawns_ + 1
            rng = check_random_state(seed)
            for c in light:
                stats = split_heaviest(stats, int(c), rng)
                self.n_respawns_ += 1
        return stats

    # -- drift ---------------------------------------------------------------
    def _watch_drift(self, X: np.ndarray, log_norm: np.ndarray,
                     sample_weight: np.ndarray | None) -> None:
        """Feed the drift monitor; after an alarm, buffer events and test a refit."""
        if self._pending is None:
            if self.drift_.update(log_norm, sample_weight):
                self.n_drift_alarms_ += 1
                self._pending = EventBuffer(X.shape[1])
            return
        self._pending.add(X, sample_weight)
        if self._pending.n_rows >= max(self.init_events, self.n_components):
            Xa, swa = self._pending.arrays()
            self._pending = None
            self._refit_after_alarm(Xa, swa)

    def _refit_after_alarm(self, X: np.ndarray, sw: np.ndarray | None) -> None:
        """Replace the statistics by a batch EM fit of X if it wins by more than AIC's penalty."""
        total = float(X.shape[0] if sw is None else sw.sum())
        if not total > 0:
            return
        gm = self._batch_em(X, sw)
        current = self.score_samples(X)
        refit = gm.score_samples(X)
        gain = (refit - current).mean() if sw is None else float((refit - current) @ sw) / total
        penalty = n_parameters(self.covariance_type, self.n_components, X.shape[1]) / total
        if gain > penalty:
            self._restart(final_stats(X, gm._get_params(), sw), total)
            self.n_drifts_ += 1

    def merge(self, other: OnlineGaussianMixture) -> OnlineGaussianMixture:
        """A model whose statistics combine both models', weighted by their effective events."""
        self._check_fitted()
        other._check_fitted()
        if (other.covariance_type, other.weights_.shape, other.n_features_in_) != (
                self.covariance_type, self.weights_.shape, self.n_features_in_):
            raise ValueError(
                f"merge: expected a model with covariance_type={self.covariance_type!r}, "
                f"{self.weights_.shape[0]} components and {self.n_features_in_} features, got "
                f"{other.covariance_type!r}, {other.weights_.shape[0]}, {other.n_features_in_}"
            )
        na, nb = self.n_effective_, other.n_effective_
        merged = self.stats_.scale(na).merge(other.stats_.scale(nb))
        out = OnlineGaussianMixture(**self.get_params())
        out._start(merged, na + nb)
        out.n_seen_ = self.n_seen_ + other.n_seen_
        out.t_ = max(self.t_, other.t_)
        return out

    # -- persistence -------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays of the learning state (a pending drift refit's buffer is not kept)."""
        arrays = self.stats_.to_arrays("stats_")
        arrays["online_state"] = np.array([
            self.n_seen_, self.sum_w2_, self.t_, self.n_batches_, self.n_respawns_,
            self.n_drifts_, self.n_drift_alarms_])
        arrays["drift_state"] = self.drift_.to_array()
        return arrays

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        stats = SuffStats.from_arrays(arrays, self.covariance_type, "stats_")
        state = [float(v) for v in arrays["online_state"]]
        state += [0.0] * (7 - len(state))
        self.schedule_ = StepSchedule(self.alpha, self.t0, self.step_unit, self.forget_horizon)
        self._commit(stats, MixtureParams.from_stats(stats, self.reg_covar))
        self.n_seen_, self.sum_w2_, self.t_ = state[:3]
        self.n_batches_, self.n_respawns_, self.n_drifts_, self.n_drift_alarms_ = (
            int(v) for v in state[3:7])
        self.drift_ = DriftMonitor.from_array(self.drift_threshold, arrays["drift_state"])
        self._pending = None


def _check_finite_batch(batch: SuffStats, X: np.ndarray) -> None:
    """Raise before the statistics move if the batch carries NaN or inf."""
    if np.isfinite(batch.n).all() and np.isfinite(batch.mean).all() \
            and np.isfinite(batch.scatter).all():
        return
    bad = np.argwhere(~np.isfinite(X))
    where = f" at row {bad[0][0]}, column {bad[0][1]}" if bad.size else ""
    raise ValueError(
        f"X: expected finite values, got {X[tuple(bad[0])] if bad.size else 'overflow'}"
        f"{where}; the model is unchanged"
    )


def _weights(sample_weight, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight: expected finite, non-negative weights")
    return sw
