"""OnlineGaussianMixture: stepwise EM over centred sufficient statistics.

After each micro-batch the normalised statistics move towards the batch's
averaged statistics: ``stats <- scale(stats, 1 - step) merge scale(batch, step)``
(Liang & Klein 2009; Cappé & Moulines 2009). The step depends on the batch's
size through a per-event schedule, so three events move the model far less
than five hundred.
"""

from __future__ import annotations

import numpy as np

from streamgmm.model.base import EstimatorMixin, check_array
from streamgmm.model.covariance import check_covariance_type
from streamgmm.model.em import MixtureParams, final_stats
from streamgmm.model.estep import batch_stats
from streamgmm.model.gmm import GaussianMixture
from streamgmm.model.init import check_random_state
from streamgmm.model.reading import FittedMixtureMixin
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
        ``1 / forget_horizon``, so old events fade with weight ``exp(-age / horizon)``
        and the model keeps tracking a slow drift.
    drift_threshold : float or None, default=8.0
        Page-Hinkley alarm level, in standard errors of a batch's mean
        log-likelihood. When the stream's log-likelihood falls this far, the
        schedule restarts so the model re-learns quickly. None turns it off.
    min_weight : float or None, default=None
        Components lighter than this are respawned by splitting the heaviest one
        (default ``0.01 / n_components``).
    n_init : int, default=1
        Initialisations of the batch EM on the first batch.
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
        Schedule restarts triggered by the drift monitor.
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
        forget_horizon: float = 20000.0,
        drift_threshold: float | None = 8.0,
        min_weight: float | None = None,
        n_init: int = 1,
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
        self.init_params = init_params
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # -- start -------------------------------------------------------------
    def _schedule(self) -> StepSchedule:
        return StepSchedule(self.alpha, self.t0, self.step_unit, self.forget_horizon)

    def _start(self, stats: SuffStats, n_events: float) -> None:
        check_covariance_type(self.covariance_type)
        total = stats.total
        self.stats_ = stats.scale(1.0 / total)
        self.n_seen_ = float(n_events)
        self.sum_w2_ = 1.0 / max(n_events, 1.0)
        self.t_ = float(n_events)
        self.n_batches_ = 0
        self.n_respawns_ = 0
        self.n_drifts_ = 0
        self.drift_ = DriftMonitor(self.drift_threshold)
        self._refresh()

    def _refresh(self) -> None:
        self._set_params(MixtureParams.from_stats(self.stats_, self.reg_covar))

    @property
    def n_effective_(self) -> float:
        return 1.0 / self.sum_w2_

    @classmethod
    def from_model(cls, model, n_events: float | None = None, X=None, **params):
        """An online mixture that starts from a fitted GaussianMixture (or a model file).

        ``n_events`` is the number of events the fitted model stands for (by
        default the rows of ``X`` if given, else 1000); the schedule continues
        from there. With ``X``, the statistics are those of X under the model.
        """
        if not hasattr(model, "precisions_cholesky_"):
            from streamgmm.model.io import load

            model = load(model)
        params.setdefault("n_components", model.weights_.shape[0])
        params.setdefault("covariance_type", model.covariance_type)
        params.setdefault("reg_covar", model.reg_covar)
        online = cls(**params)
        if X is not None:
            X = check_array(X, n_features=model.n_features_in_)
            stats = final_stats(X, model._get_params())
            n_events = X.shape[0] if n_events is None else n_events
        else:
            n_events = 1000.0 if n_events is None else float(n_events)
            stats = stats_from_params(model.weights_, model.means_, model.covariances_,
                                      model.covariance_type, 1.0, model.reg_covar)
        online._start(stats, n_events)
        return online

    def _init_from_batch(self, X: np.ndarray, sample_weight) -> None:
        gm = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
            n_init=self.n_init, init_params=self.init_params, max_iter=self.max_iter,
            tol=self.tol, random_state=self.random_state,
        )
        import warnings

        from streamgmm.model.base import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X, sample_weight=sample_weight)
        stats = final_stats(X, gm._get_params(), sample_weight)
        n = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        self._start(stats, n)

    # -- learning ----------------------------------------------------------
    def partial_fit(self, X, y=None, sample_weight=None):
        """Learn from one micro-batch by a stepwise EM update.

        The first call starts the model by batch EM on its batch (which needs at
        least ``n_components`` events); later calls accept any batch size.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; 0 leaves an event out (e.g. a flagged anomaly).
        """
        started = hasattr(self, "stats_")
        X = check_array(X, n_features=self.n_features_in_ if started else None)
        sw = _weights(sample_weight, X.shape[0])
        if not started:
            self._init_from_batch(X, sw)
            return self
        log_norm, resp = self._get_params().e_step(X)
        self.learn(X, resp, log_norm, sw)
        return self

    def learn(self, X: np.ndarray, resp: np.ndarray, log_norm: np.ndarray,
              sample_weight: np.ndarray | None = None) -> float:
        """The stepwise update from an E-step already done on a validated batch.

        Returns the step taken. Used by ``partial_fit`` and by the detector,
        which scores a batch before learning from it and so has the E-step in hand.
        """
        total = float(X.shape[0] if sample_weight is None else sample_weight.sum())
        if total <= 0:
            return 0.0
        if self.drift_.update(log_norm, sample_weight):
            # The stream moved: forget faster by restarting the schedule's clock.
            self.t_ = min(self.t_, float(self.step_unit))
            self.n_drifts_ += 1
        step = self._schedule().step(self.t_, total)
        batch = batch_stats(X, resp, self.covariance_type, sample_weight).scale(1.0 / total)
        self.stats_ = self.stats_.scale(1.0 - step).merge(batch.scale(step))
        w2 = 0.0 if sample_weight is None else float(np.sum(sample_weight**2)) / total**2
        self.sum_w2_ = (1.0 - step) ** 2 * self.sum_w2_ + step**2 * (
            1.0 / total if sample_weight is None else w2)
        self.t_ += total
        self.n_seen_ += total
        self.n_batches_ += 1
        self._respawn_light_components()
        self._refresh()
        return step

    def _respawn_light_components(self) -> None:
        floor = self.min_weight if self.min_weight is not None else 0.01 / self.n_components
        weights = self.stats_.n / self.stats_.n.sum()
        for c in np.flatnonzero(weights < floor):
            self.stats_ = split_heaviest(self.stats_, int(c), check_random_state(
                None if self.random_state is None else self.n_respawns_ + 1))
            self.n_respawns_ += 1

    def merge(self, other: OnlineGaussianMixture) -> OnlineGaussianMixture:
        """A model whose statistics combine both models', weighted by their effective events."""
        self._check_fitted()
        other._check_fitted()
        na, nb = self.n_effective_, other.n_effective_
        merged = self.stats_.scale(na).merge(other.stats_.scale(nb))
        out = OnlineGaussianMixture(**self.get_params())
        out._start(merged, na + nb)
        out.n_seen_ = self.n_seen_ + other.n_seen_
        out.t_ = max(self.t_, other.t_)
        return out

    # -- persistence -------------------------------------------------------
    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = self.stats_.to_arrays("stats_")
        arrays["online_state"] = np.array([self.n_seen_, self.sum_w2_, self.t_,
                                           self.n_batches_, self.n_respawns_, self.n_drifts_])
        arrays["drift_state"] = self.drift_.to_array()
        return arrays

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.stats_ = SuffStats.from_arrays(arrays, self.covariance_type, "stats_")
        n_seen, sum_w2, t, n_batches, n_respawns, n_drifts = arrays["online_state"]
        self.n_seen_, self.sum_w2_, self.t_ = float(n_seen), float(sum_w2), float(t)
        self.n_batches_, self.n_respawns_ = int(n_batches), int(n_respawns)
        self.n_drifts_ = int(n_drifts)
        self.drift_ = DriftMonitor.from_array(self.drift_threshold, arrays["drift_state"])
        self._refresh()


