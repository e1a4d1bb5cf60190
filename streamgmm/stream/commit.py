"""The commit of batches: at-least-once delivery, in one place.

A batch is committed only once every alert and dead letter it sent is
acknowledged, and batches are committed in the order they were begun; a
failed send or commit redoes that batch and every batch after it. Batches
overlap: the loop begins batch N+1 while N's acknowledgements and commit are
on their way, and :meth:`Committer.advance` moves each batch on as far as
the answers that have arrived allow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamgmm.stream.audit import AuditLog
from streamgmm.stream.offsets import Offsets
from streamgmm.stream.protocols import TP, Answered, CommitAnswer, Sink, Source
from streamgmm.stream.records import Record
from streamgmm.stream.scoring import Outcome

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCHES_IN_FLIGHT", "Batch", "Committer"]

#: Batches begun and not yet committed beyond which the loop waits for the
#: oldest: what a crash may repeat, and what is held in memory meanwhile.
MAX_BATCHES_IN_FLIGHT = 3

#: What :meth:`Committer.commit` made of a batch.
PENDING, COMMITTED, FAILED = "pending", "committed", "failed"


@dataclass
class Batch:
    """A batch scored and sent, on its way through :meth:`Committer.commit`."""

    records: list[Record]
    bounds: dict[TP, tuple[int, int]]
    outcome: Outcome
    sealed: list[tuple[Sink, Any, int]]  # (sink, its seal of this batch's sends, records sent)
    started: float
    commit: CommitAnswer | None = None  # the commit asked for, once the sends are verified
    offsets: dict[TP, int] = field(default_factory=dict)  # what that commit commits

    @property
    def seconds(self) -> float:
        """Seconds since the batch was begun."""
        return time.perf_counter() - self.started


class Committer:
    """Verifies, audits and commits batches in order, and redoes the ones that fail.

    Parameters
    ----------
    source : Source
        Commits offsets and seeks back for a redo.
    offsets : Offsets
        What each commit covers and where a redo starts.
    audit : AuditLog, optional
        Receives each batch's event ids once its sends are verified.
    flush_timeout_s : float
        How long verifying a batch's sends may wait.
    settled : callable
        ``settled(batch, ok)`` when a batch is committed (True) or fails (False).
    failed : callable
        ``failed(what, n)`` counts failures: ``"send"`` (n sends) or ``"commit"``.
    """

    def __init__(self, source: Source, offsets: Offsets, audit: AuditLog | None,
                 flush_timeout_s: float, settled: Callable[[Batch, bool], None],
                 failed: Callable[[str, int], None]) -> None:
        self.source = source
        self.offsets = offsets
        self.audit = audit
        self.flush_timeout_s = flush_timeout_s
        self._settled = settled
        self._failed = failed

    def advance(self, flight: list[Batch], keep: int,
                drain: bool = False) -> tuple[list[Batch], bool]:
        """Move batches on through :meth:`commit`, oldest first, each in its turn.

        The newest ``keep`` batches not yet verified stay as they are. A batch
        waits for what it waits on (acknowledgements, then its commit's
        answer) only when that is due: draining, or more batches in flight
        than allowed (the oldest). Returns the batches still under way, and
        False when one failed (it and every later batch are then redone).
        """
        remaining: list[Batch] = []
        to_verify = sum(b.commit is None for b in flight) - keep
        force = drain or len(flight) > MAX_BATCHES_IN_FLIGHT
        for i, batch in enumerate(flight):
            if remaining:  # an older batch is still under way: later ones keep their turn
                remaining.append(batch)
                continue
            if batch.commit is None:
                if to_verify <= 0:
                    remaining.append(batch)
                    continue
                to_verify -= 1
            state = self.commit(batch, wait=drain or (force and i == 0), settle=drain)
            if state == FAILED:
                self.redo(flight[i:])
                return remaining, False
            if state == PENDING:
                remaining.append(batch)
        return remaining, True

    def commit(self, batch: Batch, wait: bool, settle: bool) -> str:
        """Commit one batch as far as its answers allow, in this order:

        1. Verify every send of the batch (alerts and dead letters): each must
           be acknowledged, or the batch fails.
        2. Write the batch's event ids to the audit.
        3. Ask the source to commit, per partition, the batch's last offset + 1
           where it passes what is committed.
        4. Take the commit's answer: a failed commit fails the batch.
        5. Advance the committed offsets, drop the redo points the commit
           covers, and account the batch (counters, metrics).

        Steps 1-3 run once the sends are answered and steps 4-5 once the
        commit is, so the loop works on while both are on their way; ``wait``
        waits for the answer of the next step instead. The commit's answer is
        taken at a later call unless ``settle``. Checkpoints come after, when
        due (the loop's). Returns ``PENDING`` (the batch waits for an
        answer), ``COMMITTED`` or ``FAILED`` (to be redone).
        """
        if batch.commit is None:
            if not (wait or all(sink.done(seal) for sink, seal, _ in batch.sealed)):
                return PENDING
            # Step 1.
            if not self._verify_sends(batch.sealed):
                return FAILED
            # Step 2.
            if self.audit is not None:
                self.audit.write(batch.outcome.ids)
            # Step 3.
            batch.offsets = self.offsets.to_commit(batch.bounds)
            batch.commit = (self.source.commit_async(batch.offsets) if batch.offsets
                            else Answered(True))
            if not settle:
                return PENDING  # answered later: the commit runs meanwhile
        elif not (wait or batch.commit.done()):
            return PENDING
        # Step 4.
        if not batch.commit.result():
            self._failed("commit", 1)
            log.warning("commit failed; the batch will be redone")
            return FAILED
        # Step 5.
        self.offsets.commit_done(batch.offsets, self.source.assignment())
        self._settled(batch, True)
        return COMMITTED

    def _verify_sends(self, sealed: list[tuple[Sink, Any, int]]) -> bool:
        """Check every send of a batch; False when any failed."""
        failures: list[str] = []
        for sink, seal, expected in sealed:
            n_ok, errors = sink.verify(seal, self.flush_timeout_s)
            failures.extend(errors)
            if not errors and n_ok != expected:
                failures.append(f"{type(sink).__name__}: {n_ok} of {expected} confirmed")
        if failures:
            self._failed("send", len(failures))
            log.warning("%d send(s) failed; the batch will be redone; first: %s",
                        len(failures), failures[0])
            return False
        return True

    def redo(self, batches: list[Batch]) -> None:
        """Seek every partition of ``batches`` back to its earliest offset among them."""
        first: dict[TP, int] = {}
        for batch in batches:
            for tp, (low, _) in batch.bounds.items():
                first[tp] = min(first.get(tp, low), low)
            self._settled(batch, False)
        for (topic, partition), offset in first.items():
            self.source.seek(topic, partition, offset)
        self.offsets.redo_from(first)
