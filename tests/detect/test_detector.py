"""AnomalyDetector: warm-up, validation, state round trip, novelty mode."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.detect.detector import AnomalyDetector, Detections
from streamgmm.model.gmm import GaussianMixture

FIELDS = ("score", "is_anomaly", "threshold", "percentile", "component", "top_features",
          "top_shares")


def _stream(n: int, seed: int = 0, d: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [6.0] * d])
    X = centres[rng.integers(0, 2, n)] + rng.normal(size=(n, d))
    out = rng.random(n) < 0.03
    X[out] += rng.normal(0, 8, (out.sum(), d))
    return X


def _same(a: Detections, b: Detections) -> None:
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.model_version, a.ready) == (b.model_version, b.ready)


def test_warmup_scores_nan_and_never_alerts():
    det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0)
    X = _stream(1000)
    X[:300:7] += 50.0  # blatant outliers inside the warm-up
    first = det.process(X[:299])
    assert det.model is None and not first.ready
    assert np.isnan(first.score).all() and np.isnan(first.threshold).all()
    assert not first.is_anomaly.any()
    assert (first.component == -1).all() and (first.top_features == -1).all()
    second = det.process(X[299:300])  # completes the warm-up: the model now exists
    assert det.model is not None and np.isnan(second.score).all()
    after = det.process(X[300:])
    assert after.ready and np.isfinite(after.score).all()
    assert 0 < after.is_anomaly.mean() < 0.1


def test_a_batch_smaller_than_k_after_warmup_works():
    det = AnomalyDetector(n_components=4, warmup=400, window=1000, random_state=0)
    det.process(_stream(800))
    for x in _stream(3, seed=5):
        out = det.process(x[None, :])
        assert len(out) == 1 and np.isfinite(out.score).all()
        assert 0 <= out.component[0] < 4


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("during_warmup", [True, False])
def test_non_finite_input_raises_before_touching_state(bad, during_warmup):
    det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0)
    det.process(_stream(100 if during_warmup else 800))
    before = det.state_arrays()
    X = _stream(50, seed=3)
    X[17, 1] = bad
    with pytest.raises(ValueError, match=r"X: expected finite values.*row 17, column 1"):
        det.process(X)
    after = det.state_arrays()
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


@pytest.mark.parametrize("during_warmup", [True, False])
def test_a_value_beyond_the_magnitude_bound_raises_before_touching_state(during_warmup):
    det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0)
    if not during_warmup:
        det.process(_stream(400))
    before = det.state_arrays()
    X = _stream(50, seed=3)
    X[9, 2] = -3e200
    with pytest.raises(ValueError, match=r"X: expected values within ±1e\+100, got -3e\+200 "
                                         r"at row 9, column 2"):
        det.process(X)
    after = det.state_arrays()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_a_warm_up_batch_of_another_width_is_named_and_the_warm_up_goes_on():
    det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0)
    det.process(_stream(100))
    with pytest.raises(ValueError, match="has 4 features, but the warm-up's earlier events "
                                         "have 3"):
        det.process(_stream(100, d=4))
    det.process(_stream(300, seed=1))
    assert det.model is not None and det.n_events_ == 400


@pytest.mark.parametrize("fails", ["fit", "window"])  # before / after the model is set
def test_a_warm_up_fit_that_fails_refuses_its_batch_and_the_next_one_fits(monkeypatch, fails):
    from streamgmm.detect.window import FeatureWindow

    det = AnomalyDetector(n_components=2, warmup=300, window=1000, random_state=0,
                          refit_enabled=False)
    det.process(_stream(200))
    cls, name = (GaussianMixture, "fit") if fails == "fit" else (FeatureWindow, "push")
    real = getattr(cls, name)
    calls = {"n": 0}

    def failing_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise np.linalg.LinAlgError("simulated failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, failing_once)
    with pytest.raises(np.linalg.LinAlgError):
        det.process(_stream(150, seed=1))
    assert det.model is None and det.n_events_ == 200 and det.model_version == 0
    assert det.center_ is None and det._window is None and det._major is None
    assert len(det.threshold_.values()) == 0
    det.process(_stream(150, seed=2))  # 200 + 150 buffered: the warm-up fits
    assert det.model is not None and det.n_events_ == 350 and det.model_version == 1
    assert len(det.threshold_.values()) == 350


@pytest.mark.parametrize("mode", ["anomaly", "novelty"])
def test_values_far_beyond_a_tiny_warm_up_spread_keep_every_score_finite(mode):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    X[:, 1] *= 1e-60
    det = AnomalyDetector(n_components=1, warmup=300, window=1000, mode=mode, random_state=0,
                          refit_enabled=False)
    if mode == "novelty":
        det.fit(X[:300])
    else:
        det.process(X[:300])
    far = X[300:310].copy()
    far[3, 1] = 1e100  # 1e160 spreads away: clipped, or its square overflows
    out = det.process(np.vstack([X[310:], far]))
    assert np.isfinite(out.score).all() and np.isfinite(det.model.means_).all()
    assert out.is_anomaly[-7]


def test_a_feature_with_a_spread_too_small_to_square_counts_as_constant():
    X = np.random.default_rng(0).normal(size=(400, 2))
    X[:, 1] *= 1e-170
    det = AnomalyDetector(n_components=1, warmup=300, random_state=0, refit_enabled=False)
    det.process(X[:300])
    assert det.scale_[1] == 1.0 and np.isfinite(det.floor_).all()
    assert np.isfinite(det.process(X[300:]).score).all()


def test_integer_like_parameters_are_taken_and_bad_ones_named():
    det = AnomalyDetector(n_components=np.int64(2), window=np.int64(500), warmup=200)
    assert det.n_components == 2 and isinstance(det.n_components, int)
    for kwargs, match in [({"window": 1.5}, "window: expected an integer >= 1, got 1.5"),
                          ({"top_features": -1}, "top_features: expected an integer >= 0"),
                          ({"select_k": (3, 1)}, r"select_k: expected \(low, high\)"),
                          ({"n_components": True}, "n_components: expected an integer")]:
        with pytest.raises(ValueError, match=match):
            AnomalyDetector(**kwargs)


def test_wrong_number_of_features_is_named():
    det = AnomalyDetector(n_components=2, warmup=300, random_state=0)
    det.process(_stream(400))
    with pytest.raises(ValueError, match="has 2 features.*3 features"):
        det.process(np.zeros((5, 2)))


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "batch"}, "mode: expected one of anomaly, novelty"),
    ({"warmup": 2, "n_components": 4}, "warmup: expected at least n_components"),
    ({"warmup": 1, "n_components": 1}, r"warmup: expected .* and 2 events, got 1"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnomalyDetector(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"warmup": 600, "window": 500}, "warmup: expected at most window (500), got 600"),
    ({"covariance_type": "ful"},
     "covariance_type: expected one of full, tied, diag, spherical, got 'ful'"),
    ({"contamination": 0.5}, "contamination: expected a number in (0, 0.5), got 0.5"),
    ({"refit_worker": "fork"}, "refit_worker: expected one of thread, process, got 'fork'"),
    ({"refit_max_duty": 1.5}, "refit_max_duty: expected a number in [0, 1] or None, got 1.5"),
    ({"random_state": -1}, "random_state: expected an integer >= 0 or None, got -1"),
    ({"refit_n_init": 0}, "refit_n_init: expected an integer >= 1, got 0"),
    ({"learn_from_anomalies": "no"},
     "learn_from_anomalies: expected True or False, got 'no'"),
])
def test_the_parameter_table_is_checked_at_construction(kwargs, message):
    """Every rule of ``params.PARAMETERS`` and ``BOUNDS``, as the YAML schema has them."""
    with pytest.raises(ValueError) as refused:
        AnomalyDetector(**kwargs)
    assert str(refused.value) == message


PARAMS = dict(n_components=2, warmup=300, window=800, refit_every=2000, random_state=0)


@pytest.mark.parametrize("n_before", [120, 1500], ids=["during-warmup", "after-warmup"])
def test_state_round_trip_gives_the_same_detections(n_before):
    X = _stream(n_before + 700, seed=1)
    original = AnomalyDetector(**PARAMS)
    for i in range(0, n_before, 100):
        original.process(X[i:min(i + 100, n_before)])
    # A refit still running when the state is taken is not part of it.
    original.wait_for_refit(timeout=30)
    arrays = original.state_arrays()
    for k, v in arrays.items():
        assert isinstance(v, np.ndarray) and v.dtype != object, k
    # Through a real npz file with pickling off, as a checkpoint would be.
    restored = AnomalyDetector.from_state_arrays(dict(arrays), **PARAMS)
    for i in range(n_before, X.shape[0], 350):
        _same(original.process(X[i:i + 350]), restored.process(X[i:i + 350]))
    assert restored.n_events_ == original.n_events_
    # Where the warm-up ended: a change of regime is judged on the events after it.
    assert restored._learning.first_scored == original._learning.first_scored


def test_state_round_trip_through_an_npz_file(tmp_path):
    det = AnomalyDetector(**PARAMS)
    X = _stream(2000, seed=2)
    det.process(X[:1500])
    det.wait_for_refit(timeout=30)
    path = tmp_path / "state.npz"
    np.savez(path, **det.state_arrays())
    with np.load(path, allow_pickle=False) as f:
        restored = AnomalyDetector.from_state_arrays(dict(f), **PARAMS)
    _same(det.process(X[1500:]), restored.process(X[1500:]))
    assert restored.refit_counts == det.refit_counts


@pytest.mark.parametrize("saved_type", [True, False], ids=["typed", "older"])
def test_a_diag_model_with_as_many_components_as_features_restores(tmp_path, saved_type):
    # Its covariances (k, d) have the shape of a tied one (d, d): the saved type
    # decides, and a checkpoint written before the type was saved goes by the
    # configured one.
    from streamgmm.detect.detector import CheckpointIncompatible
    from streamgmm.service.checkpoint import CheckpointStore

    params = dict(n_components=2, covariance_type="diag", warmup=300, window=800,
                  random_state=0, refit_enabled=False)
    det = AnomalyDetector(**params)
    X = _stream(1000, seed=2, d=2)
    det.process(X[:600])
    arrays = det.state_arrays()
    assert arrays["model_covariances_"].shape == (2, 2)
    if not saved_type:
        del arrays["model_covariance_type"]
    store = CheckpointStore(tmp_path)
    store.save(arrays, {})
    loaded = store.load_latest().arrays
    restored = AnomalyDetector.from_state_arrays(dict(loaded), **params)
    _same(det.process(X[600:]), restored.process(X[600:]))
    shown = "'diag'" if saved_type else "'tied' or 'diag'"
    with pytest.raises(CheckpointIncompatible, match=f"the saved model has covariance_type "
                                                     f"{shown}, the detector is configured "
                                                     f"with 'full'"):
        AnomalyDetector.from_state_arrays(dict(loaded), **{**params, "covariance_type": "full"})


def test_novelty_mode_with_fit_only_scores():
    ref = _stream(2000, seed=4)
    ref = ref[np.abs(ref - ref.mean(0)).max(axis=1) < 12]
    det = AnomalyDetector(n_components=2, mode="novelty", random_state=0).fit(ref)
    assert det.ready
    means, thr = det.model.means_.copy(), det.threshold_value
    shifted = _stream(3000, seed=5) + 3.0
    outs = [det.process(shifted[i:i + 500]) for i in range(0, 3000, 500)]
    np.testing.assert_array_equal(det.model.means_, means)
    assert det.threshold_value == thr
    assert all((o.threshold == thr).all() for o in outs)
    # The shifted stream is mostly novel, and stays so: nothing was learned.
    assert outs[0].is_anomaly.mean() > 0.3
    assert outs[-1].is_anomaly.mean() == pytest.approx(outs[0].is_anomaly.mean(), abs=0.1)
    assert det.refit_counts == {"accepted": 0, "rejected": 0, "failed": 0}


def test_novelty_mode_from_a_model_file_only_scores(tmp_path):
    ref = _stream(3000, seed=6)
    gm = GaussianMixture(2, random_state=0).fit(ref)
    path = tmp_path / "model.npz"
    gm.save(path)
    det = AnomalyDetector(n_components=2, mode="novelty", model_path=str(path), window=500,
                          warmup=200)
    assert det.model is not None
    np.testing.assert_allclose(det.model.means_, gm.means_)
    out = det.process(_stream(1000, seed=7))
    np.testing.assert_allclose(out.score, gm.score_samples(_stream(1000, seed=7)),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(det.model.means_, gm.means_)
    out2 = det.process(np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0]]))
    assert out2.ready and out2.is_anomaly.tolist() == [False, True]


def test_events_on_a_far_dense_cluster_get_finite_scores_and_stay_in_the_window():
    # A light, tight component far from the rest: under it the other components'
    # densities underflow, which once gave -inf scores that the threshold window
    # dropped, so it fell out of step with the feature window and refits broke.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(6000, 3))
    cluster = rng.random(6000) < 0.01
    X[cluster] = 60.0 + rng.normal(0, 1e-3, (cluster.sum(), 3))
    det = AnomalyDetector(n_components=3, warmup=1000, window=2000, refit_every=1000,
                          random_state=0)
    det.process(X[:1000])
    assert not det._major.all(), "the far cluster should be a minor component"
    outs = [det.process(X[i:i + 250]) for i in range(1000, 6000, 250)]
    det.wait_for_refit(timeout=20)
    score = np.concatenate([o.score for o in outs])
    flags = np.concatenate([o.is_anomaly for o in outs])
    assert np.isfinite(score).all()
    assert flags[cluster[1000:]].all()
    assert len(det.threshold_) == len(det._window) == 2000
    det.close()


def test_discrete_features_get_their_rounding_variance_as_floor():
    from streamgmm.detect.detector import quantisation_floor

    rng = np.random.default_rng(3)
    X = np.column_stack([
        rng.normal(size=800),                        # continuous: no floor
        rng.integers(0, 2, 800).astype(float),        # a flag: step 1
        rng.integers(0, 10, 800) * 0.5,               # counts in halves: step 0.5
        np.zeros(800),                                # constant: taken to step by 1
    ])
    np.testing.assert_allclose(quantisation_floor(X), [0.0, 1 / 12, 0.25 / 12, 1 / 12])


def test_a_rare_category_gets_a_finite_moderate_score():
    # A one-hot column that never fires in the warm-up must not give the first
    # event that has it a log-density in the millions.
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(size=3000), np.zeros(3000)])
    det = AnomalyDetector(n_components=2, warmup=500, window=1000, random_state=0)
    det.process(X[:2000])
    out = det.process(np.array([[0.0, 1.0]]))
    assert out.is_anomaly[0]
    assert -100 < out.score[0] < det.threshold_value


@pytest.mark.parametrize("trim", [0.01, 0.3, True, "0.1"])
def test_trim_outside_contamination_to_a_quarter_is_named(trim):
    with pytest.raises(ValueError, match=r"trim: expected a number in \[contamination \(0.02\), "
                                         r"0.25\] or None, got"):
        AnomalyDetector(contamination=0.02, trim=trim)
    with pytest.raises(ValueError, match=r"trim: expected None with contamination \(0.3\) "
                                         r"above 0.25, got 0.3"):
        AnomalyDetector(contamination=0.3, trim=0.3)


def _counting_mark_learned(det: AnomalyDetector) -> list[int]:
    """Count the detector's calls that take held events back as normal."""
    calls, original = [0], det._window.mark_learned

    def counted(*args):
        calls[0] += 1
        return original(*args)

    det._window.mark_learned = counted
    return calls


