"""Every Prometheus metric of streamgmm, declared once against an injected registry.

Names follow the Prometheus naming guide: ``streamgmm_<what>_<unit>``, base
units (seconds, ratios), counters end in ``_total``, timestamps in
``_timestamp_seconds``, and labels take a small fixed set of values (never an
event id or key). Latencies are histograms with buckets fitted to the
workload; the Python Summary computes no quantiles.

The consumer loop and the checkpointer update these metrics through the
helpers of :class:`Metrics`; the model's gauges are read from the detector at
scrape time (:class:`ModelGauges`) and its refits counted as they are
applied. The dashboards and alert rules in ``deploy/`` read them, and
``tests/test_deploy.py`` checks that every name they use is declared here.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric

#: Reason codes of undecodable messages (those of ``streamgmm.stream.decode.REASONS``;
#: the loop passes that tuple). ``other`` catches any code not listed, so a new
#: reason in the decoder can never grow the label set unnoticed.
DEFAULT_DECODE_REASONS: tuple[str, ...] = (
    "too_large",
    "bad_json",
    "bad_csv",
    "wrong_type",
    "missing_field",
    "not_a_number",
    "non_finite",
    "transform",
    "out_of_range",
    "rejected",
    "other",
)
REFIT_OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "failed")

# One micro-batch (decode, score, update, produce) takes from well under a
# millisecond (a few events) to seconds (max_poll_records with a full
# covariance model); 5 s is already far into trouble.
BATCH_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
# From the event's timestamp to its alert being flushed: milliseconds when the
# consumer keeps up, seconds when it lags.
LATENCY_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
# Events per poll, up to the largest sensible max_poll_records.
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# A background batch-EM refit of the window: a fraction of a second to minutes.
REFIT_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _build_version() -> str:
    from streamgmm import __version__

    return __version__


class Metrics:
    """Hold every streamgmm metric, registered once in ``registry``.

    Parameters
    ----------
    registry : CollectorRegistry, optional
        Where the metrics are registered. A fresh registry is created when
        omitted (never the global one, so two instances never collide).
    decode_reasons : sequence of str
        Reason codes of decode errors; a child of
        ``streamgmm_decode_errors_total`` exists at zero for each, plus
        ``other``.
    refit_outcomes : sequence of str
        Outcomes of a refit; a child of ``streamgmm_refits_total`` exists at
        zero for each.
    clock : callable, optional
        Returns the current unix time in seconds; tests inject a fake one.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> m = Metrics(CollectorRegistry())
    >>> m.observe_batch(n_consumed=10, n_scored=9, n_anomalies=1, seconds=0.004)
    >>> b"streamgmm_events_consumed_total 10.0" in generate_latest(m.registry)
    True
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        decode_reasons: Sequence[str] = DEFAULT_DECODE_REASONS,
        refit_outcomes: Sequence[str] = REFIT_OUTCOMES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._started = clock()
        self._last_checkpoint = 0.0
        self._rejoins = 0
        self.decode_reasons = tuple(dict.fromkeys([*decode_reasons, "other"]))
        self.refit_outcomes = tuple(refit_outcomes)
        self._declare_stream()
        self._declare_model()
        self._declare_operations()
        self._precreate_children()

    def _declare_stream(self) -> None:
        reg = self.registry
        # Records returned by poll(), decodable or not.
        self.events_consumed = Counter(
            "streamgmm_events_consumed_total", "Records consumed from the source.", registry=reg)
        # Events decoded and scored by the model (alerting or not).
        self.events_scored = Counter(
            "streamgmm_events_scored_total", "Events scored by the mixture.", registry=reg)
        # Events flagged as anomalies (below the rolling threshold).
        self.anomalies = Counter(
            "streamgmm_anomalies_total", "Events flagged as anomalies.", registry=reg)
        # Records that could not be decoded, by reason code.
        self.decode_errors = Counter(
            "streamgmm_decode_errors_total", "Records that failed to decode, by reason.",
            ["reason"], registry=reg)
        # Records sent to the dead-letter sink.
        self.dead_letters = Counter(
            "streamgmm_dead_letters_total", "Records sent to the dead-letter sink.", registry=reg)
        # Alerts whose delivery to the alerts sink was confirmed.
        self.alerts_published = Counter(
            "streamgmm_alerts_published_total", "Alerts delivered to the alerts sink.",
            registry=reg)
        # Alert or dead-letter sends that failed (the batch is redone).
        self.send_failures = Counter(
            "streamgmm_send_failures_total", "Failed sends of alerts or dead letters.",
            registry=reg)
        # Offset commits that failed (the batch is redone: at-least-once).
        self.commit_failures = Counter(
            "streamgmm_commit_failures_total", "Failed offset commits.", registry=reg)
        # Times the replica left its consumer group and joined again because a
        # rebalance did not end (the group sat idle; see KafkaSource).
        self.group_rejoins = Counter(
            "streamgmm_group_rejoins_total",
            "Times this replica rejoined its consumer group after a rebalance did not end.",
            registry=reg)
        # Events re-applied to the model on restart without alerting.
        self.events_replayed = Counter(
            "streamgmm_events_replayed_total",
            "Events replayed into the model after a restart, without alerts.", registry=reg)
        # Wall time of one micro-batch: decode, score, update, produce, commit.
        self.batch_duration = Histogram(
            "streamgmm_batch_duration_seconds", "Time to process one micro-batch.",
            buckets=BATCH_SECONDS_BUCKETS, registry=reg)
        # From an event's own timestamp to its alert being flushed.
        self.alert_latency = Histogram(
            "streamgmm_event_to_alert_latency_seconds",
            "Time from an event's timestamp to its alert being delivered.",
            buckets=LATENCY_SECONDS_BUCKETS, registry=reg)
        # Records per poll.
        self.batch_size = Histogram(
            "streamgmm_batch_size_events", "Records returned by one poll.",
            buckets=BATCH_SIZE_BUCKETS, registry=reg)

    def _declare_model(self) -> None:
        reg = self.registry
        # The threshold, mean log-density, component weights, component count
        # and model version are read from the detector at scrape time.
        self.model = ModelGauges()
        reg.register(self.model)
        # 1 once a model exists and scores, 0 during warm-up.
        self.model_ready = Gauge(
            "streamgmm_model_ready", "1 when a model is ready to score, else 0.", registry=reg)
        # The configured anomaly fraction, drawn against the observed rate.
        self.contamination = Gauge(
            "streamgmm_contamination_ratio", "Configured contamination (expected anomaly rate).",
            registry=reg)
        # Background refits by outcome.
        self.refits = Counter(
            "streamgmm_refits_total", "Background refits, by outcome.", ["outcome"],
            registry=reg)
        # Wall time of one background refit.
        self.refit_duration = Histogram(
            "streamgmm_refit_duration_seconds", "Time taken by one background refit.",
            buckets=REFIT_SECONDS_BUCKETS, registry=reg)

    def _declare_operations(self) -> None:
        reg = self.registry
        # Unix time of the last checkpoint written.
        self.last_checkpoint = Gauge(
            "streamgmm_last_checkpoint_timestamp_seconds",
            "Unix time of the last successful checkpoint (0 before the first).", registry=reg)
        # Seconds since the last checkpoint (since start before the first), at scrape time.
        self.checkpoint_age = Gauge(
            "streamgmm_checkpoint_age_seconds",
            "Seconds since the last successful checkpoint, or since start before the first.",
            registry=reg)
        self.checkpoint_age.set_function(self._checkpoint_age)
        # Checkpoints written and checkpoint writes that failed.
        self.checkpoint_writes = Counter(
            "streamgmm_checkpoint_writes_total", "Checkpoints written.", registry=reg)
        self.checkpoint_failures = Counter(
            "streamgmm_checkpoint_failures_total", "Checkpoint writes that failed.", registry=reg)
        # Messages behind the log end, per assigned partition.
        self.consumer_lag = Gauge(
            "streamgmm_consumer_lag_messages", "Messages between the position and the log end.",
            ["topic", "partition"], registry=reg)
        # Partitions currently assigned to this replica.
        self.assigned_partitions = Gauge(
            "streamgmm_assigned_partitions", "Partitions assigned to this replica.", registry=reg)
        # 1 while the broker answers, 0 during an outage.
        self.broker_up = Gauge(
            "streamgmm_broker_up", "1 when the broker is reachable, else 0.", registry=reg)
        # Iterations of the poll loop (empty polls included): the liveness signal.
        self.loop_iterations = Counter(
            "streamgmm_loop_iterations_total", "Iterations of the consumer loop.", registry=reg)
        self.last_loop_iteration = Gauge(
            "streamgmm_last_loop_iteration_timestamp_seconds",
            "Unix time of the last iteration of the consumer loop.", registry=reg)
        # Version of the running build, as labels of a constant 1.
        self.build = Info("streamgmm_build", "Version of the running streamgmm.", registry=reg)

    def _precreate_children(self) -> None:
        # Series that alerts and dashboards rely on must exist at zero.
        for reason in self.decode_reasons:
            self.decode_errors.labels(reason=reason)
        for outcome in self.refit_outcomes:
            self.refits.labels(outcome=outcome)
        self.build.info({
            "version": _build_version(),
            "python": ".".join(str(v) for v in sys.version_info[:3]),
        })

    def _checkpoint_age(self) -> float:
        since = self._last_checkpoint or self._started
        return max(0.0, self._clock() - since)

    # -- helpers the loop calls ------------------------------------------------

    def observe_batch(
        self,
        n_consumed: int,
        n_scored: int,
        n_anomalies: int,
        seconds: float,
        latencies: Iterable[float] = (),
    ) -> None:
        """Record one processed micro-batch.

        Parameters
        ----------
        n_consumed : int
            Records returned by the poll.
        n_scored : int
            Events decoded and scored.
        n_anomalies : int
            Events flagged as anomalies.
        seconds : float
            Wall time spent on the batch.
        latencies : iterable of float
            Event-to-alert latency, in seconds, of each delivered alert.
        """
        self.events_consumed.inc(n_consumed)
        self.events_scored.inc(n_scored)
        self.anomalies.inc(n_anomalies)
        self.batch_size.observe(n_consumed)
        self.batch_duration.observe(seconds)
        # One observe per alert: alerts are a small fraction of the events.
        for latency in latencies:
            self.alert_latency.observe(max(0.0, float(latency)))

    def count_decode_errors(self, by_reason: Mapping[str, int]) -> None:
        """Add decode errors by reason code; unknown codes count as ``other``."""
        for reason, n in by_reason.items():
            label = reason if reason in self.decode_reasons else "other"
            self.decode_errors.labels(reason=label).inc(n)

    def observe_refit(self, outcome: str, seconds: float) -> None:
        """Record one finished refit with its outcome and duration."""
        if outcome not in self.refit_outcomes:
            raise ValueError(
                f"refit outcome: expected one of {self.refit_outcomes}, got {outcome!r}")
        self.refits.labels(outcome=outcome).inc()
        self.refit_duration.observe(seconds)

    def observe_checkpoint(self, ok: bool) -> None:
        """Record a checkpoint write: success stamps the time, failure is counted."""
        if ok:
            self._last_checkpoint = self._clock()
            self.checkpoint_writes.inc()
            self.last_checkpoint.set(self._last_checkpoint)
        else:
            self.checkpoint_failures.inc()

    def watch_model(self, detector: Any) -> None:
        """Read the model's gauges from ``detector`` at every scrape, and count its
        refits (``detector.on_refit``) as they are applied."""
        self.model.detector = detector
        detector.on_refit = self.observe_refit

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Set the lag of each ``(topic, partition)`` (a TopicPartition works)."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(str(topic), str(partition)).set(lag)

    def set_rejoins(self, total: int) -> None:
        """Advance the rejoin counter to the consumer's running ``total`` (a
        total that went down is a new consumer counting from zero)."""
        if total < self._rejoins:
            self._rejoins = 0
        if total > self._rejoins:
            self.group_rejoins.inc(total - self._rejoins)
            self._rejoins = total

    def drop_partitions(self, tps: Iterable[tuple[str, int]]) -> None:
        """Remove the lag series of revoked partitions, so no stale lag lingers."""
        for topic, partition in tps:
            self.consumer_lag.remove(str(topic), str(partition))

    def mark_iteration(self) -> None:
        """Count one iteration of the consumer loop and stamp its time."""
        self.loop_iterations.inc()
        self.last_loop_iteration.set(self._clock())


