"""Fixtures shared by every test package: a tiny twin store written by the real store writer."""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twin_store import StoreWriter, entry_from_rows

# A format-1 store (one PNG per patch, pairs.csv) written by the format-1 builder, kept to test
# that such stores still load, train and convert.
FORMAT_1_STORE = Path(__file__).parent / "data" / "format1_store"

_NUM_VIDEOS = 2
_GRID = 4
# Blue channel of an id-encoded image: tells the anchor patch from its twin.
ANCHOR_BLUE = 0
TWIN_BLUE = 255


def encoded_pixel(index: int, is_twin: bool) -> tuple[int, int, int]:
    """RGB colour that ``make_twin_store(..., encode_ids=True)`` fills a patch with.

    Args:
        index: the pair's id (its row in the store's pair index, below 65536).
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

    Pairs are spread over two fake videos; each pair has its own anchor and twin patch (grid
    cells: the anchors of a window are its top-left 2 x 2 cells, their twins the bottom-right). Without
    ``encode_ids`` the patches are seeded random textures; with it, each image is filled with
    ``encoded_pixel(row_index, is_twin)``.

    Args:
        root: store directory to create (must not hold a store already).
        n_pairs: number of pairs.
        size: side of every patch image in pixels.
        encode_ids: paint the pair's id into its two images.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(0)
    hashes = {
        f"clip{v}": hashlib.sha256(f"clip{v}".encode()).hexdigest() for v in range(_NUM_VIDEOS)
    }
    videos = [f"{stem}-{digest[:8]}" for stem, digest in hashes.items()]
    rows: dict[str, list[dict]] = {video: [] for video in videos}
    images: dict[str, bytes] = {}
    layout = []
    for index in range(n_pairs):
        video = videos[index % _NUM_VIDEOS]
        window_start = 8 * (index // (_NUM_VIDEOS * _GRID))
        cell = (index // _NUM_VIDEOS) % _GRID
        layout.append((video, window_start, (cell // 2, cell % 2)))
    # The store orders pairs by video, window and anchor cell: paint each pair's id, its position.
    pair_id = {key: number for number, key in enumerate(sorted(layout))}
    for index, (video, window_start, anchor) in enumerate(layout):
        twin = (anchor[0] + 2, anchor[1] + 2)
        files = []
        for is_twin, (row, col) in ((False, anchor), (True, twin)):
            name = f"{video}/w{window_start:05d}_p{index:05d}_r{row}c{col}.png"
            if encode_ids:
                colour = encoded_pixel(pair_id[video, window_start, anchor], is_twin)
                pixels = np.full((size, size, 3), colour, dtype=np.uint8)
            else:
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            images[name] = buffer.getvalue()
            files.append(name)
        rows[video].append(
            {
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
    params = {"grid": _GRID, "window": 8, "estimator": "ksg", "k": 3, "seed": 0, "selection": "mi"}
    writer = StoreWriter(root, params)
    writer.begin()
    for (stem, digest), video in zip(hashes.items(), videos):
        record = {
            "id": video,
            "name": f"{stem}.mp4",
            "size": 0,
            "sha256": digest,
            "status": "built",
        }
        record.update(windows=1, patches=2 * len(rows[video]), tracked_patches=0, valid_patches=0)
        record.update(pairs=len(rows[video]), patch_files=2 * len(rows[video]))
        writer.commit(entry_from_rows(record, rows[video], images.__getitem__))
    writer.finish({"shards": ["0/1"]})
    return root


@pytest.fixture
def format_1_store(tmp_path: Path) -> Path:
    """A writable copy of ``FORMAT_1_STORE``."""
    return Path(shutil.copytree(FORMAT_1_STORE, tmp_path / "format1_store"))


@pytest.fixture(scope="session")
def make_twin_store() -> Callable[..., Path]:
    """The store writer ``make_twin_store(root, n_pairs=16, size=32, encode_ids=False) -> root``."""
    return write_twin_store
