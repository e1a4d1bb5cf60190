"""The offsets of at-least-once delivery, per partition, and every decision made from them.

No I/O here: the consumer loop asks the source and seeks; this object says
what to ask, where to seek, what to learn, alert and commit, and what a
checkpoint keeps. Three offsets per partition:

``learned`` (M)
    the next offset the model has not learned yet (from the checkpoint on
    start, then advanced by every batch);
``committed`` (K)
    the next offset not yet committed (asked from the group when a partition
    is assigned, then advanced by every commit);
``redo`` (R)
    where a failed batch sought its partition back to, until a commit covers
    it: a rejoin that finds no committed offset (a broker restarted empty)
    resumes there rather than at ``M``, so batches whose sends were never
    verified are not skipped.

An event at offset ``o`` is learned when ``o >= M`` and alerted (scored,
dead-lettered, audited) when ``o >= K``. So after a restart the events
between the checkpoint and the committed offsets are replayed into the model
without alerts (they were alerted before), a batch redone after a failed
commit alerts again without learning twice, and the model neither misses nor
double-learns an event.

Invariant: while a partition is held, ``M`` and ``K`` only grow. What the
group says when a partition is assigned is taken as it is (another member
may have committed meanwhile; a broker restarted empty has nothing), and a
partition taken away keeps its ``M`` with the committed offset last known:
an eager rebalance revokes and gives back the same partitions, and a batch
whose commit the rebalance failed must then be redone without learning it
twice. If it comes back and the group's committed offset has moved
meanwhile, another member processed it: ``M`` is raised to that offset, so
this replica's model does not replay events another replica handled.
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamgmm.stream.protocols import TP
from streamgmm.stream.records import Record

log = logging.getLogger(__name__)

__all__ = ["Offsets", "Placement", "partition_bounds", "partition_of"]

#: A batch's first and last offset per partition.
Bounds = Mapping[TP, tuple[int, int]]


@dataclass(frozen=True)
class Placement:
    """What an assignment decided for one partition.

    Attributes
    ----------
    seek : int or None
        Where to seek the partition (None: leave the client's position, which
        is the case only for a partition that has no offset to start from).
    started : bool
        The model starts learning this partition here (nothing of it learned
        before): a checkpoint should record it before anything is learned.
    why : str
        Which rule decided, for the log: ``start``, ``redo``, ``replay``,
        ``learned`` or ``committed``.
    """

    seek: int | None
    started: bool
    why: str


class Offsets:
    """Learned, committed and redo offsets of every partition, without I/O.

    Examples
    --------
    >>> o = Offsets(learned={("tx", 0): 10})
    >>> o.assign(("tx", 0), committed=25, start=lambda: None)  # replay 10..24 without alerts
    Placement(seek=10, started=False, why='replay')
    >>> o.to_commit({("tx", 0): (10, 39)})
    {('tx', 0): 40}
    """

    def __init__(self, learned: Mapping[TP, int] | None = None,
                 redo: Mapping[TP, int] | None = None) -> None:
        self.learned: dict[TP, int] = dict(learned or {})
        self.committed: dict[TP, int | None] = {}
        self.redo: dict[TP, int] = dict(redo or {})
        # Partitions taken away: the committed offset known when they left.
        self._released: dict[TP, int | None] = {}

    # ------------------------------------------------------------- checkpoints

    def checkpoint_form(self) -> dict[str, list[list[Any]]]:
        """What a checkpoint keeps: ``offsets`` (learned) and ``redo_offsets``,
        as sorted ``[topic, partition, offset]`` rows (JSON as it is)."""
        return {"offsets": _rows(self.learned), "redo_offsets": _rows(self.redo)}

    @classmethod
    def from_checkpoint(cls, meta: Mapping[str, Any]) -> Offsets:
        """The offsets a checkpoint's metadata kept (:meth:`checkpoint_form`)."""
        return cls(_table(meta.get("offsets", [])), _table(meta.get("redo_offsets", [])))

    def restore(self, learned: Mapping[TP, int], redo: Mapping[TP, int] | None = None) -> None:
        """Take the offsets a restored model has learned up to, and its redo points."""
        self.learned.update(learned)
        self.redo.update(redo or {})

    # --------------------------------------------------------------- rebalances

    def assign(self, tp: TP, committed: int | None, start: Callable[[], int | None]) -> Placement:
        """Take a partition given to this member with the group's committed offset.

        ``start()`` gives the partition's next offset when there is neither a
        committed nor a learned one (the client's reset position); it is only
        called then.
        """
        self.committed[tp] = committed
        if committed is not None and committed >= self.redo.get(tp, committed):
            self.redo.pop(tp, None)  # the group committed past it (here or elsewhere)
        self._take_back(tp, committed)
        learned = self.learned.get(tp)
        if learned is None:
            first = committed if committed is not None else start()
            if first is None:
                return Placement(None, False, "start")
            self.learned[tp] = first
            return Placement(None, True, "start")
        if committed is None and tp in self.redo:
            return Placement(min(self.redo[tp], learned), False, "redo")
        if committed is None:
            return Placement(learned, False, "learned")
        if learned < committed:
            return Placement(learned, False, "replay")
        # Resume where the group committed, whatever position the client kept:
        # kafka-python keeps a partition's position through a rebalance that
        # gives it back, past records read ahead and dropped with the
        # revocation (they would be lost). What was learned but not committed
        # is alerted again.
        return Placement(committed, False, "committed")

    def _take_back(self, tp: TP, committed: int | None) -> None:
        """Skip what another member processed while ``tp`` was away from this one."""
        if tp not in self._released:
            return
        before = self._released.pop(tp)
        if committed is None or committed == before or tp not in self.learned:
            return  # nobody else committed: keep replay and redo as they were
        if self.learned[tp] < committed:
            log.info("%s/%d: processed elsewhere up to %d meanwhile; going on from there",
                     *tp, committed)
        self.learned[tp] = max(self.learned[tp], committed)

    def revoke(self, partitions: Iterable[TP]) -> None:
        """Forget the committed offsets of partitions taken away (keep what was learned)."""
        for tp in partitions:
            self._released[tp] = self.committed.pop(tp, None)

    # ------------------------------------------------------------------ batches

    def is_fresh(self, bounds: Bounds) -> bool:
        """Whether every event of a batch is new: to learn and to alert (the common case)."""
        return all(first >= self.learned.get(tp, 0) and first >= self.committed_at(tp)
                   for tp, (first, _) in bounds.items())

    def committed_at(self, tp: TP) -> int:
        """The next offset not committed (0 when the group has none)."""
        return self.committed.get(tp) or 0

    def learned_at(self, tp: TP) -> int:
        """The next offset not learned (0 when nothing was)."""
        return self.learned.get(tp, 0)

    def learn(self, bounds: Bounds) -> None:
        """Advance ``learned`` past a batch begun (scored and learned where new)."""
        for tp, (_, last) in bounds.items():
            self.learned[tp] = max(self.learned.get(tp, 0), last + 1)

    def to_commit(self, bounds: Bounds) -> dict[TP, int]:
        """The offsets a verified batch commits: last + 1 where it passes what is committed."""
        return {tp: last + 1 for tp, (_, last) in bounds.items()
                if last + 1 > self.committed_at(tp)}

    def commit_done(self, offsets: Mapping[TP, int], assigned: set[TP]) -> None:
        """A commit of ``offsets`` succeeded: advance what is committed of the
        partitions still held, and drop the redo points it covers."""
        for tp, offset in offsets.items():
            if tp in assigned:
                self.committed[tp] = max(self.committed_at(tp), offset)
            if offset > self.redo.get(tp, offset):
                del self.redo[tp]  # the redone batch is committed

    def redo_from(self, first: Mapping[TP, int]) -> None:
        """Failed batches are redone from ``first`` (the earliest offset per partition
        among them; the caller seeks there): remember it until a commit covers it."""
        for tp, low in first.items():
            # From what the group has not committed (a replayed part is not redone).
            offset = max(low, self.committed_at(tp))
            self.redo[tp] = min(self.redo.get(tp, offset), offset)


def _rows(table: Mapping[TP, int]) -> list[list[Any]]:
    return [[t, p, o] for (t, p), o in sorted(table.items())]


def _table(rows: Iterable[Any]) -> dict[TP, int]:
    return {(str(t), int(p)): int(o) for t, p, o in rows}


def partition_bounds(records: Sequence[Record]) -> dict[TP, tuple[int, int]]:
    """First and last offset of each partition in a batch."""
    bounds: dict[TP, tuple[int, int]] = {}
    # Sources give each partition's records together and in offset order, so a
    # group is one run; groupby walks the batch at C speed.
    for tp, group in itertools.groupby(records, key=partition_of):
        offsets = [r.offset for r in group]
        low, high = min(offsets), max(offsets)
        seen = bounds.get(tp)
        bounds[tp] = (low, high) if seen is None else (min(seen[0], low), max(seen[1], high))
    return bounds


partition_of = operator.attrgetter("topic", "partition")
