"""Figures are drawn headless (Agg) from small data; helpers to read back what they draw."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def by_gid(ax, gid: str) -> list:
    """The artists of ``ax`` (patches, collections, lines) with this gid."""
    return [a for a in [*ax.patches, *ax.collections, *ax.lines] if a.get_gid() == gid]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, after checking it is a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def check_png(path: Path, width: int, height: int) -> None:
    """A real PNG of the expected size that is not one flat colour."""
    from matplotlib.image import imread

    assert png_size(path) == (width, height)
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert np.ptp(pixels[..., :3]) > 0.5  # something is drawn on the white


@pytest.fixture
def two_blobs() -> np.ndarray:
    """Two correlated clusters in three features and a few far points."""
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([0, 0, 0], [[1, 0.8, 0.2], [0.8, 1, 0], [0.2, 0, 2]], 500)
    b = rng.multivariate_normal([5, 2, -1], [[1, -0.5, 0], [-0.5, 0.6, 0], [0, 0, 0.3]], 400)
    far = rng.uniform(-6, 10, (12, 3))
    return np.vstack([a, b, far])
