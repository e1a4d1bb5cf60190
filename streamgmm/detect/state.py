"""A detector's whole state as plain numpy arrays, and back (checkpoints).

Keys (every array plain numeric, ``numpy.load(..., allow_pickle=False)``):

===================== ==================================================
det_counters          n_events, model_version, refits accepted, rejected,
                      failed, events at the last refit (int64, (6,))
det_threshold_window  the threshold window's scores, oldest first
det_frozen_threshold  a novelty threshold, NaN when none
det_hold_gate         the burst hold's gate, NaN when none
det_first_scored      sequence number of the first event scored out of sample
det_warmup            warm-up events buffered so far (before a model exists)
model_*               the online mixture: parameters, covariance type, statistics
det_window_X, _seq,   the feature window (scaled features, sequence numbers,
_preq, _learned       prequential scores, learned flags), oldest first
det_scaling           center, scale and variance floor, (3, d)
===================== ==================================================

A refit still running is not part of the state. States written before a key
existed load with its neutral value.
"""

from __future__ import annotations

import numpy as np

from streamgmm.detect.refit_schedule import OUTCOMES
from streamgmm.detect.scaling import Scaling
from streamgmm.detect.window import FeatureWindow
from streamgmm.model.covariance import COVARIANCE_TYPES, expected_shape
from streamgmm.model.em import MixtureParams
from streamgmm.model.online import OnlineGaussianMixture

MODEL_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


class CheckpointIncompatible(ValueError):
    """Saved state that the detector as configured cannot take (another
    covariance type): a configuration change, not damage."""


def _nan_or(value: float | None) -> np.ndarray:
    return np.array([np.nan if value is None else value])


def _or_none(array) -> float | None:
    value = float(array[0])
    return None if np.isnan(value) else value


def export_state(det) -> dict[str, np.ndarray]:
    """The state of ``det`` (an AnomalyDetector) as plain arrays."""
    counts = [det.refit_counts[k] for k in OUTCOMES]
    out = {
        "det_counters": np.array([det.n_events_, det.model_version, *counts,
                                  det._refits.last_events], dtype=np.int64),
        "det_threshold_window": det.threshold_.values(),
        "det_frozen_threshold": _nan_or(det._frozen_threshold),
        "det_hold_gate": _nan_or(det._learning.hold),
        "det_first_scored": np.array([det._learning.first_scored], dtype=np.int64),
    }
    if det._warm:
        out["det_warmup"] = np.vstack(det._warm)
    if det.model is not None:
        m = det.model
        out.update({f"model_{k}": np.asarray(getattr(m, k)) for k in MODEL_ARRAYS})
        out["model_covariance_type"] = np.array(m.covariance_type)
        out.update({f"model_{k}": v for k, v in m._state_arrays().items()})
        X, seq, preq = det._window.ordered()
        out["det_window_X"], out["det_window_seq"] = X, seq
        out["det_window_preq"] = preq
        out["det_window_learned"] = det._window.learned_ordered()
        out["det_scaling"] = det._scaling.to_arrays()
    return out


def import_state(det, arrays: dict) -> None:
    """Load ``arrays`` (from ``export_state``) into ``det``, a fresh detector
    constructed with the same parameters."""
    c = arrays["det_counters"]
    det.n_events_, det.model_version = int(c[0]), int(c[1])
    det.refit_counts.update({k: int(v) for k, v in zip(OUTCOMES, c[2:5], strict=True)})
    det._refits.last_events = int(c[5])
    det._frozen_threshold = _or_none(arrays["det_frozen_threshold"])
    det._learning.hold = _or_none(arrays.get("det_hold_gate", [np.nan]))
    det._learning.first_scored = int(arrays.get("det_first_scored", [0])[0])
    if "det_warmup" in arrays:
        det._warm = [np.asarray(arrays["det_warmup"], dtype=np.float64)]
    if "model_weights_" in arrays:
        det.model = _model(arrays, det.covariance_type, det._online(det.reg_covar))
        det._window = _window(arrays, det.window, det.model.n_features_in_)
        if "det_scaling" in arrays:
            det._set_scaling(Scaling.from_arrays(arrays["det_scaling"]))
        else:  # written before the scaling was saved: the features as they came
            det._set_scaling(Scaling.identity(det.model.n_features_in_, det.reg_covar))
        det._update_major()
    det.threshold_.replace(np.asarray(arrays["det_threshold_window"], dtype=np.float64))


def _model(arrays: dict, covariance_type: str, params: dict) -> OnlineGaussianMixture:
    """The online mixture saved in ``arrays``, checked against ``covariance_type``."""
    k = arrays["model_weights_"].shape[0]
    d = np.shape(arrays["model_means_"])[-1]
    if "model_covariance_type" in arrays:
        saved = [str(arrays["model_covariance_type"])]
    else:  # written before the type was saved: what its shape allows
        shape = np.shape(arrays["model_covariances_"])
        saved = [kind for kind in COVARIANCE_TYPES if expected_shape(kind, k, d) == shape]
    if covariance_type not in saved:
        raise CheckpointIncompatible(
            f"the saved model has covariance_type "
            f"{' or '.join(map(repr, saved)) or 'of no known shape'}, the detector is "
            f"configured with {covariance_type!r}")
    m = OnlineGaussianMixture(**params)
    m.n_components = k
    m._set_params(MixtureParams(covariance_type, *(
        np.asarray(arrays[f"model_{name}"], dtype=np.float64) for name in MODEL_ARRAYS)))
    m._load_state_arrays({key[len("model_"):]: v for key, v in arrays.items()
                          if key.startswith("model_")})
    return m


def _window(arrays: dict, size: int, n_features: int) -> FeatureWindow:
    """The feature window saved in ``arrays`` (older states lack its scores and flags)."""
    window = FeatureWindow(size, n_features)
    X = np.asarray(arrays["det_window_X"], dtype=np.float64)
    preq = arrays.get("det_window_preq")
    learned = arrays.get("det_window_learned")
    window.replace(X, np.asarray(arrays["det_window_seq"], dtype=np.int64),
                   np.full(X.shape[0], np.nan) if preq is None
                   else np.asarray(preq, dtype=np.float64),
                   None if learned is None else np.asarray(learned, dtype=bool))
    return window
