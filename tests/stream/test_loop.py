"""The consumer loop with the real decoder and detector, a scripted source and sinks in memory."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamgmm.detect.detector import AnomalyDetector
from streamgmm.model.base import InputRejected
from streamgmm.service.config import from_dict
from streamgmm.service.health import HealthState
from streamgmm.service.metrics import Metrics
from streamgmm.service.schema import FeaturesConfig
from streamgmm.stream.audit import AuditLog, read_audit, read_audit_scores
from streamgmm.stream.decode import REASONS, Decoder
from streamgmm.stream.loop import ConsumerLoop, LoopSettings
from streamgmm.stream.protocols import Sink, Source
from streamgmm.stream.records import Record

FEATURES = from_dict(FeaturesConfig, {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]})
TOPIC = "tx"


def events(n: int, partitions: int = 2, seed: int = 0, bad_every: int = 0) -> list[Record]:
    """n records spread over partitions; every ``bad_every``-th is undecodable; a few outliers."""
    rng = np.random.default_rng(seed)
    per = {p: 0 for p in range(partitions)}
    out = []
    for i in range(n):
        p = i % partitions
        a, b = rng.normal(0, 1, 2)
        if i % 97 == 50:
            a = 12.0
        value = json.dumps({"id": f"e{i}", "a": a, "b": b}).encode()
        if bad_every and i % bad_every == bad_every - 1:
            value = b'{"id": "bad", "a": "twelve", "b": 1}'
        out.append(Record(TOPIC, p, per[p], f"k{i}".encode(), value, 1_700_000_000_000 + i))
        per[p] += 1
    return out


class ScriptedSource(Source):
    """A Kafka-like source over a fixed log per partition, with positions, seeks and commits."""

    partitioned = True
    exhausted = False

    def __init__(self, records: list[Record], batch_size: int = 40, committed=None,
                 fail_commits: int = 0) -> None:
        self.log: dict[tuple[str, int], list[Record]] = {}
        for r in records:
            self.log.setdefault((r.topic, r.partition), []).append(r)
        self.batch_size = batch_size
        self.group_offsets = dict(committed or {})
        self.position = {tp: self.group_offsets.get(tp, 0) for tp in self.log}
        self.fail_commits = fail_commits
        self.commits: list[dict] = []
        self.seeks: list[tuple] = []

    def poll(self, timeout_s: float) -> list[Record]:
        out: list[Record] = []
        for tp in sorted(self.log):
            take = self.log[tp][self.position[tp]:self.position[tp] + self.batch_size // 2]
            self.position[tp] += len(take)
            out.extend(take)
        self.exhausted = not out
        return out

    def decode(self, decoder, records):
        return decoder.decode(records)

    def seek(self, topic, partition, offset):
        self.seeks.append((topic, partition, offset))
        self.position[(topic, partition)] = offset

    def commit(self, offsets) -> bool:
        if self.fail_commits:
            self.fail_commits -= 1
            return False
        self.commits.append(dict(offsets))
        self.group_offsets.update(offsets)
        return True

    def committed(self, topic, partition, timeout_s=10.0):
        return self.group_offsets.get((topic, partition))

    def assignment(self):
        return set(self.log)

    def lag(self):
        return {tp: len(self.log[tp]) - self.position[tp] for tp in self.log}

    def broker_reachable(self):
        return True


class AsyncCommitSource(ScriptedSource):
    """Answers commits later, as the consumer process does: the commit is made (or
    fails) only when the loop takes its answer, and the order of things is noted."""

    reads_ahead = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.journal: list[tuple[str, int]] = []

    def poll(self, timeout_s: float) -> list[Record]:
        out = super().poll(timeout_s)
        if out:
            self.journal.append(("polled", len(out)))
        return out

    def commit_async(self, offsets):
        self.journal.append(("commit asked", len(offsets)))
        source = self

        class Answer:
            def done(self):
                return True

            def result(self):
                source.journal.append(("commit settled", len(offsets)))
                return source.commit(offsets)

        return Answer()


class ListSink(Sink):
    """Keeps what is sent; fails the next ``fail`` flushes."""

    def __init__(self, fail: int = 0) -> None:
        self.delivered: list[tuple] = []
        self.pending: list[tuple] = []
        self.fail = fail

    def send(self, value, key=None, headers=None):
        self.pending.append((value, key, headers))

    def flush_and_verify(self, timeout_s):
        return self.verify(self.seal(), timeout_s)

    def seal(self):
        pending, self.pending = self.pending, []
        return pending

    def done(self, pending):
        return True

    def verify(self, pending, timeout_s):
        if self.fail and pending:
            self.fail -= 1
            return 0, [f"record {i} not acknowledged" for i in range(len(pending))]
        self.delivered.extend(pending)
        return len(pending), []


def detector() -> AnomalyDetector:
    return AnomalyDetector(n_components=1, covariance_type="diag", contamination=0.05,
                           window=200, warmup=60, refit_enabled=False, random_state=0,
                           feature_names=["a", "b"], top_features=2)


class Spy:
    """Wraps a detector and records each process call's size and flags."""

    def __init__(self, inner: AnomalyDetector) -> None:
        self.inner = inner
        self.calls: list[tuple[int, bool, bool]] = []

    def process(self, X, learn=True, alert=True):
        self.calls.append((X.shape[0], learn, alert))
        return self.inner.process(X, learn=learn, alert=alert)

    def learned(self) -> int:
        return sum(n for n, learn, _ in self.calls if learn)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def make_loop(source, tmp_path, det=None, alerts=None, dead=None, **kwargs):
    metrics = Metrics(CollectorRegistry(), decode_reasons=REASONS)
    loop = ConsumerLoop(
        source, Decoder(FEATURES), det or detector(), alerts or ListSink(), dead or ListSink(),
        settings=LoopSettings(poll_timeout_s=0.01, dead_letters_as_json=False),
        metrics=metrics, health=HealthState(60, metrics=metrics),
        audit=AuditLog(tmp_path / "audit.txt"), **kwargs)
    loop.on_assign(sorted(source.assignment()))
    return loop


