"""The daemon's wiring: configuration in, a running consumer loop out, a clean exit.

:func:`run_daemon` builds everything the configuration names (decoder,
metrics and health server, checkpoint store, detector, sinks, source, audit
file), restores the newest checkpoint, runs the
:class:`~streamgmm.stream.loop.ConsumerLoop` until SIGTERM or SIGINT (or the
end of a file, stdin or the generated stream), and shuts down within
``shutdown.timeout_s``: finish the batch (its alerts flushed and offsets
committed), write a checkpoint, close the consumer (leaving the group) and
the producer, exit 0.

A broker that does not answer at start-up is retried with backoff until it
does or a stop signal arrives; meanwhile the loop counts as live and not
ready. A checkpoint written under another feature configuration, or a
directory with only damaged checkpoints, stops the start with a clear error
(exit 1): discarding a model's state is the operator's decision.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from streamgmm.service import signals
from streamgmm.service.checkpoint import CheckpointError, CheckpointStore
from streamgmm.service.config import config_fingerprint
from streamgmm.service.connect import connect
from streamgmm.service.detector_config import detector_params
from streamgmm.service.evaluation import Evaluation, format_summary
from streamgmm.service.health import HealthState, make_app, serve
from streamgmm.service.kafka_options import consumer_options, producer_options, servers
from streamgmm.service.metrics import Metrics
from streamgmm.service.schema import Config
from streamgmm.stream.alerts import format_pretty
from streamgmm.stream.audit import AuditLog
from streamgmm.stream.decode import REASONS, Decoder
from streamgmm.stream.file_io import FileSource, GenerateSource, StdinSource
from streamgmm.stream.logs import setup_logging
from streamgmm.stream.loop import ConsumerLoop, LoopSettings, LoopStats
from streamgmm.stream.offsets import Offsets
from streamgmm.stream.protocols import TP, Sink, Source
from streamgmm.stream.sinks import JsonlFileSink, NullSink, StreamSink

log = logging.getLogger("streamgmm.daemon")

#: How long a thread may hold the interpreter while another waits for it. The
#: loop shares the daemon's process with background refits and the producer's
#: network thread; Python's default (5 ms) lets a refit hold up a batch, and
#: its alerts, for that long at every hand-over. `bench/bench_e2e.py
#: --latency-only --events 20000 --seconds 8 --switch-interval S`, alternating
#: runs on an idle machine: p99 85-454 ms at 5 ms, 67-85 ms at 1 ms (p50 36-44
#: ms either way).
SWITCH_INTERVAL_S = 0.001

__all__ = ["EXIT_FAILED", "run_daemon"]

EXIT_FAILED = 1




class _Startup(Exception):
    """The daemon cannot start (the message says why); exit 1."""


def run_daemon(
    config: Config,
    alerts_format: str = "auto",
    stop: threading.Event | None = None,
    install_signals: bool = True,
) -> int:
    """Run the daemon until stopped or the source ends; return the exit code.

    Parameters
    ----------
    config : Config
        The validated configuration.
    alerts_format : {"auto", "pretty", "json"}
        How alerts on stdout look: one readable line each (``pretty``), JSON
        lines (``json``), or pretty on a terminal and JSON otherwise (``auto``).
    stop : threading.Event, optional
        Set it to stop the daemon (tests); signals set it too.
    install_signals : bool
        Install SIGTERM and SIGINT handlers (only possible on the main thread).
    """
    setup_logging(config.logging.level, config.logging.format)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if install_signals:
        # The same event the CLI's early handler sets, so a signal during start-up counts.
        stop = signals.install(stop or signals.STOP)
    stop = stop or threading.Event()
    daemon = _Daemon(config, alerts_format, stop)
    try:
        daemon.start()
    except _Startup as exc:
        log.error("cannot start: %s", exc)
        daemon.close()
        return EXIT_FAILED
    if daemon.loop is None:  # stopped while waiting for the broker
        daemon.close()
        return 0
    try:
        stats = daemon.loop.run(stop)
    finally:  # an unexpected error still leaves the group and closes the producer
        daemon.close()
    daemon.summary(stats)
    return 0


class _ProbedHealth(HealthState):
    """Health whose broker state is read from the source when a probe asks.

    The loop records the broker's state once per iteration, but during an
    outage it can sit in one flush or commit for seconds (their timeouts);
    readiness must turn false after ``broker_timeout_s`` all the same. The
    source's check reads when its connections last received bytes, without a
    call of its own, so it is safe from the probe's thread.
    """

    source: Source | None = None

    def snapshot(self) -> dict[str, Any]:
        """The probe bodies' state, with the broker's reachability as of now."""
        if self.source is not None:
            self.set_broker_reachable(self.source.broker_reachable())
        return super().snapshot()


class _Daemon:
    """Everything one run owns, built in :meth:`start` and released in :meth:`close`."""

    def __init__(self, config: Config, alerts_format: str, stop: threading.Event) -> None:
        self.config = config
        self.alerts_format = alerts_format
        self.stop = stop
        self.decoder = Decoder(config.features)
        self.metrics = Metrics(decode_reasons=REASONS)
        self.metrics.contamination.set(config.detector.contamination)
        self.health = _ProbedHealth(config.health.stall_timeout_s, metrics=self.metrics)
        self.fingerprint = config_fingerprint(config.features)
        self.server = None
        self.store: CheckpointStore | None = None
        self.detector: Any = None
        self.alerts: Sink | None = None
        self.dead_letters: Sink | None = None
        self.source: Source | None = None
        self.audit: AuditLog | None = None
        self.loop: ConsumerLoop | None = None
        self.evaluation: Evaluation | None = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        cfg = self.config
        log.info(
            "streamgmm starting: source %s, alerts to %s, dead letters to %s, %d features",
            cfg.source.type, cfg.alerts.sink, cfg.dead_letter.sink, self.decoder.n_features,
            extra={"fields": {"config": cfg.redacted()}},
        )
        if cfg.metrics.enabled:
            try:
                self.server = serve(make_app(self.metrics.registry, self.health),
                                    cfg.metrics.host, cfg.metrics.port)
            except OSError as exc:  # e.g. the port is taken
                raise _Startup(f"metrics: {exc.strerror or exc}") from exc
            log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)",
                     self.server.host, self.server.port)
        offsets = self._restore()
        worker = self.detector.start_refit_worker()
        if worker is not None:
            pid = self.detector.refit_worker_pid
            log.info("refits run on a worker %s%s", worker, f" (pid {pid})" if pid else "")
        if cfg.audit.path:
            try:
                self.audit = AuditLog(cfg.audit.path, scores=cfg.audit.scores)
            except OSError as exc:
                raise _Startup(exc.strerror or str(exc)) from exc
        self._build_sinks()
        if self.stop.is_set():
            return
        self.source = connect("the Kafka consumer", self._build_source, self.stop, self.health)
        if self.source is None:
            return
        if isinstance(self.source, GenerateSource):
            self.evaluation = Evaluation(self.source)
        self.health.source = self.source
        self.loop = ConsumerLoop(
            self.source, self.decoder, self.detector, self.alerts, self.dead_letters,
            settings=self._settings(), metrics=self.metrics, health=self.health,
            audit=self.audit, checkpoint=self._checkpoint if self.store else None,
            observer=self.evaluation, offsets=offsets,
        )
        if not self.source.partitioned:
            self.loop.on_assign(sorted(self.source.assignment()))
        self.health.set_model_ready(bool(self.detector.ready))

    def _settings(self) -> LoopSettings:
        cfg = self.config
        kafka = cfg.source.type == "kafka"
        return LoopSettings(
            poll_timeout_s=cfg.source.kafka.poll_timeout_ms / 1000 if kafka else 0.5,
            # A flush that waits on a dead broker must leave room in the shutdown
            # budget for the checkpoint and the closes.
            flush_timeout_s=min(30.0, max(1.0, cfg.shutdown.timeout_s / 2)),
            include_features=cfg.alerts.include_features,
            dead_letters_as_json=cfg.dead_letter.sink != "kafka",
            checkpoint_interval_s=cfg.checkpoint.interval_s,
        )

    def _restore(self) -> Offsets:
        """Load the newest checkpoint into a detector; the offsets it had learned
        up to and was to redo from."""
        from streamgmm.detect.detector import AnomalyDetector, CheckpointIncompatible

        cfg = self.config
        names = self.decoder.feature_names
        if cfg.checkpoint.dir:
            self.store = CheckpointStore(cfg.checkpoint.dir, keep=cfg.checkpoint.keep)
            try:
                ckpt = self.store.load_latest(expect={"feature_fingerprint": self.fingerprint})
            except CheckpointError as exc:  # CheckpointMismatch included
                raise _Startup(str(exc)) from exc
            if ckpt is not None:
                try:
                    self.detector = AnomalyDetector.from_state_arrays(
                        ckpt.arrays, **detector_params(cfg.detector, names))
                except CheckpointIncompatible as exc:
                    raise _Startup(
                        f"checkpoint {ckpt.path} cannot be restored under this detector "
                        f"configuration: {exc}; restore the former detector settings, or "
                        f"move the checkpoint directory aside to start afresh") from exc
                offsets = Offsets.from_checkpoint(ckpt.meta)
                log.info("restored checkpoint %s: %d events learned, offsets %s", ckpt.path,
                         int(ckpt.meta.get("n_events", 0)), _show_offsets(offsets.learned))
                return offsets
        self.detector = AnomalyDetector(**detector_params(cfg.detector, names))
        model = self.detector.model
        if model is not None and model.n_features_in_ != len(names):
            raise _Startup(f"detector.model_path: {cfg.detector.model_path} has "
                           f"{model.n_features_in_} features, but the features section "
                           f"gives {len(names)} ({', '.join(names)})")
        return Offsets()

    def _checkpoint(self, offsets: Offsets) -> None:
        """Save the detector's state and where it stands on each partition."""
        assert self.store is not None
        meta = {
            **offsets.checkpoint_form(),
            "feature_fingerprint": self.fingerprint,
            "feature_names": list(self.decoder.feature_names),
            "n_events": int(self.detector.n_events_),
            "source": self.config.source.type,
        }
        try:
            path = self.store.save(self.detector.state_arrays(), meta)
        except (OSError, ValueError) as exc:
            self.metrics.observe_checkpoint(False)
            log.error("checkpoint failed: %s: %s", type(exc).__name__, exc)
            return
        self.metrics.observe_checkpoint(True)
        log.info("checkpoint %s written: %d events learned, offsets %s", path.name,
                 meta["n_events"], _show_offsets(offsets.learned))

    # ------------------------------------------------------------- components

    def _build_sinks(self) -> None:
        cfg = self.config
        producer = None
        if "kafka" in (cfg.alerts.sink, cfg.dead_letter.sink):
            producer = connect("the Kafka producer", self._build_producer, self.stop, self.health)
            if producer is None:
                return
        pretty = self.alerts_format == "pretty" or (
            self.alerts_format == "auto" and sys.stdout.isatty())
        render = _render_pretty if pretty else None
        self.alerts = _sink(cfg.alerts.sink, cfg.alerts.topic, cfg.alerts.path, producer,
                            "alerts", render)
        self.dead_letters = _sink(cfg.dead_letter.sink, cfg.dead_letter.topic,
                                  cfg.dead_letter.path, producer, "dead_letter", None)

    def _build_producer(self) -> Any:
        from streamgmm.stream.kafka_io import make_producer

        kafka = self.config.source.kafka
        return make_producer(servers(kafka), producer_options(kafka))

    def _build_source(self) -> Source:
        cfg = self.config.source
        if cfg.type == "generate":
            g = cfg.generate
            return GenerateSource(g.n_events, g.seed, g.events_per_second, g.fraud_rate,
                                  cfg.batch_size)
        if cfg.type == "file":
            f = cfg.file
            return FileSource(f.path, f.format, f.follow, f.poll_interval_s, cfg.batch_size)
        if cfg.type == "stdin":
            return StdinSource(cfg.file.format, cfg.batch_size)
        k = cfg.kafka
        options: dict[str, Any] = {}
        if k.consumer_process:
            from streamgmm.stream.kafka_process import ProcessKafkaSource as source_class

            options = {"log_level": self.config.logging.level,
                       "log_format": self.config.logging.format, "abort": self.stop}
        else:
            from streamgmm.stream.kafka_io import KafkaSource as source_class
        return source_class(
            servers(k), k.group_id, topics=k.topics, pattern=k.pattern,
            client_options=consumer_options(k), max_poll_records=k.max_poll_records,
            on_assign=lambda tps: self.loop.on_assign(tps) if self.loop else None,
            on_revoke=lambda tps: self.loop.on_revoke(tps) if self.loop else None,
            reachability_window_s=k.broker_timeout_s, **options,
        )

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Close source, sinks, detector and server within ``shutdown.timeout_s``."""
        deadline = time.monotonic() + self.config.shutdown.timeout_s

        def budget() -> float:
            return max(0.5, deadline - time.monotonic())

        if self.source is not None:
            self.source.close(budget())
        for sink in (self.dead_letters, self.alerts):  # the alerts sink owns a shared producer
            if sink is not None:
                sink.close(budget())
        if self.detector is not None and hasattr(self.detector, "close"):
            self.detector.close()
        if self.audit is not None:
            self.audit.close()
        if self.server is not None:
            self.server.shutdown(min(2.0, budget()))
        log.info("stopped")

    def summary(self, stats: LoopStats) -> None:
        """The end-of-run summary: counts, rate, and precision/recall for the generated stream."""
        fields: dict[str, Any] = {
            "events": stats.consumed, "scored": stats.scored, "alerts": stats.alerts,
            "dead_letters": stats.dead_letters, "replayed": stats.replayed,
            "seconds": round(stats.elapsed_s, 2),
            "events_per_s": round(stats.events_per_second, 1),
        }
        if self.evaluation is not None:
            fields.update(self.evaluation.summary())
        if self.config.logging.format == "json":
            log.info("summary", extra={"fields": fields})
        else:
            sys.stderr.write(format_summary(fields))
            sys.stderr.flush()


# ------------------------------------------------------------------- helpers


def _sink(kind: str, topic: str | None, path: str | None, producer: Any, what: str,
          render: Callable[[bytes], str] | None) -> Sink:
    if kind == "kafka":
        from streamgmm.stream.kafka_io import KafkaSink

        return KafkaSink(None, topic, producer=producer)
    if kind == "file":
        return JsonlFileSink(path, what)
    if kind == "stdout":
        return StreamSink(render=render)
    return NullSink()


def _render_pretty(value: bytes) -> str:
    import json

    return format_pretty(json.loads(value))


def _show_offsets(offsets: dict[TP, int]) -> str:
    if not offsets:
        return "{}"
    return ", ".join(f"{t}/{p}={o}" for (t, p), o in sorted(offsets.items()))


