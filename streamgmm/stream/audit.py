"""The audit file: the id of every event the loop scored, one per line.

It exists for tests and audits: with ``audit.path`` set, the consumer loop
appends the id of each scored event (``topic/partition/offset``, or
``source/line``; the same ids as alerts) and flushes the file before it
commits the batch's offsets. Since a commit follows the audit, every event
whose offset was committed appears in the file at least once, which is what
an at-least-once test checks. Events replayed into the model after a restart
(learn only, already scored before) are not written again. Dead letters are
not scored and are not written here: they go to the dead-letter sink.

With ``audit.scores`` set, each line also carries what the detector said of
the event, tab-separated: ``id, score, threshold, model_version, flagged``
(the log-density, the rolling threshold it was compared with, the version of
the model that scored it, and 1 when it was alerted, else 0; score and
threshold are ``nan`` while the detector warms up). ``streamgmm plot scores``
draws the stream from such a file. :func:`read_audit` returns the ids of
either kind of file.

The file grows by about 20 bytes per event (about 60 with ``audit.scores``):
leave ``audit.path`` unset in production.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AuditLog", "AuditScores", "read_audit", "read_audit_scores", "score_line"]

#: The columns after the id of an audit line written with ``audit.scores``.
SCORE_COLUMNS = ("score", "threshold", "model_version", "flagged")


class AuditLog:
    """Appends event ids to a file, one per line.

    Parameters
    ----------
    path : str or pathlib.Path
        The audit file; created (with its directory) if missing, appended to otherwise.
    scores : bool, default=False
        Whether the writer's lines carry the score columns (:func:`score_line`);
        the consumer loop reads it to choose which lines to write.
    """

    def __init__(self, path: str | os.PathLike[str], scores: bool = False) -> None:
        self.path = Path(path)
        self.scores = scores
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (see close)
        except OSError as exc:
            raise OSError(exc.errno, f"audit.path: cannot open {str(path)!r}: {exc}") from exc

    def write(self, ids: Iterable[str]) -> None:
        """Append ids and flush them to the operating system (they survive a crash of ours)."""
        text = "\n".join(ids)
        if text:
            self._handle.write(text + "\n")
            self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def score_line(event: str, score: float, threshold: float, model_version: int,
               flagged: bool) -> str:
    """One audit line with the score columns.

    Examples
    --------
    >>> score_line("tx/0/7", -41.2700001, -22.9, 3, True).split("\\t")
    ['tx/0/7', '-41.270000', '-22.900000', '3', '1']
    >>> score_line("gen/1", float("nan"), float("nan"), 0, False).split("\\t")[1:3]
    ['nan', 'nan']
    """
    return f"{event}\t{score:.6f}\t{threshold:.6f}\t{model_version}\t{int(flagged)}"


def _split(line: str) -> list[str] | None:
    """The five fields of a line with score columns, or None for a plain id."""
    parts = line.rsplit("\t", len(SCORE_COLUMNS))
    return parts if len(parts) == len(SCORE_COLUMNS) + 1 else None


def read_audit(path: str | os.PathLike[str]) -> list[str]:
    """The ids in an audit file, in the order written (duplicates kept)."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    return [parts[0] if (parts := _split(line)) else line for line in lines]


@dataclass
class AuditScores:
    """The events of an audit file written with ``audit.scores``, in the order scored.

    Attributes
    ----------
    ids : list of str
        Event ids, each once (the first time it was scored: a batch redone
        after a failed delivery is written again).
    score, threshold : ndarray of float64, shape (n,)
        Log-density and rolling threshold (NaN during the warm-up).
    model_version : ndarray of int64, shape (n,)
        Version of the model that scored each event.
    flagged : ndarray of bool, shape (n,)
        Whether the event was alerted.
    """

    ids: list[str]
    score: np.ndarray
    threshold: np.ndarray
    model_version: np.ndarray
    flagged: np.ndarray


def read_audit_scores(path: str | os.PathLike[str]) -> AuditScores:
    """Read an audit file with score columns; a ValueError names the file and line."""
    seen: set[str] = set()
    ids, rows = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = _split(line)
            if parts is None:
                raise ValueError(
                    f"{path}: line {number}: an event id without scores ({line[:80]!r}); "
                    "the daemon writes scores with audit.scores: true")
            try:
                if parts[4] not in ("0", "1"):
                    raise ValueError(parts[4])
                row = (float(parts[1]), float(parts[2]), int(parts[3]), parts[4] == "1")
            except ValueError:
                raise ValueError(f"{path}: line {number}: expected id, score, threshold, "
                                 f"model_version, flagged; got {line[:80]!r}") from None
            if parts[0] not in seen:
                seen.add(parts[0])
                ids.append(parts[0])
                rows.append(row)
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return AuditScores(ids, np.array(cols[0], dtype=np.float64),
                       np.array(cols[1], dtype=np.float64),
                       np.array(cols[2], dtype=np.int64), np.array(cols[3], dtype=bool))
