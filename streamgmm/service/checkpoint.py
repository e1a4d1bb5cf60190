"""Atomic, checksummed, versioned checkpoints of plain arrays, with fallback.

A checkpoint is one ``.npz`` file named ``ckpt-<seq>-<utc>.npz`` holding:

- the caller's arrays, each stored under ``array.<name>``;
- ``streamgmm.format``: the marker ``b"streamgmm-checkpoint"`` (uint8);
- ``streamgmm.version``: the format version (int64 scalar);
- ``streamgmm.meta``: the caller's ``meta`` as canonical JSON text (uint8);
- ``streamgmm.sha256``: the SHA-256 hex digest (uint8) over the version, every
  array's name, dtype, shape and bytes in sorted name order, and the meta JSON.

Nothing is pickled: object arrays are refused on save, and files are read with
``numpy.load(..., allow_pickle=False)``, so a crafted file cannot run code.

What goes in is the caller's business, with one rule: a checkpoint holds model
state (statistics, thresholds, offsets), never raw event payloads, message keys
or credentials. Checkpoint volumes outlive pods and end up in backups.

The store assumes one writer per directory (one daemon replica per volume).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatch",
    "CheckpointStore",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FORMAT_MARKER = b"streamgmm-checkpoint"

_ARRAY_PREFIX = "array."
_KEY_FORMAT = "streamgmm.format"
_KEY_VERSION = "streamgmm.version"
_KEY_META = "streamgmm.meta"
_KEY_CHECKSUM = "streamgmm.sha256"
_RESERVED = (_KEY_FORMAT, _KEY_VERSION, _KEY_META, _KEY_CHECKSUM)

_NAME_RE = re.compile(r"^ckpt-(\d+)-(\d{8}T\d{6}\d{6}Z)\.npz$")
_TEMP_PREFIX = ".ckpt-"
_TEMP_SUFFIX = ".tmp"

# What reading a damaged or foreign file can raise: zip and npy parsing errors,
# I/O errors, bad text. Anything else is a bug and must surface.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError)


class CheckpointError(Exception):
    """No usable checkpoint: files exist but every one is damaged or foreign."""


class CheckpointMismatch(CheckpointError):
    """The newest valid checkpoint was written under a different configuration."""


class _Invalid(Exception):
    """One file is not a valid checkpoint (the message says why)."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back and verified.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        The arrays given to :meth:`CheckpointStore.save`, under the same names.
    meta : dict
        The ``meta`` given to :meth:`CheckpointStore.save` (after a JSON round trip).
    path : pathlib.Path
        The file it was read from.
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path


