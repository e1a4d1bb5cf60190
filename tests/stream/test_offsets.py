"""The at-least-once offsets, decided without I/O: tables of cases and a property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.stream.offsets import Offsets, Placement

TP = ("tx", 0)


def nothing() -> int | None:
    raise AssertionError("the reset position is asked only with neither learned nor committed")


# learned, redo, committed, reset position -> where to seek, started, why, learned after
ASSIGN = [
    # A partition new to the model and to the group: start where the client starts.
    (None, None, None, 5, Placement(None, True, "start"), 5),
    # New to the model, not to the group: learn from what the group committed.
    (None, None, 7, None, Placement(None, True, "start"), 7),
    # New to both, and the client knows no position yet: nothing to decide.
    (None, None, None, None, Placement(None, False, "start"), None),
    # The checkpoint is behind the commits: replay the gap without alerts.
    (10, None, 25, nothing, Placement(10, False, "replay"), 10),
    # The checkpoint is ahead of the commits: resume at the commits, alert again.
    (30, None, 25, nothing, Placement(25, False, "committed"), 30),
    # Both agree.
    (25, None, 25, nothing, Placement(25, False, "committed"), 25),
    # The group has no commits (a new group, or a broker restarted empty).
    (30, None, None, nothing, Placement(30, False, "learned"), 30),
    # ... while a failed batch was to be redone: redo it, not skip to learned.
    (30, 20, None, nothing, Placement(20, False, "redo"), 30),
    # A redo point at or past learned cannot skip what was learned.
    (30, 35, None, nothing, Placement(30, False, "redo"), 30),
    # The group committed past the redo point: it is done with.
    (30, 20, 22, nothing, Placement(22, False, "committed"), 30),
]


@pytest.mark.parametrize(("learned", "redo", "committed", "reset", "placement", "after"), ASSIGN)
def test_assignment_decides_from_the_table(learned, redo, committed, reset, placement, after):
    offsets = Offsets({TP: learned} if learned is not None else {},
                      {TP: redo} if redo is not None else {})
    start = reset if callable(reset) else (lambda: reset)
    assert offsets.assign(TP, committed, start) == placement
    assert offsets.learned.get(TP) == after
    if committed is not None and redo is not None and committed >= redo:
        assert TP not in offsets.redo


# learned, committed when it left, committed when it is back -> learned after
TAKE_BACK = [
    (20, 20, 100, 100),  # another member processed it meanwhile: go on from there
    (20, 20, 20, 20),  # nobody committed meanwhile: keep what was learned
    (120, 20, 100, 120),  # learned ahead of what the other member committed: keep it
    (20, 20, None, 20),  # the group lost its commits: keep what was learned
]


@pytest.mark.parametrize(("learned", "before", "back", "after"), TAKE_BACK)
def test_a_partition_taken_back_skips_what_another_member_processed(learned, before, back,
                                                                    after):
    offsets = Offsets({TP: learned})
    offsets.assign(TP, before, nothing)
    offsets.revoke([TP])
    assert TP not in offsets.committed and offsets.learned[TP] == learned
    offsets.assign(TP, back, nothing)
    assert offsets.learned[TP] == after


def test_a_batch_learns_commits_and_settles():
    offsets = Offsets({TP: 10})
    offsets.assign(TP, 10, nothing)
    bounds = {TP: (10, 19), ("tx", 1): (0, 4)}
    assert offsets.is_fresh(bounds)
    offsets.learn(bounds)
    assert offsets.learned == {TP: 20, ("tx", 1): 5}
    commit = offsets.to_commit(bounds)
    assert commit == {TP: 20, ("tx", 1): 5}
    offsets.commit_done(commit, assigned={TP})  # partition 1 was revoked meanwhile
    assert offsets.committed == {TP: 20}
    # A batch below what is committed commits nothing and is not fresh (a replay).
    assert offsets.to_commit({TP: (12, 15)}) == {}
    assert not offsets.is_fresh({TP: (12, 15)})


def test_a_failed_batch_is_redone_from_what_the_group_has_not_committed():
    offsets = Offsets({TP: 40})
    offsets.assign(TP, 25, nothing)
    offsets.redo_from({TP: 10, ("tx", 1): 3})  # the batch began in the replayed part
    assert offsets.redo == {TP: 25, ("tx", 1): 3}
    offsets.redo_from({TP: 30})  # a later failure never moves the redo point on
    assert offsets.redo[TP] == 25
    offsets.commit_done({TP: 25}, assigned={TP})  # not past the redo point: it stays
    assert offsets.redo[TP] == 25
    offsets.commit_done({TP: 30}, assigned={TP})
    assert TP not in offsets.redo


def test_the_checkpoint_form_round_trips_as_plain_json():
    import json

    offsets = Offsets({("b", 1): 7, ("a", 0): 3}, {("a", 0): 2})
    form = json.loads(json.dumps(offsets.checkpoint_form()))
    assert form == {"offsets": [["a", 0, 3], ["b", 1, 7]], "redo_offsets": [["a", 0, 2]]}
    again = Offsets.from_checkpoint(form)
    assert (again.learned, again.redo) == (offsets.learned, offsets.redo)
    assert (Offsets.from_checkpoint({}).learned, Offsets.from_checkpoint({}).redo) == ({}, {})


operation = st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 200), st.integers(1, 50)),
    st.tuples(st.just("commit"), st.integers(0, 200), st.integers(1, 50)),
    st.tuples(st.just("redo"), st.integers(0, 200), st.just(0)),
    st.tuples(st.just("rebalance"), st.one_of(st.none(), st.integers(0, 300)), st.just(0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=40), st.integers(0, 100))
def test_learned_and_committed_only_grow_while_a_partition_is_held(ops, start):
    offsets = Offsets()
    offsets.assign(TP, start, nothing)
    for kind, first, n in ops:
        learned, committed = offsets.learned[TP], offsets.committed.get(TP)
        if kind == "batch":
            offsets.learn({TP: (first, first + n - 1)})
        elif kind == "commit":
            offsets.commit_done(offsets.to_commit({TP: (first, first + n - 1)}), {TP})
        elif kind == "redo":
            offsets.redo_from({TP: first})
            assert offsets.redo[TP] >= (committed or 0)
        else:
            offsets.revoke([TP])
            place = offsets.assign(TP, first, nothing)
            assert place.seek is not None
            # Never past an event not both learned and committed (it would be skipped).
            assert place.seek <= offsets.learned[TP]
            assert first is None or place.seek <= first
            continue
        assert offsets.learned[TP] >= learned
        assert (offsets.committed.get(TP) or 0) >= (committed or 0)
