"""A group member's offset commits: waited for, or sent without waiting (a :class:`PendingCommit`).

Only partitions still assigned are committed: offsets of a partition the
group gave to another member would overwrite that member's progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from streamgmm.stream.protocols import TP, CommitAnswer

log = logging.getLogger(__name__)


class GroupCommits:
    """The commits of one consumer, and their failures counted.

    Parameters
    ----------
    consumer : KafkaConsumer
        The group member that commits.
    assignment : callable
        The (topic, partition) pairs the member owns now.
    timeout_s : float
        Upper bound on one :meth:`commit` (and on waiting for a pending one).
    """

    def __init__(self, consumer: Any, assignment: Callable[[], set[TP]], timeout_s: float) -> None:
        self._consumer, self._assignment = consumer, assignment
        self.timeout_s = timeout_s
        self.failures = 0
        self.skipped_partitions = 0

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit next-to-read offsets for the partitions still assigned.

        Parameters
        ----------
        offsets : mapping of (topic, partition) to int
            The offset to resume from, i.e. last processed offset + 1.

        Returns
        -------
        bool
            True if every assigned partition's offset was committed. A
            failure (rebalance under way, timeout, broker gone) is logged and
            counted in ``failures``; the batch will be redone
            (at-least-once). Partitions no longer assigned are left out and
            counted in ``skipped_partitions``.
        """
        to_commit = self._assigned_offsets(offsets)
        if not to_commit:
            return True
        try:
            self._consumer.commit(offsets=to_commit, timeout_ms=int(self.timeout_s * 1000))
        except KafkaError as exc:
            self.failures += 1
            log.warning(
                "commit of %d partition(s) failed: %s: %s", len(to_commit), type(exc).__name__, exc
            )
            return False
        return True

    def commit_async(self, offsets: Mapping[TP, int]) -> CommitAnswer:
        """Send a commit (as :meth:`commit`) without waiting for its answer."""
        to_commit = self._assigned_offsets(offsets)
        if not to_commit:
            return PendingCommit(None, self, 0)
        return PendingCommit(self._consumer.commit_async(offsets=to_commit), self, len(to_commit))

    def _assigned_offsets(self, offsets: Mapping[TP, int]) -> dict[TopicPartition, Any]:
        """The offsets of partitions still assigned, as kafka-python commits them."""
        assigned = self._assignment()
        to_commit = {
            TopicPartition(t, p): OffsetAndMetadata(off, "", -1)
            for (t, p), off in offsets.items()
            if (t, p) in assigned
        }
        skipped = len(offsets) - len(to_commit)
        if skipped:
            self.skipped_partitions += skipped
            log.info("commit: %d partition(s) no longer assigned, not committed", skipped)
        return to_commit

    def committed(self, topic: str, partition: int, timeout_s: float = 10.0) -> int | None:
        """The group's committed offset for a partition (a broker round trip)."""
        return self._consumer.committed(
            TopicPartition(topic, partition), timeout_ms=int(timeout_s * 1000)
        )


class PendingCommit:
    """A commit sent without waiting: :meth:`done` says whether it is answered, :meth:`result`
    waits for the answer (True when committed; a failure is logged and counted)."""

    def __init__(self, future: Any, source: GroupCommits, n_partitions: int) -> None:
        self._future, self._source, self._n = future, source, n_partitions
        self._answered = threading.Event()
        self._ok: bool | None = None
        if future is None:  # nothing to commit
            self._ok = True
            self._answered.set()
        else:
            future.add_both(lambda _: self._answered.set())

    def done(self) -> bool:
        """Whether the broker has answered (or there was nothing to commit)."""
        return self._answered.is_set()

    def result(self, timeout_s: float | None = None) -> bool:
        """True when the offsets were committed; waits up to the source's commit timeout."""
        if self._ok is None:
            wait = timeout_s if timeout_s is not None else self._source.timeout_s
            if not self._answered.wait(wait):
                self._fail(f"no answer within {wait:g}s")
            elif self._future.failed():
                exc = self._future.exception
                self._fail(f"{type(exc).__name__}: {exc}")
            else:
                self._ok = True
        return bool(self._ok)

    def _fail(self, why: str) -> None:
        self._ok = False
        self._source.failures += 1
        log.warning("commit of %d partition(s) failed: %s", self._n, why)