def split_heaviest(stats: SuffStats, light: int, rng: np.random.RandomState) -> SuffStats:
    """Replace component ``light`` by half of the heaviest one, split along its main axis."""
    stats = stats.copy()
    heavy = int(np.argmax(stats.n))
    d = stats.n_features
    nh = stats.n[heavy]
    cov = _component_cov(stats, heavy)
    vals, vecs = np.linalg.eigh(cov)
    offset = np.sqrt(max(vals[-1], 0.0)) * vecs[:, -1] * 0.5
    if rng.uniform() < 0.5:
        offset = -offset
    # The split moves each half by +-offset; removing the between-halves part
    # keeps the pair's merged statistics equal to the original component's.
    total = nh + stats.n[light]
    half = total / 2.0
    mean = stats.mean[heavy].copy()
    stats.n[heavy] = stats.n[light] = half
    stats.mean[heavy] = mean + offset
    stats.mean[light] = mean - offset
    t = stats.covariance_type
    shrunk = cov - np.outer(offset, offset)
    shrunk = (shrunk + shrunk.T) / 2.0 + 1e-12 * np.eye(d)
    if t == "full":
        stats.scatter[heavy] = stats.scatter[light] = shrunk * half
    elif t == "diag":
        stats.scatter[heavy] = stats.scatter[light] = np.maximum(np.diag(shrunk), 0) * half
    elif t == "spherical":
        stats.scatter[heavy] = stats.scatter[light] = max(np.trace(shrunk), 0.0) * half
    return stats


def _component_cov(stats: SuffStats, c: int) -> np.ndarray:
    n = max(stats.n[c], 1e-300)
    t = stats.covariance_type
    if t == "full":
        return stats.scatter[c] / n
    if t == "tied":
        return stats.scatter / max(stats.total, 1e-300)
    if t == "diag":
        return np.diag(stats.scatter[c] / n)
    return np.eye(stats.n_features) * stats.scatter[c] / (n * stats.n_features)


def _weights(sample_weight, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight: expected finite, non-negative weights")
    return sw