@pytest.mark.parametrize("trim,contamination,window", [
    (0.1, 0.02, 2000), (0.25, 0.005, 1000), (0.25, 0.005, 5000)])
def test_trim_sets_the_learning_gate_apart_from_the_alert_threshold(trim, contamination, window):
    rng = np.random.default_rng(3)
    det = AnomalyDetector(n_components=1, warmup=500, window=window,
                          contamination=contamination, trim=trim, refit_enabled=False,
                          random_state=0)
    det.process(rng.normal(size=(500, 3)))
    # The warm-up fit leaves its lowest-scoring trimmed share out.
    assert det._window.learned_ordered().mean() == pytest.approx(1 - trim, abs=0.01)
    calls = _counting_mark_learned(det)
    holds = 0
    for _ in range(40):
        det.process(rng.normal(size=(250, 3)))
        holds += det._learning.hold is not None
    window_scores = det.threshold_.values()
    assert det.threshold_value == pytest.approx(np.percentile(window_scores, 100 * contamination))
    assert det._gate() == pytest.approx(np.percentile(window_scores, 100 * trim))
    # A clean stream's trimmed share varies by chance; that is no surge.
    assert holds == 0 and calls[0] == 0
    # Alerts stay at the budget while the trimmed share stays out of learning.
    out = det.process(rng.normal(size=(4000, 3)))
    assert out.is_anomaly.mean() == pytest.approx(contamination, abs=contamination / 2 + 0.004)
    scored, held = det._window.count_since(det._learning.first_scored)
    assert held / scored == pytest.approx(trim, abs=0.03)
    det.close()


