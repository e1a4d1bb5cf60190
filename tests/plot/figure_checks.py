"""Reading back what a figure drew: artists by gid, and written PNGs checked as real images."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


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