class CheckpointStore:
    """Writes checkpoints atomically into one directory and reads back the newest valid one.

    Parameters
    ----------
    directory : str or pathlib.Path
        Where checkpoints live; created on the first save.
    keep : int, default 3
        How many of the newest checkpoints to keep; older ones are deleted after
        each save. Keeping more than one is what makes fallback possible.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = CheckpointStore(tempfile.mkdtemp(), keep=2)
    >>> path = store.save({"means": np.zeros((2, 3))}, {"feature_fingerprint": "abc"})
    >>> ckpt = store.load_latest(expect={"feature_fingerprint": "abc"})
    >>> ckpt.arrays["means"].shape, ckpt.meta["feature_fingerprint"]
    ((2, 3), 'abc')
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"checkpoint.keep: expected an integer >= 1, got {keep!r}")
        self.directory = Path(directory)
        self.keep = keep

    # -- listing ---------------------------------------------------------

    def list(self) -> list[Path]:
        """Checkpoint files in the directory, oldest first (by sequence number).

        Temporary files and files with other names are not listed.
        """
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _NAME_RE.match(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), entry.name, entry))
        return [path for _, _, path in sorted(found)]

    def _next_sequence(self) -> int:
        files = self.list()
        if not files:
            return 1
        return int(_NAME_RE.match(files[-1].name).group(1)) + 1

    # -- saving ----------------------------------------------------------

    def save(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Write a new checkpoint atomically and rotate old ones.

        Parameters
        ----------
        arrays : mapping of str to array-like
            Plain numeric, boolean or fixed-width string arrays. Object arrays
            are refused (they would need pickle).
        meta : mapping
            JSON-serialisable values (no NaN or infinity), e.g. the feature
            fingerprint, the model version, offsets.

        Returns
        -------
        pathlib.Path
            The new checkpoint file.
        """
        plain = _plain_arrays(arrays)
        meta_json = _canonical_meta(meta)
        members = {_ARRAY_PREFIX + name: value for name, value in plain.items()}
        members[_KEY_FORMAT] = np.frombuffer(FORMAT_MARKER, dtype=np.uint8)
        members[_KEY_VERSION] = np.asarray(FORMAT_VERSION, dtype=np.int64)
        members[_KEY_META] = np.frombuffer(meta_json.encode("utf-8"), dtype=np.uint8)
        digest = _checksum(FORMAT_VERSION, plain, meta_json)
        members[_KEY_CHECKSUM] = np.frombuffer(digest.encode("ascii"), dtype=np.uint8)

        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_temp_files()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.directory / f"ckpt-{self._next_sequence():08d}-{stamp}.npz"
        _write_atomically(final, members)
        self._rotate()
        return final

    def _rotate(self) -> None:
        for old in self.list()[: -self.keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def _remove_temp_files(self) -> None:
        # A temporary file left behind is a write that crashed before its
        # rename: never a checkpoint, safe to delete (one writer per directory).
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX):
                log.info("removing leftover temporary checkpoint file %s", entry)
                try:
                    entry.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # e.g. a read-only volume: it is not a checkpoint
                    log.warning("cannot remove leftover temporary checkpoint file %s: %s",
                                entry, exc.strerror or exc)

    # -- loading ---------------------------------------------------------

    def load_latest(self, expect: Mapping[str, Any] | None = None) -> Checkpoint | None:
        """Read the newest valid checkpoint, falling back past damaged ones.

        Parameters
        ----------
        expect : mapping, optional
            Meta values the checkpoint must carry (e.g. ``feature_fingerprint``).

        Returns
        -------
        Checkpoint or None
            None when the directory is missing or holds no checkpoint files.

        Raises
        ------
        CheckpointMismatch
            The newest valid checkpoint has a meta value other than ``expect``
            says. That is a configuration change, an operator's decision: the
            store does not fall back to an older checkpoint (written under yet
            another configuration, or the same mismatch) nor start afresh.
        CheckpointError
            Checkpoint files exist but none is valid; the message lists each
            file and its problem. Raising rather than returning None keeps a
            daemon from silently discarding its state (and masking a bad disk,
            a wrong volume or a downgrade); a caller that prefers to start
            afresh catches it and says so in its own log.
        """
        self._remove_temp_files()
        problems = []
        for path in reversed(self.list()):
            try:
                checkpoint = _read(path)
            except _Invalid as exc:
                problems.append(f"{path.name}: {exc}")
                log.warning("checkpoint %s is unusable (%s); trying the previous one", path, exc)
                continue
            if expect:
                _check_expected(checkpoint, expect)
            if problems:
                log.warning("resuming from older checkpoint %s", path)
            return checkpoint
        if problems:
            message = (
                f"no usable checkpoint in {self.directory}: " + "; ".join(problems)
            )
            log.error("%s", message)
            raise CheckpointError(message)
        return None


# -- helpers ---------------------------------------------------------------


def _plain_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    plain = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"checkpoint array name: expected a non-empty string, got {name!r}")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ValueError(
                f"checkpoint array {name!r}: expected a plain numeric or string array, "
                f"got dtype {array.dtype} (object arrays would need pickle)"
            )
        # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
        plain[name] = np.array(array, order="C", copy=True)
    return plain


