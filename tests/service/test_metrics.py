"""Tests for streamgmm.service.metrics: names, pre-created children, update helpers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamgmm import __version__
from streamgmm.service.metrics import REFIT_OUTCOMES, Metrics

NAME = re.compile(r"^streamgmm_[a-z0-9_]+$")
UNIT_SUFFIXES = ("_seconds", "_ratio", "_events", "_messages", "_log_density")


def families(registry: CollectorRegistry) -> dict[str, object]:
    return {m.name: m for m in registry.collect()}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for m in registry.collect() for s in m.samples if s.name == name]


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_names_follow_the_naming_guide():
    reg = CollectorRegistry()
    Metrics(reg)
    fams = families(reg)
    assert len(fams) >= 30
    for name, fam in fams.items():
        exposed = name + "_total" if fam.type == "counter" else name
        exposed = exposed + "_info" if fam.type == "info" else exposed
        assert NAME.match(exposed), exposed
        assert "_total" not in name, f"{name}: _total belongs only at the end of a counter"
        if fam.type == "histogram":
            assert name.endswith(UNIT_SUFFIXES), f"{name}: a histogram names its unit"
        if "timestamp" in name:
            assert name.endswith("_timestamp_seconds"), name
        assert "milliseconds" not in name and "percent" not in name, f"{name}: use base units"
    assert fams["streamgmm_refits"].type == "counter"
    assert fams["streamgmm_build"].type == "info"


def test_no_summaries_and_latencies_are_histograms():
    reg = CollectorRegistry()
    Metrics(reg)
    fams = families(reg)
    assert not [n for n, f in fams.items() if f.type == "summary"]
    for name in ("streamgmm_batch_duration_seconds", "streamgmm_event_to_alert_latency_seconds",
                 "streamgmm_refit_duration_seconds"):
        assert fams[name].type == "histogram"
    bounds = [float(s.labels["le"]) for s in fams["streamgmm_batch_duration_seconds"].samples
              if s.name.endswith("_bucket")]
    assert bounds[0] == pytest.approx(0.0005) and 5.0 in bounds
    bounds = [float(s.labels["le"]) for s in
              fams["streamgmm_event_to_alert_latency_seconds"].samples
              if s.name.endswith("_bucket")]
    assert bounds[0] == pytest.approx(0.001) and 10.0 in bounds


def test_labelled_children_exist_at_zero():
    reg = CollectorRegistry()
    Metrics(reg, decode_reasons=("invalid_json", "missing_field"))
    for reason in ("invalid_json", "missing_field", "other"):
        assert sample(reg, "streamgmm_decode_errors_total", reason=reason) == 0.0
    for outcome in REFIT_OUTCOMES:
        assert sample(reg, "streamgmm_refits_total", outcome=outcome) == 0.0
    [build] = series(reg, "streamgmm_build_info")
    assert build["version"] == __version__


def test_default_reasons_cover_the_decoder():
    decode = pytest.importorskip("streamgmm.stream.decode")
    reg = CollectorRegistry()
    Metrics(reg)
    for reason in decode.REASONS:
        assert sample(reg, "streamgmm_decode_errors_total", reason=reason) == 0.0, reason


def test_a_fresh_registry_twice_works_and_the_same_one_twice_fails():
    a, b = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    a.events_consumed.inc(3)
    assert sample(b.registry, "streamgmm_events_consumed_total") == 0.0
    reg = CollectorRegistry()
    Metrics(reg)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(reg)


def test_observe_batch_updates_counters_and_histograms():
    m = Metrics(CollectorRegistry())
    m.observe_batch(n_consumed=100, n_scored=97, n_anomalies=3, seconds=0.02,
                    latencies=[0.004, 0.03, 20.0])
    reg = m.registry
    assert sample(reg, "streamgmm_events_consumed_total") == 100
    assert sample(reg, "streamgmm_events_scored_total") == 97
    assert sample(reg, "streamgmm_anomalies_total") == 3
    assert sample(reg, "streamgmm_batch_duration_seconds_count") == 1
    assert sample(reg, "streamgmm_batch_duration_seconds_bucket", le="0.025") == 1
    assert sample(reg, "streamgmm_batch_duration_seconds_bucket", le="0.01") == 0
    assert sample(reg, "streamgmm_batch_size_events_sum") == 100
    assert sample(reg, "streamgmm_event_to_alert_latency_seconds_count") == 3
    assert sample(reg, "streamgmm_event_to_alert_latency_seconds_bucket", le="0.005") == 1
    assert sample(reg, "streamgmm_event_to_alert_latency_seconds_bucket", le="10.0") == 2


def test_decode_errors_unknown_reason_counts_as_other():
    m = Metrics(CollectorRegistry(), decode_reasons=("invalid_json",))
    m.count_decode_errors({"invalid_json": 2, "brand_new_reason": 1})
    assert sample(m.registry, "streamgmm_decode_errors_total", reason="invalid_json") == 2
    assert sample(m.registry, "streamgmm_decode_errors_total", reason="other") == 1
    assert not [s for s in series(m.registry, "streamgmm_decode_errors_total")
                if s["reason"] == "brand_new_reason"]


class ModelStandIn:
    """What the model gauges read of a detector, set by hand."""

    def __init__(self, ready=True, version=1, weights=(1.0,), threshold=-10.0, mean=-3.0):
        self.ready, self.model_version, self.weights = ready, version, list(weights)
        self.threshold_value, self.mean_score = threshold, mean
        self.on_refit = None


def test_component_weights_follow_k_as_it_changes():
    m = Metrics(CollectorRegistry())
    model = ModelStandIn(weights=[0.5, 0.3, 0.2])
    m.watch_model(model)
    assert {s["component"] for s in series(m.registry, "streamgmm_component_weight_ratio")} == {
        "0", "1", "2"}
    assert sample(m.registry, "streamgmm_model_components") == 3
    model.weights = [0.6, 0.4]
    assert {s["component"] for s in series(m.registry, "streamgmm_component_weight_ratio")} == {
        "0", "1"}
    assert sample(m.registry, "streamgmm_component_weight_ratio", component="0") == 0.6
    assert sample(m.registry, "streamgmm_model_components") == 2
    model.weights = [0.25] * 4
    assert sample(m.registry, "streamgmm_component_weight_ratio", component="3") == 0.25
    assert sample(m.registry, "streamgmm_model_components") == 4


def test_lag_series_are_removed_on_revoke():
    m = Metrics(CollectorRegistry())
    m.set_lag({("transactions", 0): 5, ("transactions", 1): 7})
    assert sample(m.registry, "streamgmm_consumer_lag_messages",
                  topic="transactions", partition="1") == 7
    m.drop_partitions([("transactions", 1), ("transactions", 9)])
    assert series(m.registry, "streamgmm_consumer_lag_messages") == [
        {"topic": "transactions", "partition": "0"}]


def test_model_gauges_are_gaps_until_a_model_exists():
    m = Metrics(CollectorRegistry())
    assert math.isnan(sample(m.registry, "streamgmm_threshold_log_density"))
    model = ModelStandIn(ready=False, version=2, weights=[0.7, 0.3], threshold=-12.5, mean=-4.0)
    m.watch_model(model)
    assert math.isnan(sample(m.registry, "streamgmm_threshold_log_density"))  # warming up
    assert sample(m.registry, "streamgmm_model_version") == 0
    model.ready = True
    assert sample(m.registry, "streamgmm_threshold_log_density") == -12.5
    assert sample(m.registry, "streamgmm_mean_log_density") == -4.0
    assert sample(m.registry, "streamgmm_model_version") == 2
    model.model_version, model.weights, model.threshold_value = 3, [1.0], None
    model.mean_score = math.nan
    assert sample(m.registry, "streamgmm_threshold_log_density") == -12.5
    assert sample(m.registry, "streamgmm_mean_log_density") == -4.0


def test_model_gauges_read_the_detector_at_scrape_time():
    from streamgmm.detect.detector import AnomalyDetector

    m = Metrics(CollectorRegistry())
    det = AnomalyDetector(n_components=2, warmup=200, window=400, refit_enabled=False,
                          random_state=0)
    m.watch_model(det)
    rng = np.random.default_rng(0)
    det.process(rng.normal(0, 1, (600, 2)))
    assert sample(m.registry, "streamgmm_model_version") == det.model_version
    assert sample(m.registry, "streamgmm_threshold_log_density") == det.threshold_value
    weights = [sample(m.registry, "streamgmm_component_weight_ratio", component=str(i))
               for i in range(len(det.weights))]
    assert weights == pytest.approx(det.weights.tolist(), abs=0)


def test_refits_are_counted_as_the_detector_applies_them():
    m = Metrics(CollectorRegistry())
    model = ModelStandIn()
    m.watch_model(model)
    model.on_refit("rejected", 0.3)
    assert sample(m.registry, "streamgmm_refits_total", outcome="rejected") == 1
    assert sample(m.registry, "streamgmm_refit_duration_seconds_sum") == 0.3


def test_refits_count_by_outcome_and_reject_unknown_outcomes():
    m = Metrics(CollectorRegistry())
    m.observe_refit("accepted", 1.2)
    m.observe_refit("failed", 0.1)
    assert sample(m.registry, "streamgmm_refits_total", outcome="accepted") == 1
    assert sample(m.registry, "streamgmm_refits_total", outcome="rejected") == 0
    assert sample(m.registry, "streamgmm_refit_duration_seconds_count") == 2
    with pytest.raises(ValueError, match="refit outcome: expected one of .* got 'maybe'"):
        m.observe_refit("maybe", 1.0)


def test_checkpoint_age_is_computed_at_scrape_time():
    clock = FakeClock(1_000.0)
    m = Metrics(CollectorRegistry(), clock=clock)
    clock.now = 1_030.0
    assert sample(m.registry, "streamgmm_checkpoint_age_seconds") == 30.0
    m.observe_checkpoint(ok=True)
    assert sample(m.registry, "streamgmm_last_checkpoint_timestamp_seconds") == 1_030.0
    clock.now = 1_045.5
    assert sample(m.registry, "streamgmm_checkpoint_age_seconds") == 15.5
    m.observe_checkpoint(ok=False)
    assert sample(m.registry, "streamgmm_checkpoint_failures_total") == 1
    assert sample(m.registry, "streamgmm_checkpoint_writes_total") == 1
    assert sample(m.registry, "streamgmm_checkpoint_age_seconds") == 15.5


def test_mark_iteration_counts_and_stamps():
    clock = FakeClock(50.0)
    m = Metrics(CollectorRegistry(), clock=clock)
    m.mark_iteration()
    clock.now = 51.0
    m.mark_iteration()
    assert sample(m.registry, "streamgmm_loop_iterations_total") == 2
    assert sample(m.registry, "streamgmm_last_loop_iteration_timestamp_seconds") == 51.0


def test_rejoins_follow_the_consumers_running_total():
    m = Metrics(CollectorRegistry())
    assert sample(m.registry, "streamgmm_group_rejoins_total") == 0
    m.set_rejoins(0)
    m.set_rejoins(2)
    m.set_rejoins(2)  # the same total again is no new rejoin
    assert sample(m.registry, "streamgmm_group_rejoins_total") == 2
    m.set_rejoins(1)  # a new consumer counts from zero: its one rejoin counts
    assert sample(m.registry, "streamgmm_group_rejoins_total") == 3
