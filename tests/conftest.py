"""Fixtures shared by every test package: a tiny twin store written in the real store format."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from twin_builder.store_format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PAIRS_NAME,
    PATCHES_DIR,
    write_json_atomic,
    write_pairs_csv,
)

_NUM_VIDEOS = 2
_GRID = 4
# Blue channel of an id-encoded image: tells the anchor patch from its twin.
ANCHOR_BLUE = 0
TWIN_BLUE = 255


def encoded_pixel(index: int, is_twin: bool) -> tuple[int, int, int]:
    """RGB colour that ``make_twin_store(..., encode_ids=True)`` fills a patch with.

    Args:
        index: the pair's row index in ``pairs.csv`` (0-based, below 65536).
        is_twin: whether the image is the twin (else the anchor patch).

    Returns:
        ``(index % 256, index // 256, TWIN_BLUE or ANCHOR_BLUE)``. A constant colour survives
        crops, resizes and flips, so alignment can be decoded after geometric augmentations.
    """
    return index % 256, index // 256, TWIN_BLUE if is_twin else ANCHOR_BLUE


def _box(cell: tuple[int, int], size: int) -> str:
    """The ``"x0 y0 x1 y1"`` box of grid cell ``(row, col)`` of ``size``-pixel patches."""
    row, col = cell
    return f"{col * size} {row * size} {(col + 1) * size} {(row + 1) * size}"


def write_twin_store(
    root: Path, n_pairs: int = 16, size: int = 32, encode_ids: bool = False
) -> Path:
    """Writes a complete twin store of ``n_pairs`` pairs of ``size`` x ``size`` PNG patches.

    Pairs are spread over two fake videos; each pair has its own anchor and twin file. Without
    ``encode_ids`` the patches are seeded random textures; with it, each image is filled with
    ``encoded_pixel(row_index, is_twin)``.

    Args:
        root: store directory to create (must not hold a store already).
        n_pairs: number of rows of ``pairs.csv``.
        size: side of every patch image in pixels.
        encode_ids: paint the pair's row index into its two images.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(0)
    hashes = {
        f"clip{v}": hashlib.sha256(f"clip{v}".encode()).hexdigest() for v in range(_NUM_VIDEOS)
    }
    videos = [f"{stem}-{digest[:8]}" for stem, digest in hashes.items()]
    rows = []
    for index in range(n_pairs):
        video = videos[index % _NUM_VIDEOS]
        window_start = 8 * (index // (_NUM_VIDEOS * _GRID))
        cell = (index // _NUM_VIDEOS) % _GRID
        anchor = (cell // 2, cell % 2)
        twin = (anchor[0] + 2, anchor[1] + 2)
        files = []
        for is_twin, (row, col) in ((False, anchor), (True, twin)):
            relative = f"{PATCHES_DIR}/{video}/w{window_start:05d}_p{index:05d}_r{row}c{col}.png"
            if encode_ids:
                pixels = np.full((size, size, 3), encoded_pixel(index, is_twin), dtype=np.uint8)
            else:
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
            files.append(relative)
        rows.append(
            {
                "pair_id": f"{video}:w{window_start}:f{window_start}:r{anchor[0]}c{anchor[1]}",
                "video": video,
                "window_start": window_start,
                "anchor_row": anchor[0],
                "anchor_col": anchor[1],
                "twin_row": twin[0],
                "twin_col": twin[1],
                "mi": f"{0.5 + index / (2 * n_pairs):.6f}",
                "anchor_file": files[0],
                "twin_file": files[1],
                "frame": window_start,
                "anchor_box": _box(anchor, size),
                "twin_box": _box(twin, size),
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    write_pairs_csv(root / PAIRS_NAME, rows)
    write_json_atomic(
        root / MANIFEST_NAME,
        {
            "format_version": FORMAT_VERSION,
            "complete": True,
            "builder": {"name": "twin_builder", "version": "test"},
            "params": {"grid": _GRID, "window": 8, "estimator": "ksg", "k": 3, "seed": 0},
            "selection": "mi",
            "videos": [
                {"id": f"{stem}-{digest[:8]}", "name": f"{stem}.mp4", "size": 0, "sha256": digest}
                for stem, digest in hashes.items()
            ],
            "counts": {"videos": _NUM_VIDEOS, "pairs": n_pairs},
        },
    )
    return root


@pytest.fixture(scope="session")
def make_twin_store() -> Callable[..., Path]:
    """The store writer ``make_twin_store(root, n_pairs=16, size=32, encode_ids=False) -> root``."""
    return write_twin_store