def learned_into(calls: list):
    """A checkpoint callback that keeps the learned offsets of each call."""
    return lambda offsets: calls.append(dict(offsets.learned))


def ends(records):
    out = {}
    for r in records:
        out[(r.topic, r.partition)] = max(out.get((r.topic, r.partition), 0), r.offset + 1)
    return out


def ids(records):
    return [f"{r.topic}/{r.partition}/{r.offset}" for r in records]


def test_every_event_scored_alerted_or_dead_lettered_and_committed(tmp_path):
    records = events(600, bad_every=50)
    good = [r for r in records if b"twelve" not in r.value]
    bad = [r for r in records if b"twelve" in r.value]
    source = ScriptedSource(records)
    alerts, dead = ListSink(), ListSink()
    loop = make_loop(source, tmp_path, alerts=alerts, dead=dead)
    stats = loop.run(threading.Event())

    assert sorted(read_audit(tmp_path / "audit.txt")) == sorted(ids(good))
    assert source.group_offsets == ends(records)
    assert loop.detector.n_events_ == len(good)
    docs = [json.loads(value) for value, _, _ in alerts.delivered]
    assert docs and len({d["alert_id"] for d in docs}) == len(docs)
    assert all(d["explanation"] and d["explanation"][0]["feature"] in ("a", "b") for d in docs)
    by_id = {f"{r.topic}/{r.partition}/{r.offset}": r for r in good}
    # Alerts are keyed by the event key (features.key), not the message key.
    event = {i: json.loads(r.value) for i, r in by_id.items()}
    assert all(key == event[d["alert_id"]]["id"].encode() == d["key"].encode()
               for (_, key, _), d in zip(alerts.delivered, docs, strict=True))
    # The planted outliers (a = 12) after the warm-up are all caught.
    planted = {i for i, e in event.items() if e["a"] == 12.0 and int(e["id"][1:]) > 100}
    assert planted and planted <= {d["alert_id"] for d in docs}
    assert [(v, k) for v, k, _ in dead.delivered] == [(r.value, r.key) for r in bad]
    assert all(dict(h)["streamgmm.reason"] == b"not_a_number" for _, _, h in dead.delivered)
    assert (stats.consumed, stats.scored, stats.dead_letters) == (600, len(good), len(bad))
    assert stats.alerts == len(docs)
    m = loop.metrics
    assert m.events_consumed._value.get() == 600
    assert m.dead_letters._value.get() == len(bad)
    assert m.decode_errors.labels(reason="not_a_number")._value.get() == len(bad)
    assert m.alerts_published._value.get() == len(docs)