def test_trim_sets_what_a_refit_is_given_and_a_burst_above_it_still_holds():
    rng = np.random.default_rng(4)
    det = AnomalyDetector(n_components=1, warmup=500, window=2000, trim=0.1, refit_every=1000,
                          refit_worker="thread", random_state=0)
    kept = []
    submit = det._refitter.submit

    def capture(X, preq, params, seq, keep, rule):
        kept.append(keep.mean())
        return submit(X, preq, params, seq, keep=keep, rule=rule)

    det._refitter.submit = capture
    for _ in range(12):
        det.process(rng.normal(size=(250, 3)))
        det.wait_for_refit()
    assert kept and all(abs(k - 0.9) < 0.02 for k in kept), kept
    assert det.refit_counts["accepted"] + det.refit_counts["rejected"] == len(kept)
    # A burst of near-identical events, a fifth of the window: more than the
    # trimmed share, so the learning gate holds and the burst is not learned.
    burst = np.array([6.0, -6.0, 6.0]) + rng.normal(0, 0.05, (400, 3))
    before = det.score_samples(burst)
    for i in range(0, 400, 100):
        det.process(burst[i:i + 100])
    assert det._learning.hold is not None
    assert not det._window.learned_ordered()[-400:].any()
    assert det.score_samples(burst).max() < before.max() + 1.0
    det.close()


