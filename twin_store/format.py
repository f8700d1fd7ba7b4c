"""The twin store format: names, columns and checks shared by the writer and the reader.

Format 2 (written by ``twin-builder build`` since this package exists) is a directory::

    STORE/
      manifest.json            written last, atomically; a store without it is incomplete
      videos.json              one record per source video, in video-number order
      build_params.json        the parameters the store is built with (pinned by the first video)
      index/<table>.<column>.npy
                               the pair index: columnar arrays, memory-mapped by readers
      shards/<NNNNNN>.tar      patch images (PNG tar members), each shard at most ``shard_bytes``
      shards/<NNNNNN>.log      the shard's commit journal: one JSON line per committed video

The index has three tables; ids are row numbers of their table:

- ``frames`` (one row per video, tracking window and crop frame; a random twin is drawn among the
  patches of one frame row): ``video`` int32 (row of ``videos.json``), ``window_start`` int64,
  ``frame`` int64, and ``first_patch`` int64 of length ``frames + 1`` (the frame's patches are rows
  ``first_patch[f]`` to ``first_patch[f + 1] - 1`` of ``patches``).
- ``patches`` (one PNG each): ``shard`` int32 (position in ``manifest.shards``), ``offset`` int64
  and ``size`` int64 of its bytes in that shard, ``row`` and ``col`` int16 (grid cell, 0-based,
  row-major from the top-left), ``box`` int32 (P, 4) crop box ``x0 y0 x1 y1`` in pixels of the
  original frame.
- ``pairs`` (the training rows; a row number is the pair id of twin batches): ``frame`` int64,
  ``anchor`` and ``twin`` int64 (patch ids inside the frame's patches), ``mi`` float64 (nats; NaN
  for ``random`` selection). Rows are sorted by frame, then anchor, so ids are unique.

Frames are ordered by video id, then window start and crop frame, so a store built in one run and
the merge of its shards index the same pairs in the same order.

A shard is a plain (ustar) tar file: its first member, ``shard.json``, names the store that wrote
it; each patch is a member ``<video id>/w<start:06d>_f<frame:06d>_r<row>c<col>.png``, and each
video ends with ``<video id>/index.npz`` (its rows of the three tables) and ``<video id>/analysis.npz``
(per-window arrays for ``twin-builder inspect`` / ``show``). A video is committed when its line is
in the shard's journal; bytes after the last committed video are an interrupted commit, cut off
when the store is built into again.

Format 1 (one PNG per patch under ``patches/``, the pairs in ``pairs.csv``) is still read, and
``twin-builder convert`` packs it into format 2. ``pairs.csv`` (columns ``ALL_COLUMNS``) remains
the human-readable export of either format (``twin-builder export``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
FORMAT_1 = 1
MANIFEST_NAME = "manifest.json"
VIDEOS_NAME = "videos.json"
BUILD_PARAMS_NAME = "build_params.json"
INDEX_DIR = "index"
SHARDS_DIR = "shards"
SHARD_HEADER_NAME = "shard.json"
VIDEO_INDEX_NAME = "index.npz"
ANALYSIS_NAME = "analysis.npz"
# Format 1 layout.
PAIRS_NAME = "pairs.csv"
PATCHES_DIR = "patches"
VIDEOS_DIR = "videos"

# A shard is closed and the next one started once it holds this many bytes (WebDataset-style
# shards of a few hundred MB suit cluster file systems and keep one file per tens of thousands
# of patches).
DEFAULT_SHARD_BYTES = 256 * 2**20

# dtype of every index column, by table; ``box`` is (P, 4).
INDEX_COLUMNS: dict[str, dict[str, str]] = {
    "frames": {"video": "int32", "window_start": "int64", "frame": "int64", "first_patch": "int64"},
    "patches": {
        "shard": "int32",
        "offset": "int64",
        "size": "int64",
        "row": "int16",
        "col": "int16",
        "box": "int32",
    },
    "pairs": {"frame": "int64", "anchor": "int64", "twin": "int64", "mi": "float64"},
}

# ``pairs.csv`` columns: the first ten are the store contract, then the crop frame and boxes.
PAIR_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "video",
    "window_start",
    "anchor_row",
    "anchor_col",
    "twin_row",
    "twin_col",
    "mi",
    "anchor_file",
    "twin_file",
)
EXTRA_COLUMNS: tuple[str, ...] = ("frame", "anchor_box", "twin_box")
ALL_COLUMNS: tuple[str, ...] = PAIR_COLUMNS + EXTRA_COLUMNS

MANIFEST_REQUIRED_KEYS: tuple[str, ...] = (
    "format_version",
    "complete",
    "builder",
    "params",
    "selection",
    "counts",
)

# Video ids become tar member names and, in format 1, folder names: letters, digits, ``._-`` only,
# never ``.`` or ``..`` (so no id can name a path outside the store).
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


class TwinStoreError(ValueError):
    """A twin store that cannot be used; the message is ``twins store <root>: <problem>``."""

    def __init__(self, root: Path | str, problem: str):
        """Builds the message.

        Args:
            root: the store directory.
            problem: what is wrong, naming the file and key, column or row.
        """
        super().__init__(f"twins store {root}: {problem}")
        self.root = Path(root)
        self.problem = problem


def is_safe_name(name: object) -> bool:
    """Whether ``name`` can be a video id: a non-empty string of ``[A-Za-z0-9._-]``, not ``.``/``..``."""
    return isinstance(name, str) and bool(_SAFE_NAME.fullmatch(name)) and name not in (".", "..")


def index_path(root: Path, table: str, column: str) -> Path:
    """``index/<table>.<column>.npy`` of a store."""
    return root / INDEX_DIR / f"{table}.{column}.npy"


def shard_name(number: int) -> str:
    """The file name of shard ``number``: ``000042.tar``."""
    return f"{number:06d}.tar"


def patch_member(video: str, window_start: int, frame: int, row: int, col: int) -> str:
    """The tar member (format 2) or the path under ``patches/`` (format 1) of a patch image."""
    return f"{video}/w{window_start:06d}_f{frame:06d}_r{row}c{col}.png"


def pair_id(video: str, window_start: int, frame: int, row: int, col: int) -> str:
    """The store's text id of a pair: ``<video>:w<window_start>:f<frame>:r<row>c<col>``."""
    return f"{video}:w{window_start}:f{frame}:r{row}c{col}"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes ``payload`` as JSON so that ``path`` is either absent, the old file or the new one.

    Args:
        path: destination file.
        payload: JSON-serialisable value.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def group_rows(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[str, int, int]], list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Groups ``pairs.csv``-style rows into crop frames, their patches and the pairs.

    Args:
        rows: mappings with ``video``, ``window_start``, ``anchor_row`` .. ``twin_col`` and,
            optionally, ``frame`` (integers or their text).

    Returns:
        ``(frames, patches, pairs)``: the distinct ``(video, window_start, frame)`` in order of
        first appearance; the distinct ``(frame, row, col)`` patches sorted by frame and cell (so
        a frame's patches are contiguous); per row, ``(frame, anchor patch, twin patch)``.

    Raises:
        ValueError: a number does not parse (the message names the row and column).
    """
    frame_of: dict[tuple[str, int, int], int] = {}
    cells: list[tuple[int, tuple[int, int], tuple[int, int]]] = []
    for number, row in enumerate(rows):
        values = {}
        for column in ("window_start", "frame", *CELL_COLUMNS):
            text = row.get(column) if column == "frame" else row[column]
            try:
                values[column] = int(text) if text not in (None, "") or column != "frame" else 0
            except (TypeError, ValueError):
                raise ValueError(
                    f"row {number}: column {column!r} must be an integer, got {text!r}"
                ) from None
        key = (str(row["video"]), values["window_start"], values["frame"])
        frame = frame_of.setdefault(key, len(frame_of))
        cells.append(
            (
                frame,
                (values["anchor_row"], values["anchor_col"]),
                (values["twin_row"], values["twin_col"]),
            )
        )
    patch_keys = sorted({(frame, *cell) for frame, *pair_cells in cells for cell in pair_cells})
    patch_of = {key: number for number, key in enumerate(patch_keys)}
    pairs = [
        (frame, patch_of[(frame, *anchor)], patch_of[(frame, *twin)])
        for frame, anchor, twin in cells
    ]
    return list(frame_of), patch_keys, pairs


CELL_COLUMNS: tuple[str, ...] = ("anchor_row", "anchor_col", "twin_row", "twin_col")