class Recorder(Spy):
    """A Spy that also keeps what each alerting call returned."""

    def __init__(self, inner: AnomalyDetector) -> None:
        super().__init__(inner)
        self.said: list[tuple] = []

    def process(self, X, learn=True, alert=True):
        d = super().process(X, learn=learn, alert=alert)
        if alert:
            self.said.append((d.score, d.threshold, d.is_anomaly, d.model_version))
        return d


def test_the_audit_with_scores_carries_what_the_detector_said(tmp_path):
    records = events(600)
    rec = Recorder(detector())
    alerts = ListSink()
    loop = make_loop(ScriptedSource(records), tmp_path, det=rec, alerts=alerts)
    loop.audit = AuditLog(tmp_path / "scores.txt", scores=True)
    loop.run(threading.Event())

    path = tmp_path / "scores.txt"
    # Still an audit: the ids come first, in the order scored.
    assert read_audit(path) == [line.split("\t")[0] for line in path.read_text().splitlines()]
    assert sorted(read_audit(path)) == sorted(ids(records))
    got = read_audit_scores(path)
    score, threshold, flagged = (np.concatenate([s[j] for s in rec.said]) for j in range(3))
    versions = np.concatenate([np.full(s[0].size, s[3]) for s in rec.said])
    np.testing.assert_allclose(got.score, score, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got.threshold, threshold, atol=1e-6, equal_nan=True)
    warm = int(np.argmax(np.isfinite(got.score)))  # the warm-up is not scored
    assert warm >= 60 and np.isnan(got.score[:warm]).all() and np.isfinite(got.score[warm:]).all()
    np.testing.assert_array_equal(got.flagged, flagged)
    np.testing.assert_array_equal(got.model_version, versions)
    docs = [json.loads(value) for value, _, _ in alerts.delivered]
    assert docs and [d["alert_id"] for d in docs] == [
        i for i, f in zip(got.ids, got.flagged, strict=True) if f]
    at = {i: k for k, i in enumerate(got.ids)}
    for doc in docs:
        assert abs(got.score[at[doc["alert_id"]]] - doc["score"]) < 1e-6
        assert abs(got.threshold[at[doc["alert_id"]]] - doc["threshold"]) < 1e-6


def test_the_audit_scores_reader_names_the_line_it_cannot_read(tmp_path):
    path = tmp_path / "audit.txt"
    path.write_text("tx/0/1\t-1.0\t-3.0\t1\t0\ntx/0/2\n")
    with pytest.raises(ValueError, match=r"audit.txt: line 2: an event id without scores"):
        read_audit_scores(path)
    path.write_text("tx/0/1\t-1.0\t-3.0\t1\tyes\n")
    with pytest.raises(ValueError, match=r"line 1: expected id, score, threshold"):
        read_audit_scores(path)
    # A batch redone after a failed delivery is written twice: the first stays.
    path.write_text("tx/0/1\t-1.0\t-3.0\t1\t0\ntx/0/1\t-1.5\t-3.0\t1\t0\n")
    assert read_audit_scores(path).score.tolist() == [-1.0]
    assert read_audit(path) == ["tx/0/1", "tx/0/1"]


