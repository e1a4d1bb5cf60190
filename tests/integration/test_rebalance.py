"""Two daemons in one consumer group: split partitions, hand them over on a crash, lose nothing.

Each replica keeps its own model, so the model guarantee is per replica: a
replica that is never restarted learns each event it processed exactly once
(its checkpoint's event count equals the distinct ids in its audit), through
the rebalances of a member joining and of a member dying, and it does not
replay into its model the events another member processed while it did not
own their partition.
"""

from __future__ import annotations

import time

import pytest
from test_delivery import (
    Daemon,
    Stream,
    committed_and_end,
    final_meta,
    wait_for,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PARTITIONS = 6


def assigned_count(daemon: Daemon) -> int:
    return daemon.log.read_text(errors="replace").count("partitions assigned")


def test_two_replicas_split_the_partitions_and_a_killed_one_hands_over_without_loss(
        broker, topic_factory, tmp_path):
    topic = topic_factory(partitions=PARTITIONS)
    group = f"g-{topic}"
    dirs = {name: tmp_path / name for name in "ab"}
    for workdir in dirs.values():
        write_config(workdir, broker.bootstrap, topic, group, kafka={"max_poll_records": 30})
    stream = Stream(broker.bootstrap, topic, PARTITIONS)
    a = b = None
    try:
        # A alone owns every partition and learns part of each.
        first = stream.produce(600)
        a = Daemon(dirs["a"])
        wait_for(lambda: set(first) <= set(a.audited()), 40, "A processing alone", a)
        # B joins: the group splits the partitions between them.
        b = Daemon(dirs["b"])
        wait_for(lambda: assigned_count(a) >= 2 and assigned_count(b) >= 1, 40,
                 "B joining", a, b)
        second = stream.produce(600)
        wait_for(lambda: set(second) <= set(a.audited()) | set(b.audited()), 40,
                 "A and B processing", a, b)
        b_share = {e for e in second if e in set(b.audited())}
        a_share = {e for e in second if e in set(a.audited())}
        assert b_share and a_share and not b_share & a_share
        # B is killed mid-stream: A takes its partitions back from the committed offsets.
        producer = stream.produce_in_background(900, rate=300)
        n_b = len(b.audited())
        wait_for(lambda: len(b.audited()) > n_b + 60, 30, "B in the third part", a, b)
        b.kill()
        killed_at = time.monotonic()
        producer.join(30)
        assert stream.n == 2100
        try:
            wait_for(lambda: set(stream.ids) <= set(a.audited()) | set(b.audited()), 60,
                     "every event processed by A or B", a)
        except AssertionError as exc:  # say which events, and what B did last
            missing = sorted(set(stream.ids) - set(a.audited()) - set(b.audited()))
            raise AssertionError(f"{exc}\nmissing {len(missing)}: {missing[:20]}\n"
                                 f"B's log:\n{b.tail()}") from None
        handover_s = time.monotonic() - killed_at
        code, seconds = a.stop()
    finally:
        stream.close()
        for daemon in (a, b):
            if daemon is not None:
                daemon.kill()
    log_a = a.log.read_text()
    assert code == 0 and seconds < 10, log_a[-3000:]
    print(f"handover and catch-up after the kill: {handover_s:.1f}s")
    # A learned each event it processed exactly once: no replay of B's work, no
    # second learning of a batch redone after a commit the rebalance failed.
    assert final_meta(dirs["a"])["n_events"] == len(set(a.audited()))
    # B's partitions came back to A after A had learned part of them earlier.
    assert "processed elsewhere up to" in log_a and "replaying offsets" not in log_a
    committed, ends = committed_and_end(broker.bootstrap, topic, group, PARTITIONS)
    assert committed == ends and sum(ends.values()) == 2100