def _canonical_meta(meta: Mapping[str, Any]) -> str:
    if not isinstance(meta, Mapping):
        raise ValueError(f"checkpoint meta: expected a mapping, got {type(meta).__name__}")
    try:
        return json.dumps(dict(meta), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta: expected JSON-serialisable values: {exc}") from exc


def _checksum(version: int, arrays: Mapping[str, np.ndarray], meta_json: str) -> str:
    """SHA-256 over the canonical content: version, arrays in name order, meta."""
    digest = hashlib.sha256()
    digest.update(f"streamgmm-checkpoint/{version}\n".encode())
    for name in sorted(arrays):
        array = arrays[name]
        header = f"{name}\0{array.dtype.str}\0{array.shape}\0{array.nbytes}\n"
        digest.update(header.encode("utf-8"))
        digest.update(array.tobytes(order="C"))
    digest.update(meta_json.encode("utf-8"))
    return digest.hexdigest()


def _write_atomically(final: Path, members: Mapping[str, np.ndarray]) -> None:
    fd, temp_name = tempfile.mkstemp(
        prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=final.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp_name, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(final.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    fd = os.open(directory, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> Checkpoint:
    """Read and verify one file; raise _Invalid saying what is wrong with it."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, NpzFile):
            raise _Invalid("not an npz archive (a single .npy array)")
        with loaded:
            members = {name: loaded[name] for name in loaded.files}
    except _READ_ERRORS as exc:
        raise _Invalid(f"unreadable ({type(exc).__name__}: {exc})") from exc
    return _verify(path, members)


def _verify(path: Path, members: dict[str, np.ndarray]) -> Checkpoint:
    marker = members.get(_KEY_FORMAT)
    if marker is None or marker.dtype != np.uint8 or marker.tobytes() != FORMAT_MARKER:
        raise _Invalid("not a streamgmm checkpoint (format marker missing)")
    version = members.get(_KEY_VERSION)
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise _Invalid("format version missing or malformed")
    if int(version) != FORMAT_VERSION:
        raise _Invalid(
            f"format version {int(version)}, this streamgmm reads version {FORMAT_VERSION}"
        )
    for key in (_KEY_META, _KEY_CHECKSUM):
        if key not in members or members[key].dtype != np.uint8:
            raise _Invalid(f"{key} missing or malformed")
    unknown = [n for n in members if n not in _RESERVED and not n.startswith(_ARRAY_PREFIX)]
    if unknown:
        raise _Invalid(f"unexpected members {sorted(unknown)}")
    arrays = {n[len(_ARRAY_PREFIX):]: a for n, a in members.items() if n.startswith(_ARRAY_PREFIX)}
    try:
        meta_json = members[_KEY_META].tobytes().decode("utf-8")
        stored = members[_KEY_CHECKSUM].tobytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Invalid(f"meta or checksum is not text ({exc})") from exc
    actual = _checksum(FORMAT_VERSION, arrays, meta_json)
    if stored != actual:
        raise _Invalid(f"checksum mismatch (stored {stored[:12]}..., content {actual[:12]}...)")
    try:
        meta = json.loads(meta_json)
    except ValueError as exc:
        raise _Invalid(f"meta is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise _Invalid(f"meta: expected a JSON object, got {type(meta).__name__}")
    return Checkpoint(arrays=arrays, meta=meta, path=path)


def _check_expected(checkpoint: Checkpoint, expect: Mapping[str, Any]) -> None:
    missing = object()
    for key, wanted in expect.items():
        # Compare after a JSON round trip so a tuple matches the stored list.
        wanted_json = json.loads(json.dumps(wanted))
        found = checkpoint.meta.get(key, missing)
        if found != wanted_json:
            shown = "absent" if found is missing else repr(found)
            raise CheckpointMismatch(
                f"checkpoint {checkpoint.path}: meta.{key} is {shown}, expected "
                f"{wanted_json!r} (written under a different configuration; move the "
                f"checkpoint directory aside to start afresh, or restore that configuration)"
            )