def run_with_a_failure(tmp_path, failure: str, det, source_class=None) -> tuple:
    records = events(400)
    source = (source_class or ScriptedSource)(
        records, fail_commits=2 if failure == "commit" else 0)
    alerts = ListSink(fail=0)
    loop = make_loop(source, tmp_path, alerts=alerts, det=det)
    # Fail the sends of the first batch that has alerts (after warm-up).
    if failure == "send":
        original = alerts.verify
        state = {"failed": False}

        def flaky(pending, timeout_s):
            if pending and not state["failed"]:
                state["failed"] = True
                return 0, ["broker said no"]
            return original(pending, timeout_s)

        alerts.verify = flaky
    return records, source, loop, loop.run(threading.Event())


@pytest.mark.parametrize("source_class", [ScriptedSource, AsyncCommitSource])
@pytest.mark.parametrize("failure", ["send", "commit"])
def test_a_failed_batch_is_redone_without_learning_twice(tmp_path, failure, source_class):
    spy = Spy(detector())
    records, source, loop, stats = run_with_a_failure(tmp_path, failure, spy, source_class)
    assert source.seeks, "the failed batch was not sought back"
    assert source.group_offsets == ends(records)
    assert spy.learned() == len(records)  # redone batches did not learn again
    redone = [call for call in spy.calls if not call[1]]
    assert redone and all(alert for _, _, alert in redone)
    audit = read_audit(tmp_path / "audit.txt")
    assert set(audit) == set(ids(records))
    assert stats.send_failures + stats.commit_failures >= 1
    metric = loop.metrics.send_failures if failure == "send" else loop.metrics.commit_failures
    assert metric._value.get() >= 1


def test_commits_are_answered_while_the_next_batches_are_worked_on(tmp_path):
    records = events(400)
    source = AsyncCommitSource(records)
    loop = make_loop(source, tmp_path)
    stats = loop.run(threading.Event())
    assert source.group_offsets == ends(records)
    assert set(read_audit(tmp_path / "audit.txt")) == set(ids(records))
    assert stats.batches == stats.consumed // 40 and stats.commit_failures == 0
    # Each commit is asked after its batch and the next were polled, and settled
    # only after one more batch was polled: the loop never waits for a commit.
    kinds = [kind for kind, _ in source.journal]
    first_ask = kinds.index("commit asked")
    assert kinds[:first_ask].count("polled") == 2
    first_settle = kinds.index("commit settled")
    assert kinds[first_ask:first_settle].count("polled") == 1


def test_a_redone_batch_leaves_the_detector_count_alone(tmp_path):
    records, _, loop, _ = run_with_a_failure(tmp_path, "commit", detector())
    assert loop.detector.n_events_ == len(records)


def test_restart_replays_between_checkpoint_and_commit_without_alerts(tmp_path):
    records = events(600)
    # First life: process everything, remember the state at the half way point.
    source = ScriptedSource(records)
    saved = {}

    def checkpoint(offsets):
        if "arrays" not in saved:
            saved.update(arrays=first.detector.state_arrays(), learned=dict(offsets.learned),
                         n=first.detector.n_events_)

    first = make_loop(source, tmp_path / "one", checkpoint=checkpoint)
    for _ in range(6):
        first.process(source.poll(0))
    first._maybe_checkpoint(force=True)
    first.run(threading.Event())
    assert saved["n"] < len(records)

    # Second life: the model from the checkpoint, the group's offsets at the end.
    restored = AnomalyDetector.from_state_arrays(saved["arrays"], **{
        "n_components": 1, "covariance_type": "diag", "contamination": 0.05, "window": 200,
        "warmup": 60, "refit_enabled": False, "random_state": 0, "feature_names": ["a", "b"],
        "top_features": 2})
    more = events(800)
    again = ScriptedSource(more, committed=ends(records))
    alerts = ListSink()
    second = ConsumerLoop(again, Decoder(FEATURES), restored, alerts, ListSink(),
                          settings=LoopSettings(poll_timeout_s=0.01),
                          audit=AuditLog(tmp_path / "two.txt"))
    second.restore(saved["learned"])
    second.on_assign(sorted(again.assignment()))
    assert sorted(again.seeks) == sorted((t, p, o) for (t, p), o in saved["learned"].items())
    stats = second.run(threading.Event())

    assert stats.replayed == len(records) - saved["n"]
    assert restored.n_events_ == len(more)  # neither missed nor learned twice
    new = ids(more[len(records):])
    assert sorted(read_audit(tmp_path / "two.txt")) == sorted(new)
    assert {json.loads(v)["alert_id"] for v, _, _ in alerts.delivered} <= set(new)


