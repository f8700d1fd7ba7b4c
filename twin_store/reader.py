"""Opening and validating a twin store (format 2, or format 1 for older stores).

:func:`open_store` checks a store before anything trains on it and either returns a
:class:`TwinStore` or raises :class:`TwinStoreError` naming the store and the problem. For format 2
the checks cost O(shards) file operations plus vectorised passes over the memory-mapped index, and
every process that opens the store shares the index and shard pages.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from twin_store.format import (
    ALL_COLUMNS,
    ANALYSIS_NAME,
    FORMAT_1,
    FORMAT_VERSION,
    INDEX_COLUMNS,
    MANIFEST_NAME,
    MANIFEST_REQUIRED_KEYS,
    PAIR_COLUMNS,
    PAIRS_NAME,
    SHARDS_DIR,
    VIDEOS_DIR,
    VIDEOS_NAME,
    TwinStoreError,
    group_rows,
    index_path,
    is_safe_name,
    pair_id,
    patch_member,
)
from twin_store.shards import read_header

# How many problems of one kind an error message lists before counting the rest.
_MAX_LISTED = 5
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class Frames:
    """Crop frames: ``video``, ``window_start``, ``frame`` (F,) and ``first_patch`` (F + 1,)."""

    video: np.ndarray
    window_start: np.ndarray
    frame: np.ndarray
    first_patch: np.ndarray


@dataclass(frozen=True)
class Patches:
    """Patches (P,): grid ``row``/``col``, crop ``box`` (P, 4) and where the PNG is."""

    row: np.ndarray
    col: np.ndarray
    box: np.ndarray
    shard: np.ndarray
    offset: np.ndarray
    size: np.ndarray


@dataclass(frozen=True)
class Pairs:
    """Pairs (N,): crop ``frame``, ``anchor`` and ``twin`` patch ids, ``mi`` in nats."""

    frame: np.ndarray
    anchor: np.ndarray
    twin: np.ndarray
    mi: np.ndarray


@dataclass(frozen=True, eq=False)
class TwinStore:
    """A validated twin store.

    Attributes:
        root: the store directory (absolute).
        manifest: the parsed ``manifest.json``.
        frames: the crop-frame table.
        patches: the patch table.
        pairs: the pair table; row ``i`` is pair id ``i`` of twin batches.
        shard_paths: format 2: the shard files, by position in ``manifest["shards"]``.
        patch_files: format 1: the PNG file of each patch.
    """

    root: Path
    manifest: dict[str, Any]
    frames: Frames
    patches: Patches
    pairs: Pairs
    shard_paths: tuple[Path, ...] = ()
    patch_files: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.pairs.frame)

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    @cached_property
    def videos(self) -> list[dict[str, Any]]:
        """The video records (``id``, ``name``, ``status``, counts...), by video number.

        Raises:
            TwinStoreError: ``videos.json`` is unreadable or holds an unsafe video id.
        """
        if self.format_version == FORMAT_1:
            return self.manifest["videos"]
        path = self.root / VIDEOS_NAME
        try:
            records = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            raise TwinStoreError(self.root, f"{VIDEOS_NAME} is unreadable ({error})") from None
        _check_records(self.root, VIDEOS_NAME, records)
        return records

    @cached_property
    def _shards(self) -> list[np.memmap]:
        return [np.memmap(path, dtype=np.uint8, mode="r") for path in self.shard_paths]

    def read_patch(self, patch: int) -> np.ndarray:
        """The encoded PNG of a patch, as a 1-D uint8 array (a view of the shard for format 2)."""
        if self.patch_files:
            return np.fromfile(self.patch_files[patch], dtype=np.uint8)
        offset = int(self.patches.offset[patch])
        return self._shards[self.patches.shard[patch]][
            offset : offset + int(self.patches.size[patch])
        ]

    def patch_name(self, patch: int) -> str:
        """Where a patch is, for messages and ``pairs.csv``: a file, or ``<shard>/<member>``."""
        if self.patch_files:
            return self.patch_files[patch].relative_to(self.root).as_posix()
        frame = int(np.searchsorted(self.frames.first_patch, patch, side="right") - 1)
        video = self.videos[self.frames.video[frame]]["id"]
        member = patch_member(
            video,
            int(self.frames.window_start[frame]),
            int(self.frames.frame[frame]),
            int(self.patches.row[patch]),
            int(self.patches.col[patch]),
        )
        return f"{SHARDS_DIR}/{self.shard_paths[self.patches.shard[patch]].name}/{member}"

    def frame_patches(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The patches a random twin of each pair is drawn from: its crop frame's.

        Args:
            pairs: (B,) pair ids.

        Returns:
            ``(first, end)`` (B,) each: the pair's candidates are patches ``first`` to ``end - 1``.
        """
        frames = self.pairs.frame[pairs]
        return self.frames.first_patch[frames], self.frames.first_patch[frames + 1]

    def rows(self, pairs: Sequence[int] | None = None) -> Iterator[dict[str, str]]:
        """``pairs.csv`` rows (``ALL_COLUMNS``, as text) of the given pair ids (all by default)."""
        ids = range(len(self)) if pairs is None else pairs
        for number in ids:
            frame = int(self.pairs.frame[number])
            anchor, twin = int(self.pairs.anchor[number]), int(self.pairs.twin[number])
            video = self.videos[self.frames.video[frame]]["id"]
            window_start, frame_number = int(self.frames.window_start[frame]), int(
                self.frames.frame[frame]
            )
            mi = float(self.pairs.mi[number])
            yield {
                "pair_id": pair_id(
                    video,
                    window_start,
                    frame_number,
                    int(self.patches.row[anchor]),
                    int(self.patches.col[anchor]),
                ),
                "video": video,
                "window_start": str(window_start),
                "anchor_row": str(int(self.patches.row[anchor])),
                "anchor_col": str(int(self.patches.col[anchor])),
                "twin_row": str(int(self.patches.row[twin])),
                "twin_col": str(int(self.patches.col[twin])),
                "mi": "" if np.isnan(mi) else f"{mi:.6f}",
                "anchor_file": self.patch_name(anchor),
                "twin_file": self.patch_name(twin),
                "frame": str(frame_number),
                "anchor_box": _box_text(self.patches.box[anchor]),
                "twin_box": _box_text(self.patches.box[twin]),
            }

    def read_analysis(self, video_id: str) -> dict[str, np.ndarray] | None:
        """The per-window arrays of a built video (``inspect`` / ``show``), or None if not kept."""
        if self.format_version == FORMAT_1:
            path = self.root / VIDEOS_DIR / video_id / ANALYSIS_NAME
            if not path.is_file():
                return None
            with np.load(path) as arrays:
                return dict(arrays)
        record = next((r for r in self.videos if r["id"] == video_id), None)
        location = record.get("analysis_member") if record else None
        if not location:
            return None
        shard, offset, size = location
        data = self._shards[shard][offset : offset + size]
        with np.load(io.BytesIO(data.tobytes())) as arrays:
            return dict(arrays)

    def verify(self) -> None:
        """Reads every shard through and checks its CRC-32 against the manifest (format 2).

        Raises:
            TwinStoreError: a shard's content changed since the store was written.
        """
        for entry, path in zip(self.manifest.get("shards", []), self.shard_paths):
            crc = 0
            with path.open("rb") as handle:
                while chunk := handle.read(2**24):
                    crc = zlib.crc32(chunk, crc)
            if crc != entry.get("crc32"):
                raise TwinStoreError(
                    self.root,
                    f"{SHARDS_DIR}/{entry['name']} is damaged: CRC-32 {crc} but the manifest "
                    f"says {entry.get('crc32')}",
                )


