"""Damaged checkpoints at daemon start-up: reported, skipped, the previous one used.

Two lives of `streamgmm run` on a growing events file leave two checkpoints
(after 300 and 500 lines). The newest is then truncated, bit-flipped or
replaced by a foreign archive, and a third life must log the problem, restore
the first checkpoint and go on from line 301: its audit holds exactly the
lines 301..600 (a fresh start would audit from line 1, the damaged checkpoint
from line 501), and its model has learned every line once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamgmm.service.checkpoint import CheckpointStore
from streamgmm.stream.audit import read_audit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def lines(first: int, last: int) -> bytes:
    """JSON events for line numbers first..last (from 1), one per line."""
    rng = np.random.default_rng(first)
    out = [json.dumps({"id": f"e{i}", "a": float(a), "b": float(b)})
           for i, (a, b) in zip(range(first, last + 1), rng.normal(0, 1, (last - first + 1, 2)),
                                strict=True)]
    return ("\n".join(out) + "\n").encode()


def write_config(workdir: Path, events: Path) -> Path:
    """A file-source config whose checkpoints and audit live in ``workdir``."""
    doc = {
        "source": {"type": "file", "batch_size": 50, "file": {"path": str(events)}},
        "features": {"key": "id", "fields": [{"name": "a"}, {"name": "b"}]},
        "detector": {"n_components": 1, "contamination": 0.03, "window": 500, "warmup": 100,
                     "random_state": 0, "refit": {"enabled": False}},
        "alerts": {"sink": "none"},
        "dead_letter": {"sink": "none"},
        "checkpoint": {"dir": str(workdir / "ckpt"), "interval_s": 3600, "keep": 3},
        "audit": {"path": str(workdir / "audit.txt")},
        "metrics": {"enabled": False},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamgmm", "run", "--config", str(config)],
                          capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """A work directory after two lives: checkpoints at lines 300 and 500, 600 lines in all.

    Checkpoints name the file they read, so every test reads this events file
    and works on its own copy of the checkpoint directory.
    """
    workdir = tmp_path_factory.mktemp("two-lives")
    events = workdir / "events.jsonl"
    events.write_bytes(lines(1, 300))
    cfg = write_config(workdir, events)
    for more in (None, (301, 500)):
        if more:
            with events.open("ab") as handle:
                handle.write(lines(*more))
        done = run(cfg)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    paths = CheckpointStore(workdir / "ckpt").list()
    assert len(paths) == 2
    assert CheckpointStore(workdir / "ckpt").load_latest().meta["n_events"] == 500
    with events.open("ab") as handle:
        handle.write(lines(501, 600))
    return workdir


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_bit(path: Path) -> None:
    # A bit in the middle of the file: inside an array's bytes, so the zip
    # container may still open and only the checksum (or zip CRC) can tell.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def foreign(path: Path) -> None:
    # A valid .npz of someone else's arrays under the checkpoint's name.
    with path.open("wb") as handle:
        np.savez(handle, weights=np.ones(3), means=np.zeros((3, 2)))


@pytest.mark.parametrize("damage", [truncate, flip_a_bit, foreign],
                         ids=["truncated", "bit-flipped", "foreign"])
def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(
        two_checkpoints, tmp_path, damage):
    events = two_checkpoints / "events.jsonl"
    shutil.copytree(two_checkpoints / "ckpt", tmp_path / "ckpt")
    cfg = write_config(tmp_path, events)
    store = CheckpointStore(tmp_path / "ckpt")
    older, newest = store.list()
    damage(newest)

    done = run(cfg)
    log = done.stderr.decode()
    assert done.returncode == 0, log[-3000:]
    assert f"checkpoint {newest} is unusable" in log
    assert f"resuming from older checkpoint {older}" in log
    assert "300 events learned" in log
    # Went on from the older checkpoint's offset: lines 301..600, each once.
    assert read_audit(tmp_path / "audit.txt") == [f"{events}/{i}" for i in range(301, 601)]
    assert store.load_latest().meta["n_events"] == 600


def test_only_damaged_checkpoints_stop_the_start_with_the_reason(two_checkpoints, tmp_path):
    shutil.copytree(two_checkpoints / "ckpt", tmp_path / "ckpt")
    cfg = write_config(tmp_path, two_checkpoints / "events.jsonl")
    older, newest = CheckpointStore(tmp_path / "ckpt").list()
    truncate(newest)
    flip_a_bit(older)
    done = run(cfg)
    log = done.stderr.decode()
    assert done.returncode == 1
    assert "cannot start: no usable checkpoint" in log
    assert newest.name in log and older.name in log