def test_checkpoint_gets_the_learned_offsets_at_the_end(tmp_path):
    records = events(200, partitions=3)
    calls = []
    loop = make_loop(ScriptedSource(records), tmp_path, checkpoint=learned_into(calls))
    loop.run(threading.Event())
    assert calls and calls[-1] == ends(records)


def test_stop_event_ends_the_loop_after_the_batch(tmp_path):
    source = ScriptedSource(events(400))
    stop = threading.Event()
    loop = make_loop(source, tmp_path)
    original = loop._begin

    def begin_then_stop(records):
        stop.set()
        return original(records)

    loop._begin = begin_then_stop
    stats = loop.run(stop)
    # The batch under way is finished (verified, committed), no other is started.
    assert stats.batches == 1 and len(source.commits) == 1


class StartingSource(ScriptedSource):
    """A new group: no committed offsets; reading starts where the source says."""

    def next_offset(self, topic, partition, timeout_s=10.0):
        return self.position[(topic, partition)]


def test_partitions_new_to_the_model_are_checkpointed_before_they_are_learned(tmp_path):
    """A crash after the first batches must not leave a partition out of the checkpoint
    (the restart would skip what the lost life learned and committed, not replay it)."""
    records = events(200, partitions=3)
    calls = []
    source = StartingSource(records, committed={(TOPIC, 2): 7})
    loop = make_loop(source, tmp_path, checkpoint=learned_into(calls))
    assert calls == [{(TOPIC, 0): 0, (TOPIC, 1): 0, (TOPIC, 2): 7}]
    loop.run(threading.Event())
    assert loop.detector.n_events_ == sum(calls[-1].values()) - 7


def test_a_partition_processed_elsewhere_meanwhile_goes_on_from_the_committed_offset(tmp_path):
    records = events(300, partitions=2)
    source = ScriptedSource(records, batch_size=40)
    loop = make_loop(source, tmp_path)
    loop.process(source.poll(0))  # 20 events of each partition learned and committed
    loop.on_revoke([(TOPIC, 1)])
    source.group_offsets[(TOPIC, 1)] = 100  # another member got to 100
    source.position[(TOPIC, 1)] = 100
    loop.on_assign([(TOPIC, 1)])
    assert (TOPIC, 1, 20) not in source.seeks and loop.learned[(TOPIC, 1)] == 100
    # Taken back with nothing committed meanwhile: the learned offset stands.
    loop.on_revoke([(TOPIC, 0)])
    loop.on_assign([(TOPIC, 0)])
    assert loop.learned[(TOPIC, 0)] == 20