class ModelGauges:
    """The gauges of the model in use, read from the detector when Prometheus scrapes.

    Nothing is pushed from the consumer loop: a scrape reads the detector's
    ``model_version``, ``weights``, ``threshold_value`` and ``mean_score``
    (each a read of values the loop replaces whole, safe from the scrape's
    thread). Until the detector is ready the gauges keep what they showed
    last: at first version 0, no component series, and NaN for the threshold
    and the mean (a gap on the dashboard, not a misleading zero); a value that
    is not finite, or a read that fails mid-swap, leaves a gauge as it was.
    """

    _HELP = {
        "streamgmm_threshold_log_density": "Current anomaly threshold (log-density).",
        "streamgmm_mean_log_density": "Mean log-density over the rolling window.",
        "streamgmm_component_weight_ratio": "Mixing weight of each component.",
        "streamgmm_model_components": "Components of the mixture in use.",
        "streamgmm_model_version": "Version of the model in use.",
    }

    def __init__(self) -> None:
        self.detector: Any = None
        self._lock = threading.Lock()
        self.version = 0
        self.weights: list[float] = []
        self.threshold = math.nan
        self.mean_log_density = math.nan

    def _read(self) -> None:
        det = self.detector
        if det is None or not det.ready:
            return
        try:
            version, weights = int(det.model_version), [float(w) for w in det.weights]
            threshold, mean = _finite_or(det.threshold_value), _finite_or(det.mean_score)
        except (TypeError, ValueError, AttributeError, IndexError):
            return  # caught mid-swap: the next scrape reads it
        self.version, self.weights = version, weights
        self.threshold = self.threshold if threshold is None else threshold
        self.mean_log_density = self.mean_log_density if mean is None else mean

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (the registry checks names against them)."""
        for name, doc in self._HELP.items():
            labels = ["component"] if name == "streamgmm_component_weight_ratio" else None
            yield GaugeMetricFamily(name, doc, labels=labels)

    def collect(self) -> Iterator[Metric]:
        """The model's gauges as of now."""
        with self._lock:
            self._read()
            version, weights = self.version, list(self.weights)
            threshold, mean = self.threshold, self.mean_log_density
        helps = self._HELP
        yield GaugeMetricFamily("streamgmm_threshold_log_density",
                                helps["streamgmm_threshold_log_density"], value=threshold)
        yield GaugeMetricFamily("streamgmm_mean_log_density",
                                helps["streamgmm_mean_log_density"], value=mean)
        family = GaugeMetricFamily("streamgmm_component_weight_ratio",
                                   helps["streamgmm_component_weight_ratio"],
                                   labels=["component"])
        for i, weight in enumerate(weights):
            family.add_metric([str(i)], weight)
        yield family
        yield GaugeMetricFamily("streamgmm_model_components",
                                helps["streamgmm_model_components"], value=len(weights))
        yield GaugeMetricFamily("streamgmm_model_version", helps["streamgmm_model_version"],
                                value=version)


def _finite_or(value: Any) -> float | None:
    out = float(value)
    return out if math.isfinite(out) else None
