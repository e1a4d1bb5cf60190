"""Tests for the checkpoint store: round trip, atomicity, rotation, corruption, mismatch."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from streamgmm.service import checkpoint as ckpt_mod
from streamgmm.service.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMismatch,
    CheckpointStore,
)


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "means": rng.normal(size=(3, 4)),
        "weights": rng.dirichlet(np.ones(3)),
        "offsets": np.array([10, 20, 30], dtype=np.int64),
        "ready": np.array(True),
        "topics": np.array(["events", "payments"]),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def _save_three(store: CheckpointStore) -> list[Path]:
    return [store.save(_arrays(i), {"seq": i, "feature_fingerprint": "fp"}) for i in range(3)]


def _assert_same_arrays(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


def test_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpt")
    meta = {"feature_fingerprint": "abc123", "model_version": 7, "offsets": {"t/0": 42}}
    path = store.save(_arrays(), meta)
    loaded = store.load_latest()
    assert loaded is not None
    assert loaded.path == path
    assert loaded.meta == meta
    _assert_same_arrays(loaded.arrays, _arrays())
    assert path.name.startswith("ckpt-00000001-") and path.suffix == ".npz"


def test_empty_or_missing_directory_returns_none(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "missing").load_latest() is None
    assert CheckpointStore(tmp_path).load_latest() is None
    assert CheckpointStore(tmp_path).list() == []


def test_sequence_is_monotonic_and_latest_wins(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=5)
    paths = _save_three(store)
    assert store.list() == paths
    seqs = [int(p.name.split("-")[1]) for p in paths]
    assert seqs == [1, 2, 3]
    assert store.load_latest().meta["seq"] == 2


def test_keep_n_rotation(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    paths = [store.save(_arrays(i), {"seq": i}) for i in range(5)]
    assert store.list() == paths[-2:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths[-2:])


def test_leftover_temp_file_is_ignored_and_cleaned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_arrays(), {"seq": 0})
    # A write that crashed before its rename leaves a temporary file behind.
    leftover = tmp_path / ".ckpt-crashed.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    assert len(store.list()) == 1
    assert store.load_latest().meta == {"seq": 0}
    assert not leftover.exists()
    leftover.write_bytes(b"again")
    store.save(_arrays(), {"seq": 1})
    assert not leftover.exists()
    assert [p.name.startswith("ckpt-") for p in tmp_path.iterdir()] == [True, True]


def test_a_leftover_temp_file_that_cannot_be_removed_does_not_stop_a_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import errno

    store = CheckpointStore(tmp_path)
    store.save(_arrays(), {"seq": 0})
    leftover = tmp_path / ".ckpt-crashed.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a zip")
    unlink = Path.unlink

    def read_only(self, *args, **kwargs):  # a read-only volume (root ignores chmod)
        if self == leftover:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", read_only)
    with caplog.at_level(logging.WARNING, logger=ckpt_mod.__name__):
        assert store.load_latest().meta == {"seq": 0}
    assert leftover.exists()
    assert "cannot remove leftover temporary checkpoint file" in caplog.text
    assert "Read-only file system" in caplog.text


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path)
    first = store.save(_arrays(), {"seq": 0})

    def fail_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="No space"):
        store.save(_arrays(1), {"seq": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [first]
    assert store.load_latest().meta == {"seq": 0}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_bit_in_array_data(path: Path) -> None:
    data = bytearray(path.read_bytes())
    # Flip one bit inside the stored bytes of the "means" array.
    needle = np.ascontiguousarray(np.load(path)["array.means"]).tobytes()
    start = bytes(data).index(needle)
    data[start + 5] ^= 0x10
    path.write_bytes(bytes(data))


def _foreign_text(path: Path) -> None:
    path.write_text("this is not a checkpoint\n")


def _foreign_npz(path: Path) -> None:
    with path.open("wb") as handle:
        np.savez(handle, means=np.zeros(3))


def _single_npy(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_version(path: Path) -> None:
    members = dict(np.load(path))
    members["streamgmm.version"] = np.asarray(FORMAT_VERSION + 1, dtype=np.int64)
    with path.open("wb") as handle:
        np.savez(handle, **members)


def _tampered_meta(path: Path) -> None:
    members = dict(np.load(path))
    members["streamgmm.meta"] = np.frombuffer(b'{"seq":99}', dtype=np.uint8)
    with path.open("wb") as handle:
        np.savez(handle, **members)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate, "unreadable"),
        (_flip_bit_in_array_data, "unreadable"),
        (_foreign_text, "unreadable"),
        (_foreign_npz, "format marker missing"),
        (_single_npy, "not an npz archive"),
        (_empty, "unreadable"),
        (_wrong_version, f"format version {FORMAT_VERSION + 1}"),
        (_tampered_meta, "checksum mismatch"),
    ],
)
def test_damaged_newest_falls_back_to_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, problem: str
) -> None:
    store = CheckpointStore(tmp_path)
    paths = _save_three(store)
    damage(paths[-1])
    with caplog.at_level(logging.WARNING, logger="streamgmm.service.checkpoint"):
        loaded = store.load_latest()
    assert loaded is not None
    assert loaded.path == paths[1]
    assert loaded.meta["seq"] == 1
    _assert_same_arrays(loaded.arrays, _arrays(1))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(paths[-1].name in w and problem in w for w in warnings), warnings


def test_checksum_catches_flip_that_keeps_zip_crc(tmp_path: Path) -> None:
    """A changed array whose zip entry is rewritten consistently still fails the checksum."""
    store = CheckpointStore(tmp_path)
    paths = _save_three(store)
    members = dict(np.load(paths[-1]))
    members["array.means"] = members["array.means"].copy()
    members["array.means"][0, 0] += 1.0
    with paths[-1].open("wb") as handle:
        np.savez(handle, **members)
    assert store.load_latest().path == paths[1]


def test_every_single_byte_corruption_is_detected(tmp_path: Path) -> None:
    """Flip bits all over the newest file: never an exception, never wrong data."""
    store = CheckpointStore(tmp_path, keep=5)
    paths = _save_three(store)
    original = paths[-1].read_bytes()
    rng = np.random.default_rng(0)
    positions = rng.choice(len(original), size=min(150, len(original)), replace=False)
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 1 << int(rng.integers(8))
        paths[-1].write_bytes(bytes(data))
        loaded = store.load_latest()
        if loaded.path == paths[-1]:
            # Bytes the zip format ignores (e.g. timestamps): content must be intact.
            assert loaded.meta["seq"] == 2
            _assert_same_arrays(loaded.arrays, _arrays(2))
        else:
            assert loaded.path == paths[1]


def test_all_corrupt_raises_listing_each_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path)
    paths = _save_three(store)
    _truncate(paths[0])
    _foreign_text(paths[1])
    _wrong_version(paths[2])
    with (
        caplog.at_level(logging.WARNING, logger="streamgmm.service.checkpoint"),
        pytest.raises(CheckpointError) as info,
    ):
        store.load_latest()
    message = str(info.value)
    for path in paths:
        assert path.name in message
    assert "format version" in message
    assert not isinstance(info.value, CheckpointMismatch)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_mismatch_is_refused_not_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_arrays(0), {"feature_fingerprint": "old", "seq": 0})
    store.save(_arrays(1), {"feature_fingerprint": "new", "seq": 1})
    assert store.load_latest(expect={"feature_fingerprint": "new"}).meta["seq"] == 1
    with pytest.raises(CheckpointMismatch) as info:
        store.load_latest(expect={"feature_fingerprint": "other"})
    message = str(info.value)
    assert "meta.feature_fingerprint" in message
    assert "'new'" in message and "'other'" in message
    with pytest.raises(CheckpointMismatch, match="meta.n_components is absent"):
        store.load_latest(expect={"n_components": 4})


def test_expect_compares_json_values(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_arrays(), {"features": ["amount", "hour"]})
    assert store.load_latest(expect={"features": ("amount", "hour")}) is not None


class _Boom:
    """Unpickling this would create a file: proof that pickle ran."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_object_array_in_crafted_file_is_rejected(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    paths = _save_three(store)
    marker = tmp_path / "pickle-ran"
    boom = _Boom()
    boom.marker = marker
    members = dict(np.load(paths[-1]))
    evil = np.empty(1, dtype=object)
    evil[0] = boom
    members["array.evil"] = evil
    with paths[-1].open("wb") as handle:
        np.savez(handle, **members)
    assert zipfile.is_zipfile(paths[-1])
    loaded = store.load_latest()
    assert loaded.path == paths[1]
    assert not marker.exists()


def test_save_refuses_object_arrays_and_bad_meta(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(ValueError, match="'payloads'.*object"):
        store.save({"payloads": np.array([{"a": 1}], dtype=object)}, {})
    with pytest.raises(ValueError, match="checkpoint meta: expected JSON"):
        store.save({}, {"when": object()})
    with pytest.raises(ValueError, match="checkpoint meta"):
        store.save({}, {"x": float("nan")})
    assert store.list() == []


def test_keep_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint.keep: expected an integer >= 1, got 0"):
        CheckpointStore(tmp_path, keep=0)


def test_new_file_is_durable_name_and_permissions(tmp_path: Path) -> None:
    path = CheckpointStore(tmp_path).save(_arrays(), {})
    # mkstemp creates the file readable by its owner only; the rename keeps that.
    assert os.stat(path).st_mode & 0o077 == 0


def test_docstring_examples_run() -> None:
    import doctest

    result = doctest.testmod(ckpt_mod)
    assert result.attempted > 0 and result.failed == 0