class QuietSource(ScriptedSource):
    """Its records, then a quiet spell of empty polls (releasing ``quiet`` at
    the first), then exhausted: after ``quiet_polls`` polls once ``until()``
    holds, or after ``max_quiet_s`` (a loaded machine's refit takes longer)."""

    def __init__(self, *args, quiet_polls: int = 200, until=lambda: True,
                 max_quiet_s: float = 60.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.quiet = threading.Event()
        self.quiet_polls, self.until, self.max_quiet_s = quiet_polls, until, max_quiet_s
        self._quiet_since = None

    def poll(self, timeout_s: float) -> list[Record]:
        out = super().poll(timeout_s)
        if not out:
            self.quiet.set()
            self._quiet_since = self._quiet_since or time.monotonic()
            if self.until():
                self.quiet_polls -= 1
            timed_out = time.monotonic() - self._quiet_since > self.max_quiet_s
            self.exhausted = self.quiet_polls <= 0 or timed_out
            time.sleep(0.005)
        return out


def test_a_refit_that_finishes_on_a_quiet_stream_is_applied(tmp_path, monkeypatch):
    # The refit is held until the stream has gone quiet: no batch comes after
    # it, so only the loop's quiet-time check can swap it in.
    from streamgmm.detect import refit as refit_module

    det = AnomalyDetector(n_components=1, covariance_type="diag", contamination=0.05,
                          window=200, warmup=60, refit_every=100_000, random_state=0,
                          feature_names=["a", "b"], top_features=2)
    source = QuietSource(events(400), quiet_polls=20,
                         until=lambda: sum(det.refit_counts.values()) > 0)
    real = refit_module.fit_candidate

    def after_the_stream(*args, **kwargs):
        assert source.quiet.wait(30), "the stream never went quiet"
        return real(*args, **kwargs)

    monkeypatch.setattr(refit_module, "fit_candidate", after_the_stream)
    loop = make_loop(source, tmp_path, det=det)
    loop.run(threading.Event())
    det.close()
    counts = det.refit_counts
    assert sum(counts.values()) == 1 and counts["failed"] == 0, counts
    registry = loop.metrics.registry
    outcome = "accepted" if counts["accepted"] else "rejected"
    assert registry.get_sample_value("streamgmm_refits_total", {"outcome": outcome}) == 1
    assert loop.model_version == det.model_version


def test_a_partition_assigned_again_resumes_where_the_group_committed(tmp_path):
    """The client keeps a partition's position through a rebalance that gives it
    back to the same member (kafka-python 3 does); records read ahead before the
    revocation and dropped with it must be read again, not skipped."""
    records = events(300, partitions=2)
    source = ScriptedSource(records, batch_size=40)
    loop = make_loop(source, tmp_path)
    loop.process(source.poll(0))  # 20 events of each partition learned and committed
    source.poll(0)  # read ahead to 40, then dropped: the revocation came with them
    loop.on_revoke([(TOPIC, 0), (TOPIC, 1)])
    loop.on_assign([(TOPIC, 0), (TOPIC, 1)])
    assert source.position == {(TOPIC, 0): 20, (TOPIC, 1): 20}
    loop.run(threading.Event())
    assert loop.detector.n_events_ == 300
    assert source.group_offsets == {(TOPIC, 0): 150, (TOPIC, 1): 150}


class RejoiningSource(ScriptedSource):
    """A source whose consumer rejoins its group while no record comes, as
    KafkaSource does when a rebalance does not end."""

    rejoins = 0

    def poll(self, timeout_s: float) -> list[Record]:
        self.rejoins += 1
        return []


def test_rejoins_reach_the_metrics_while_no_batch_comes(tmp_path):
    source = RejoiningSource(events(80))
    loop = make_loop(source, tmp_path)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while loop.metrics.registry.get_sample_value("streamgmm_group_rejoins_total") < 3:
            assert time.monotonic() < deadline, "rejoins did not reach the metrics"
            time.sleep(0.01)
    finally:
        stop.set()
        runner.join(10)
    assert loop.stats.batches == 0


class RefusingDetector(AnomalyDetector):
    """Refuses any batch holding an event with a = 7.5, as the detector refuses a
    value it cannot take (before changing anything), naming the first such row; a
    stand-in for data the decoder let through."""

    def process(self, X, learn=True, alert=True):
        X = np.asarray(X)
        hits = np.flatnonzero(X[:, 0] == 7.5)
        if hits.size:
            raise InputRejected(f"X: refused 7.5 at row {hits[0]}, column 0", int(hits[0]), 0,
                                7.5)
        return super().process(X, learn=learn, alert=alert)


def with_values(records, at: dict[int, bytes | None]) -> list[Record]:
    out = list(records)
    for j, value in at.items():
        r = out[j]
        out[j] = Record(r.topic, r.partition, r.offset, r.key, value, r.timestamp_ms)
    return out


@pytest.mark.parametrize("at", [(130, 131, 257), (10, 11, 60)])  # after / during the warm-up
def test_events_the_detector_refuses_are_dead_lettered_alone_and_the_rest_go_on(tmp_path, at):
    records = with_values(events(400), {j: json.dumps({"id": f"e{j}", "a": 7.5, "b": 0.0})
                                        .encode() for j in at})
    refused = [records[j] for j in at]
    source = ScriptedSource(records)
    dead = ListSink()
    det = RefusingDetector(n_components=1, warmup=100, window=300, random_state=0,
                           refit_enabled=False)
    loop = make_loop(source, tmp_path, det=det, dead=dead)
    stats = loop.run(threading.Event())

    good = [r for r in records if r not in refused]
    assert sorted(read_audit(tmp_path / "audit.txt")) == sorted(ids(good))
    assert loop.detector.n_events_ == len(good) and loop.detector.model is not None
    assert sorted((v, k) for v, k, _ in dead.delivered) == sorted((r.value, r.key)
                                                                  for r in refused)
    for _, _, headers in dead.delivered:
        h = dict(headers)
        assert h["streamgmm.reason"] == b"rejected"
        assert h["streamgmm.detail"].startswith(b"a: 7.5 refused by the detector (X: refused")
    assert source.group_offsets == ends(records)
    assert (stats.scored, stats.dead_letters) == (len(good), 3)
    assert loop.metrics.decode_errors.labels(reason="rejected")._value.get() == 3


class BrokenDetector(AnomalyDetector):
    def process(self, X, learn=True, alert=True):
        if self.n_events_ >= 200:
            raise ValueError("not the events' doing")
        return super().process(X, learn=learn, alert=alert)


def test_any_other_error_of_the_detector_stops_the_loop_without_dead_letters(tmp_path):
    dead = ListSink()
    det = BrokenDetector(n_components=1, warmup=100, window=300, random_state=0,
                         refit_enabled=False)
    loop = make_loop(ScriptedSource(events(400)), tmp_path, det=det, dead=dead)
    with pytest.raises(ValueError, match="not the events' doing"):
        loop.run(threading.Event())
    assert not dead.delivered


@pytest.mark.parametrize("as_json", [True, False])
def test_a_tombstone_is_dead_lettered_in_every_sink_format(tmp_path, as_json):
    records = with_values(events(300), {150: None})
    dead = ListSink()
    loop = make_loop(ScriptedSource(records), tmp_path, dead=dead)
    loop.settings = LoopSettings(poll_timeout_s=0.01, dead_letters_as_json=as_json)
    stats = loop.run(threading.Event())
    assert stats.dead_letters == 1 and stats.scored == 299
    [(value, key, headers)] = dead.delivered
    if as_json:
        doc = json.loads(value)
        assert (doc["reason"], doc["detail"], doc["value"]) == ("bad_json",
                                                                "no value: a tombstone", None)
    else:  # an empty value, not a tombstone (which would delete the key when compacted)
        assert (value, key, dict(headers)["streamgmm.reason"]) == (b"", records[150].key,
                                                                   b"bad_json")


class ForgetfulSource(AsyncCommitSource):
    """A broker restarted empty: the ``fail_on``-th commit fails, the group's
    commits are gone, and the group rebalances before the next poll."""

    def __init__(self, *args, fail_on: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail_on, self.n_commits, self.rebalance, self.loop = fail_on, 0, False, None

    def commit(self, offsets) -> bool:
        self.n_commits += 1
        if self.n_commits == self.fail_on:
            self.group_offsets.clear()
            self.rebalance = True
            return False
        return super().commit(offsets)

    def poll(self, timeout_s: float) -> list[Record]:
        if self.rebalance:
            self.rebalance = False
            tps = sorted(self.assignment())
            self.loop.on_revoke(tps)
            self.loop.on_assign(tps)
        return super().poll(timeout_s)


@pytest.mark.parametrize("fail_on", [3, 6])
def test_a_failed_commit_is_redone_when_the_group_comes_back_without_commits(tmp_path,
                                                                             fail_on):
    records = events(600)
    source = ForgetfulSource(records, fail_on=fail_on)
    loop = make_loop(source, tmp_path)
    source.loop = loop
    loop.run(threading.Event())
    # Every event's alerts were verified (audited) and its offset committed in
    # the end: the redo of the failed batch was not skipped for the offsets
    # the model had learned meanwhile.
    assert set(read_audit(tmp_path / "audit.txt")) == set(ids(records))
    assert source.group_offsets == ends(records)
    assert loop.detector.n_events_ == len(records)


class FailingFromSource(ScriptedSource):
    """Every commit from the ``fail_from``-th on fails (the broker went away)."""

    def __init__(self, *args, fail_from: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail_from, self.n_commits = fail_from, 0

    def commit(self, offsets) -> bool:
        self.n_commits += 1
        return self.n_commits < self.fail_from and super().commit(offsets)


def test_a_redo_left_at_a_stop_survives_a_restart_that_finds_no_committed_offset(tmp_path):
    records = events(400)
    first_source = FailingFromSource(records, fail_from=5)
    first = make_loop(first_source, tmp_path / "one")
    stop = threading.Event()
    first.process(first_source.poll(0.01))  # four batches commit
    for _ in range(5):
        first.process(first_source.poll(0.01))  # the broker is gone: the fifth fails
    first.finish()
    redo, learned = first.redo_offsets, dict(first.learned)
    assert redo and all(redo[tp] < learned[tp] for tp in redo)
    # The broker comes back empty: no committed offsets at all.
    second_source = ScriptedSource(records)
    second = make_loop(second_source, tmp_path / "two", det=first.detector)
    second.restore(learned, redo)
    second.on_assign(sorted(second_source.assignment()))
    assert {(t, p): o for t, p, o in second_source.seeks} == redo
    second.run(stop)
    # What the first run sent but never had acknowledged is alerted (audited) again.
    redone = {f"{t}/{p}/{o}" for (t, p), start in redo.items()
              for o in range(start, learned[(t, p)])}
    assert redone <= set(read_audit(tmp_path / "two" / "audit.txt"))
    assert second_source.group_offsets == ends(records)


def test_a_batch_the_detector_refuses_whole_is_dead_lettered_event_by_event(tmp_path):
    # More refused events in one batch than Python's recursion limit.
    records = [Record(TOPIC, 0, i, f"k{i}".encode(),
                      json.dumps({"id": f"e{i}", "a": 7.5, "b": 0.0}).encode(), None)
               for i in range(1500)]
    dead = ListSink()
    det = RefusingDetector(n_components=1, warmup=100, window=300, random_state=0,
                           refit_enabled=False)
    source = ScriptedSource(records, batch_size=3000)
    loop = make_loop(source, tmp_path, det=det, dead=dead)
    stats = loop.run(threading.Event())
    assert (stats.scored, stats.dead_letters) == (0, 1500)
    assert all(dict(h)["streamgmm.reason"] == b"rejected" for _, _, h in dead.delivered)
    assert source.group_offsets == {(TOPIC, 0): 1500}
