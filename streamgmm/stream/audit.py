"""The audit file: the id of every event the loop scored, one per line.

It exists for tests and audits: with ``audit.path`` set, the consumer loop
appends the id of each scored event (``topic/partition/offset``, or
``source/line``; the same ids as alerts) and flushes the file before it
commits the batch's offsets. Since a commit follows the audit, every event
whose offset was committed appears in the file at least once, which is what
an at-least-once test checks. Events replayed into the model after a restart
(learn only, already scored before) are not written again. Dead letters are
not scored and are not written here: they go to the dead-letter sink.

The file grows by about 20 bytes per event: leave ``audit.path`` unset in
production.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["AuditLog", "read_audit"]


class AuditLog:
    """Appends event ids to a file, one per line.

    Parameters
    ----------
    path : str or pathlib.Path
        The audit file; created (with its directory) if missing, appended to otherwise.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
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


def read_audit(path: str | os.PathLike[str]) -> list[str]:
    """The ids in an audit file, in the order written (duplicates kept)."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]