def _contaminated(seed: int, n: int = 6000, share: float = 0.08):
    """Normal events around 0, and ``share`` anomalies from a wider cloud beside them."""
    rng = np.random.default_rng(seed)
    anomaly = rng.random(n) < share
    X = rng.normal(0.0, 1.0, (n, 3))
    X[anomaly] = rng.normal(0.0, 1.5, (anomaly.sum(), 3)) + [4.0, 0.0, 0.0]
    return X, anomaly, rng.normal(0.0, 1.0, (2000, 3))


def test_trim_above_the_anomaly_rate_keeps_anomalies_out_of_the_model():
    """8 % of events are anomalies and the alert budget is 2 %: a detector that
    learns all but its alerts learns the anomalies as a mode (and ranks them as
    normal); one that trims 12 % keeps them out, ranks them lower and models the
    normal events better."""
    from sklearn.metrics import average_precision_score

    X, anomaly, clean = _contaminated(0)
    ap, held_out = {}, {}
    for trim in (None, 0.12):
        det = AnomalyDetector(warmup=500, window=2000, trim=trim, refit_worker="thread",
                              random_state=0)
        scores = []
        for i in range(0, X.shape[0], 250):
            scores.append(det.process(X[i:i + 250]).score)
            det.wait_for_refit()
        s = np.concatenate(scores)
        scored = ~np.isnan(s)
        ap[trim] = average_precision_score(anomaly[scored], -s[scored])
        held_out[trim] = det.score(clean)
        det.close()
    assert ap[0.12] > ap[None] + 0.1, ap
    assert held_out[0.12] > held_out[None], held_out


def test_novelty_mode_ignores_trim_its_reference_is_clean():
    rng = np.random.default_rng(5)
    det = AnomalyDetector(n_components=1, mode="novelty", contamination=0.02, trim=0.2,
                          window=2000, random_state=0)
    det.fit(rng.normal(size=(1000, 3)))
    # The reference fit leaves out the contamination share, not the trim.
    assert det._window.learned_ordered().mean() == pytest.approx(0.98, abs=0.005)
    assert det._gate() == det.threshold_value
    det.close()