def _box_text(box: np.ndarray) -> str:
    return "" if box[0] < 0 else " ".join(str(int(v)) for v in box)


def open_store(path: Path | str, *, min_pairs: int = 1, verify: bool = False) -> TwinStore:
    """Validates a twin store and opens it.

    Format 2: the manifest (keys, version, ``complete``, shard list), every shard (a regular file
    inside the store, of the size the manifest records, written by the store it lists), every index
    column (readable, right dtype and length) and the index's values (ids in range, every patch
    inside its shard, every pair's patches in its crop frame, sorted unique pairs).
    Format 1: the manifest, ``pairs.csv`` (text, columns, integers, grid cells, unique ids), and
    every patch file (inside the store, not through a link outside it, a whole PNG).

    Args:
        path: the store directory.
        min_pairs: fewest pairs to accept, e.g. one batch for every process.
        verify: also check every shard's CRC-32 (reads the whole store; ``twin-builder inspect``).

    Returns:
        The validated store.

    Raises:
        TwinStoreError: the first problem found, naming the store, the file and the problem.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TwinStoreError(root, "is not a directory")
    manifest = _read_manifest(root)
    if manifest["format_version"] == FORMAT_1:
        store = _open_format_1(root, manifest)
    else:
        store = _open_format_2(root, manifest)
    if len(store) < min_pairs:
        raise TwinStoreError(
            root,
            f"has {len(store)} pairs; at least {min_pairs} are needed (one twin batch per process)",
        )
    if verify:
        store.verify()
    return store


def _quoted(names: Sequence[str]) -> str:
    listed = ", ".join(repr(name) for name in names[:_MAX_LISTED])
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return listed + more


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} is missing (the store is incomplete or still being built)"
        )
    _check_inside(root, path, MANIFEST_NAME)
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as error:
        raise TwinStoreError(root, f"{MANIFEST_NAME} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} must hold a JSON object, not {type(manifest).__name__}"
        )
    missing = [key for key in MANIFEST_REQUIRED_KEYS if key not in manifest]
    if manifest.get("format_version") == FORMAT_1 and "videos" not in manifest:
        missing.append("videos")
    if missing:
        raise TwinStoreError(root, f"{MANIFEST_NAME} is missing key {_quoted(missing)}")
    if manifest["format_version"] not in (FORMAT_1, FORMAT_VERSION):
        raise TwinStoreError(
            root,
            f"{MANIFEST_NAME} has format_version {manifest['format_version']!r}; this reader "
            f"supports {FORMAT_1} and {FORMAT_VERSION}",
        )
    if manifest["complete"] is not True:
        raise TwinStoreError(
            root,
            f"{MANIFEST_NAME} has complete: {manifest['complete']!r} (the build did not finish)",
        )
    for key in ("params", "counts"):
        if not isinstance(manifest[key], dict):
            raise TwinStoreError(root, f"{MANIFEST_NAME} key {key!r} must be an object")
    grid = manifest["params"].get("grid")
    if grid is not None and (not isinstance(grid, int) or grid < 1):
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} params.grid must be a positive integer, not {grid!r}"
        )
    return manifest


def _check_inside(root: Path, path: Path, name: str) -> None:
    """Refuses a file that is, or goes through, a link to somewhere outside the store."""
    if not path.resolve().is_relative_to(root):
        raise TwinStoreError(root, f"{name} is a link to {path.resolve()}, outside the store")


def _check_records(root: Path, name: str, records: Any) -> None:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise TwinStoreError(root, f"{name} must hold a list of video records")
    bad = [str(r.get("id")) for r in records if not is_safe_name(r.get("id"))]
    if bad:
        raise TwinStoreError(
            root, f"{name} has video id(s) that are not plain file names: {_quoted(bad)}"
        )


def _check_counts(root: Path, manifest: dict[str, Any], key: str, actual: int, what: str) -> None:
    expected = manifest["counts"].get(key)
    if expected is not None and expected != actual:
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} counts.{key} is {expected!r} but {what} has {actual}"
        )


def _first_bad(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if len(bad) else None


# ---------------------------------------------------------------------------------------------
# Format 2


def _open_format_2(root: Path, manifest: dict[str, Any]) -> TwinStore:
    shard_entries = manifest.get("shards")
    if not isinstance(shard_entries, list) or not shard_entries:
        raise TwinStoreError(root, f"{MANIFEST_NAME} key 'shards' must be a non-empty list")
    shard_paths, shard_bytes = [], []
    for entry in shard_entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not (isinstance(name, str) and name.endswith(".tar") and is_safe_name(name)):
            raise TwinStoreError(
                root, f"{MANIFEST_NAME} lists a shard {name!r} that is not a shard file name"
            )
        shard = root / SHARDS_DIR / name
        label = f"{SHARDS_DIR}/{name}"
        if not shard.is_file():
            raise TwinStoreError(root, f"{label} is missing")
        _check_inside(root, shard, label)
        size = shard.stat().st_size
        if size != entry.get("bytes"):
            problem = "is truncated" if size < (entry.get("bytes") or 0) else "has changed"
            raise TwinStoreError(
                root, f"{label} {problem}: {size} bytes, the manifest says {entry.get('bytes')}"
            )
        header = read_header(shard)
        if header is None or header.get("store_id") != entry.get("store_id"):
            raise TwinStoreError(
                root,
                f"{label} comes from another store (its shard.json says store "
                f"{(header or {}).get('store_id')!r}, the manifest {entry.get('store_id')!r})",
            )
        shard_paths.append(shard)
        shard_bytes.append(size)
    columns = {
        table: {
            column: _load_column(root, table, column, dtype) for column, dtype in dtypes.items()
        }
        for table, dtypes in INDEX_COLUMNS.items()
    }
    frames = Frames(**columns["frames"])
    patches = Patches(**columns["patches"])
    pairs = Pairs(**columns["pairs"])
    _check_lengths(root, manifest, frames, patches, pairs)
    _check_values(root, manifest, frames, patches, pairs, np.array(shard_bytes))
    return TwinStore(
        root=root,
        manifest=manifest,
        frames=frames,
        patches=patches,
        pairs=pairs,
        shard_paths=tuple(shard_paths),
    )


def _load_column(root: Path, table: str, column: str, dtype: str) -> np.ndarray:
    path = index_path(root, table, column)
    label = path.relative_to(root).as_posix()
    if not path.is_file():
        raise TwinStoreError(root, f"{label} is missing")
    _check_inside(root, path, label)
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise TwinStoreError(root, f"{label} is not a readable .npy file ({error})") from None
    ndim = 2 if column == "box" else 1
    if (
        values.dtype != np.dtype(dtype)
        or values.ndim != ndim
        or (ndim == 2 and values.shape[1] != 4)
    ):
        raise TwinStoreError(
            root,
            f"{label} holds {values.dtype} {values.shape}; expected {dtype} with "
            f"{'shape (n, 4)' if ndim == 2 else 'one dimension'}",
        )
    return values


def _check_lengths(
    root: Path, manifest: dict, frames: Frames, patches: Patches, pairs: Pairs
) -> None:
    for table, expected, row_count in (
        ("frames", len(frames.video), lambda name, v: len(v) - (name == "first_patch")),
        ("patches", len(patches.row), lambda name, v: len(v)),
        ("pairs", len(pairs.frame), lambda name, v: len(v)),
    ):
        values = {"frames": frames, "patches": patches, "pairs": pairs}[table]
        for column in INDEX_COLUMNS[table]:
            actual = row_count(column, getattr(values, column))
            if actual != expected:
                label = index_path(root, table, column).relative_to(root).as_posix()
                raise TwinStoreError(
                    root, f"{label} has {actual} rows but the {table} table has {expected}"
                )
    _check_counts(root, manifest, "pairs", len(pairs.frame), "the index")
    _check_counts(root, manifest, "patch_files", len(patches.row), "the index")
    _check_counts(root, manifest, "frames", len(frames.video), "the index")


def _check_values(
    root: Path,
    manifest: dict[str, Any],
    frames: Frames,
    patches: Patches,
    pairs: Pairs,
    shard_bytes: np.ndarray,
) -> None:
    def refuse(table: str, column: str, row: int, problem: str) -> None:
        label = index_path(root, table, column).relative_to(root).as_posix()
        raise TwinStoreError(root, f"{label} row {row}: {problem}")

    videos = manifest["counts"].get("videos", 0)
    if (row := _first_bad((frames.video < 0) | (frames.video >= videos))) is not None:
        refuse(
            "frames", "video", row, f"video {frames.video[row]} is not one of the {videos} videos"
        )
    first = frames.first_patch
    if first[0] != 0 or first[-1] != len(patches.row):
        refuse("frames", "first_patch", 0, f"must start at 0 and end at {len(patches.row)} patches")
    if (row := _first_bad(np.diff(first) < 1)) is not None:
        refuse("frames", "first_patch", row, "a crop frame must have at least one patch")
    shards = len(shard_bytes)
    if (row := _first_bad((patches.shard < 0) | (patches.shard >= shards))) is not None:
        refuse(
            "patches", "shard", row, f"shard {patches.shard[row]} is not one of the {shards} shards"
        )
    end = patches.offset + patches.size
    if (
        row := _first_bad(
            (patches.offset < 0) | (patches.size <= 0) | (end > shard_bytes[patches.shard])
        )
    ) is not None:
        refuse(
            "patches",
            "offset",
            row,
            f"bytes {patches.offset[row]}..{end[row]} are not inside shard "
            f"{manifest['shards'][patches.shard[row]]['name']} ({shard_bytes[patches.shard[row]]} bytes)",
        )
    grid = manifest["params"].get("grid")
    for column in ("row", "col"):
        cells = getattr(patches, column)
        if grid and (row := _first_bad((cells < 0) | (cells >= grid))) is not None:
            refuse(
                "patches",
                column,
                row,
                f"grid {column} {cells[row]} is outside the {grid} x {grid} grid",
            )
    if (row := _first_bad((pairs.frame < 0) | (pairs.frame >= len(frames.video)))) is not None:
        refuse("pairs", "frame", row, f"crop frame {pairs.frame[row]} does not exist")
    lows, highs = first[pairs.frame], first[pairs.frame + 1]
    for column in ("anchor", "twin"):
        ids = getattr(pairs, column)
        if (row := _first_bad((ids < lows) | (ids >= highs))) is not None:
            refuse(
                "pairs", column, row, f"patch {ids[row]} is not a patch of the pair's crop frame"
            )
    if (row := _first_bad(pairs.anchor == pairs.twin)) is not None:
        refuse("pairs", "twin", row, "the twin is the anchor itself")
    unsorted = (np.diff(pairs.frame) < 0) | (
        (np.diff(pairs.frame) == 0) & (np.diff(pairs.anchor) <= 0)
    )
    if (row := _first_bad(unsorted)) is not None:
        refuse(
            "pairs", "anchor", row + 1, "pairs must be sorted by crop frame and anchor, each once"
        )


# ---------------------------------------------------------------------------------------------
# Format 1


def _open_format_1(root: Path, manifest: dict[str, Any]) -> TwinStore:
    _check_records(root, MANIFEST_NAME, manifest["videos"])
    rows = _read_pairs_csv(root)
    grid = manifest["params"].get("grid")
    try:
        frame_keys, patch_keys, pair_ids = group_rows(rows)
    except ValueError as error:
        raise TwinStoreError(root, f"{PAIRS_NAME} {error}") from None
    videos = {record["id"]: number for number, record in enumerate(manifest["videos"])}
    unknown = sorted({video for video, _, _ in frame_keys if video not in videos})
    if unknown:
        raise TwinStoreError(
            root, f"{PAIRS_NAME} names video(s) not in {MANIFEST_NAME}: {_quoted(unknown)}"
        )
    files: dict[int, str] = {}
    for number, (row, (_, anchor, twin)) in enumerate(zip(rows, pair_ids)):
        for side, patch in (("anchor", anchor), ("twin", twin)):
            if grid is not None:
                for axis in ("row", "col"):
                    value = int(row[f"{side}_{axis}"])
                    if not 0 <= value < grid:
                        raise TwinStoreError(
                            root,
                            f"{PAIRS_NAME} row {number}: {side}_{axis} {value} is outside the "
                            f"{grid} x {grid} grid",
                        )
            files.setdefault(patch, row[f"{side}_file"] or "")
        if anchor == twin:
            raise TwinStoreError(
                root, f"{PAIRS_NAME} row {number}: the twin is the anchor's own cell"
            )
    _check_counts(root, manifest, "pairs", len(rows), PAIRS_NAME)
    seen: dict[str, int] = {}
    for number, row in enumerate(rows):
        if (first := seen.setdefault(row["pair_id"], number)) != number:
            raise TwinStoreError(
                root,
                f"{PAIRS_NAME}: pair_id {row['pair_id']!r} appears twice (rows {first} and {number})",
            )
    patch_files = tuple(_patch_file(root, files[number]) for number in range(len(patch_keys)))
    _check_pngs(root, patch_files)
    first_patch = np.searchsorted([key[0] for key in patch_keys], np.arange(len(frame_keys) + 1))
    boxes = {}
    for row, (_, anchor, twin) in zip(rows, pair_ids):
        boxes.setdefault(anchor, row.get("anchor_box") or "")
        boxes.setdefault(twin, row.get("twin_box") or "")
    pair_array = np.array(pair_ids, dtype=np.int64).reshape(-1, 3)
    return TwinStore(
        root=root,
        manifest=manifest,
        frames=Frames(
            video=np.array([videos[video] for video, _, _ in frame_keys], dtype=np.int32),
            window_start=np.array([start for _, start, _ in frame_keys], dtype=np.int64),
            frame=np.array([frame for _, _, frame in frame_keys], dtype=np.int64),
            first_patch=first_patch.astype(np.int64),
        ),
        patches=Patches(
            row=np.array([key[1] for key in patch_keys], dtype=np.int16),
            col=np.array([key[2] for key in patch_keys], dtype=np.int16),
            box=np.array(
                [_parse_box(boxes[number]) for number in range(len(patch_keys))], dtype=np.int32
            ).reshape(-1, 4),
            shard=np.full(len(patch_keys), -1, dtype=np.int32),
            offset=np.zeros(len(patch_keys), dtype=np.int64),
            size=np.zeros(len(patch_keys), dtype=np.int64),
        ),
        pairs=Pairs(
            frame=pair_array[:, 0],
            anchor=pair_array[:, 1],
            twin=pair_array[:, 2],
            mi=_parse_mi(root, rows),
        ),
        patch_files=patch_files,
    )


def _parse_mi(root: Path, rows: Sequence[dict[str, str]]) -> np.ndarray:
    values = np.full(len(rows), np.nan)
    for number, row in enumerate(rows):
        if row["mi"]:
            try:
                values[number] = float(row["mi"])
            except ValueError:
                raise TwinStoreError(
                    root,
                    f"{PAIRS_NAME} row {number}: column 'mi' must be a number, got {row['mi']!r}",
                ) from None
    return values


def _parse_box(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        values = []
    return values if len(values) == 4 else [-1, -1, -1, -1]


def _read_pairs_csv(root: Path) -> list[dict[str, str]]:
    path = root / PAIRS_NAME
    if not path.is_file():
        raise TwinStoreError(root, f"{PAIRS_NAME} is missing")
    _check_inside(root, path, PAIRS_NAME)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise TwinStoreError(root, f"{PAIRS_NAME} is not a UTF-8 CSV file ({error})") from None
    if not header:
        raise TwinStoreError(root, f"{PAIRS_NAME} is empty (no header row)")
    missing = [column for column in PAIR_COLUMNS if column not in header]
    if missing:
        raise TwinStoreError(root, f"{PAIRS_NAME} is missing column {_quoted(missing)}")
    return rows


def _patch_file(root: Path, relative: str) -> Path:
    posix = PurePosixPath(relative)
    if not relative or posix.is_absolute() or ".." in posix.parts:
        raise TwinStoreError(
            root, f"{PAIRS_NAME}: patch file {relative!r} must be a path inside the store"
        )
    path = root.joinpath(*posix.parts)
    if path.exists():
        _check_inside(root, path, relative)
    return path


def _check_pngs(root: Path, files: Sequence[Path]) -> None:
    """Every patch file exists and is a whole PNG (signature at the start, IEND chunk at the end)."""
    missing, damaged = [], []
    for path in files:
        try:
            with path.open("rb") as handle:
                head = handle.read(len(_PNG_SIGNATURE))
                handle.seek(0, 2)
                handle.seek(max(handle.tell() - len(_PNG_END), 0))
                tail = handle.read()
        except FileNotFoundError:
            missing.append(path.relative_to(root).as_posix())
            continue
        except OSError:
            damaged.append(path.relative_to(root).as_posix())
            continue
        if head != _PNG_SIGNATURE or tail != _PNG_END:
            damaged.append(path.relative_to(root).as_posix())
    if missing:
        raise TwinStoreError(
            root,
            f"{len(missing)} patch file(s) referenced by {PAIRS_NAME} do not exist: {_quoted(missing)}",
        )
    if damaged:
        raise TwinStoreError(
            root,
            f"{len(damaged)} patch file(s) are not whole PNG images (truncated?): {_quoted(damaged)}",
        )


def export_pairs_csv(store: TwinStore, path: Path) -> int:
    """Writes the store's pairs as ``pairs.csv`` (``ALL_COLUMNS``), for people and other tools.

    Format-2 patch files are named ``shards/<shard>.tar/<member>``: ``tar -xf`` that shard with
    that member name to get the PNG.

    Returns:
        The number of rows written.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_COLUMNS)
        writer.writeheader()
        writer.writerows(store.rows())
    tmp.replace(path)
    return len(store)
