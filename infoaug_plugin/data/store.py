"""Reading and validating a twin store before training.

The store layout is fixed by :mod:`twin_builder.store_format`. :func:`open_twin_store` checks a
store completely (manifest, ``pairs.csv`` columns and values, every referenced file, counts) and
either returns a :class:`TwinStore` or raises :class:`TwinStoreError` whose message names the store
and the problem, so a bad store is refused before any model or trainer is built.

The pair id used in twin batches is the row index in ``pairs.csv`` (0-based): it is an integer,
and it is unique across processes because every process reads the same file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from twin_builder.store_format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MANIFEST_REQUIRED_KEYS,
    PAIR_COLUMNS,
    PAIRS_NAME,
)

# How many problems of one kind (e.g. missing files) an error message lists before counting.
_MAX_LISTED = 5


class TwinStoreError(ValueError):
    """A twin store that cannot be trained on; the message names the store and the problem."""

    def __init__(self, root: Path | str, problem: str):
        """Builds the message ``twins store <root>: <problem>``.

        Args:
            root: the store directory.
            problem: what is wrong, naming the file and key or column.
        """
        super().__init__(f"twins store {root}: {problem}")
        self.root = Path(root)
        self.problem = problem


@dataclass(frozen=True)
class TwinPair:
    """One row of ``pairs.csv`` with its patch files resolved against the store.

    Attributes:
        index: row index in ``pairs.csv`` (0-based); the pair id in twin batches.
        pair_id: the store's own string id of the pair.
        video: source video id.
        window: ``(video, window_start, frame)``: the patches a random twin may be drawn from.
        anchor_cell: ``(row, col)`` grid cell of the anchor patch.
        twin_cell: ``(row, col)`` grid cell of the twin patch.
        anchor_file: absolute path of the anchor patch image.
        twin_file: absolute path of the twin patch image.
    """

    index: int
    pair_id: str
    video: str
    window: tuple[str, int, str]
    anchor_cell: tuple[int, int]
    twin_cell: tuple[int, int]
    anchor_file: Path
    twin_file: Path


@dataclass(frozen=True)
class WindowPatches:
    """The distinct patches of every window, for drawing random twins.

    Attributes:
        files: per window, the patch files, one per grid cell.
        window_of_pair: per pair (row index), the index of its window in ``files``.
        anchor_slot: per pair, the position of its anchor's cell in ``files[window]``.
    """

    files: tuple[tuple[Path, ...], ...]
    window_of_pair: np.ndarray
    anchor_slot: np.ndarray


@dataclass(frozen=True)
class TwinStore:
    """A validated twin store.

    Attributes:
        root: the store directory (absolute).
        manifest: the parsed ``manifest.json``.
        pairs: every row of ``pairs.csv`` in file order (``pairs[i].index == i``).
    """

    root: Path
    manifest: dict[str, Any]
    pairs: tuple[TwinPair, ...]

    def __len__(self) -> int:
        return len(self.pairs)

    def window_patches(self) -> WindowPatches:
        """Groups the patches by ``(video, window_start, frame)`` for ``selection: random``.

        A window's candidates are its distinct grid cells, among both anchors and twins; a pair's
        random twin is any candidate of its window other than its anchor's cell.

        Returns:
            The grouping, indexed by pair row index.

        Raises:
            TwinStoreError: a window has a single patch, so it has no random twin to offer.
        """
        cells_of_window: dict[tuple[str, int, str], dict[tuple[int, int], Path]] = {}
        for pair in self.pairs:
            cells = cells_of_window.setdefault(pair.window, {})
            cells.setdefault(pair.anchor_cell, pair.anchor_file)
            cells.setdefault(pair.twin_cell, pair.twin_file)
        order = {window: position for position, window in enumerate(cells_of_window)}
        slots = {
            window: {cell: i for i, cell in enumerate(cells)}
            for window, cells in cells_of_window.items()
        }
        for window, cells in cells_of_window.items():
            if len(cells) < 2:
                video, window_start, frame = window
                raise TwinStoreError(
                    self.root,
                    f"window (video {video!r}, window_start {window_start}, frame {frame!r}) has a "
                    "single patch; selection 'random' needs at least two per window",
                )
        return WindowPatches(
            files=tuple(tuple(cells.values()) for cells in cells_of_window.values()),
            window_of_pair=np.array([order[pair.window] for pair in self.pairs], dtype=np.int64),
            anchor_slot=np.array(
                [slots[pair.window][pair.anchor_cell] for pair in self.pairs], dtype=np.int64
            ),
        )


def open_twin_store(path: Path | str, *, min_pairs: int = 1) -> TwinStore:
    """Validates a twin store and reads it.

    Checks, in order: the directory exists; ``manifest.json`` exists, parses, has every key of
    ``MANIFEST_REQUIRED_KEYS``, the supported ``format_version`` and ``complete: true``;
    ``pairs.csv`` exists and has every column of ``PAIR_COLUMNS``; it holds at least ``min_pairs``
    rows and as many as ``counts.pairs`` says; ids are unique, numbers parse, patch paths are
    relative to the store and every referenced patch file exists.

    Args:
        path: the store directory.
        min_pairs: fewest pairs to accept, e.g. one batch for every process.

    Returns:
        The validated store.

    Raises:
        TwinStoreError: the first problem found, naming the store, the file and the key or column.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TwinStoreError(root, "is not a directory")
    manifest = _read_manifest(root)
    header, rows = _read_pairs(root)
    missing_columns = [column for column in PAIR_COLUMNS if column not in header]
    if missing_columns:
        raise TwinStoreError(root, f"{PAIRS_NAME} is missing column {_quoted(missing_columns)}")
    if len(rows) < min_pairs:
        raise TwinStoreError(
            root,
            f"{PAIRS_NAME} has {len(rows)} pairs; at least {min_pairs} are needed (one twin batch per process)",
        )
    _check_counts(root, manifest, len(rows))
    pairs = tuple(
        _parse_pair(root, index, row, has_frame="frame" in header) for index, row in enumerate(rows)
    )
    _check_unique_ids(root, pairs)
    _check_files_exist(root, pairs)
    return TwinStore(root=root, manifest=manifest, pairs=pairs)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} is missing (the store is incomplete or still being built)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TwinStoreError(root, f"{MANIFEST_NAME} is not valid JSON ({error})") from error
    if not isinstance(manifest, dict):
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} must hold a JSON object, not {type(manifest).__name__}"
        )
    missing_keys = [key for key in MANIFEST_REQUIRED_KEYS if key not in manifest]
    if missing_keys:
        raise TwinStoreError(root, f"{MANIFEST_NAME} is missing key {_quoted(missing_keys)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise TwinStoreError(
            root,
            f"{MANIFEST_NAME} has format_version {manifest['format_version']!r}; "
            f"this reader supports format_version {FORMAT_VERSION}",
        )
    if manifest["complete"] is not True:
        raise TwinStoreError(
            root,
            f"{MANIFEST_NAME} has complete: {manifest['complete']!r} (the build did not finish)",
        )
    return manifest


def _read_pairs(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    pairs_path = root / PAIRS_NAME
    if not pairs_path.is_file():
        raise TwinStoreError(root, f"{PAIRS_NAME} is missing")
    with pairs_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not header:
        raise TwinStoreError(root, f"{PAIRS_NAME} is empty (no header row)")
    return header, rows


def _check_counts(root: Path, manifest: dict[str, Any], n_rows: int) -> None:
    counts = manifest["counts"]
    if not isinstance(counts, dict):
        raise TwinStoreError(
            root, f"{MANIFEST_NAME} key 'counts' must be an object, not {counts!r}"
        )
    if "pairs" in counts and counts["pairs"] != n_rows:
        raise TwinStoreError(
            root,
            f"{MANIFEST_NAME} counts.pairs is {counts['pairs']!r} but {PAIRS_NAME} has {n_rows} rows",
        )


def _parse_int(root: Path, index: int, row: dict[str, str], column: str) -> int:
    text = row[column]
    try:
        return int(text)
    except (TypeError, ValueError):
        raise TwinStoreError(
            root, f"{PAIRS_NAME} row {index}: column {column!r} must be an integer, got {text!r}"
        ) from None


def _patch_path(root: Path, index: int, row: dict[str, str], column: str) -> Path:
    relative = row[column] or ""
    posix = PurePosixPath(relative)
    if not relative or posix.is_absolute() or ".." in posix.parts:
        raise TwinStoreError(
            root, f"{PAIRS_NAME} row {index}: {column} {relative!r} must be a path inside the store"
        )
    return root.joinpath(*posix.parts)


def _parse_pair(root: Path, index: int, row: dict[str, str], *, has_frame: bool) -> TwinPair:
    window_start = _parse_int(root, index, row, "window_start")
    return TwinPair(
        index=index,
        pair_id=row["pair_id"],
        video=row["video"],
        window=(row["video"], window_start, row["frame"] if has_frame else ""),
        anchor_cell=(
            _parse_int(root, index, row, "anchor_row"),
            _parse_int(root, index, row, "anchor_col"),
        ),
        twin_cell=(
            _parse_int(root, index, row, "twin_row"),
            _parse_int(root, index, row, "twin_col"),
        ),
        anchor_file=_patch_path(root, index, row, "anchor_file"),
        twin_file=_patch_path(root, index, row, "twin_file"),
    )


def _check_unique_ids(root: Path, pairs: Sequence[TwinPair]) -> None:
    first_row: dict[str, int] = {}
    for pair in pairs:
        if pair.pair_id in first_row:
            raise TwinStoreError(
                root,
                f"{PAIRS_NAME}: pair_id {pair.pair_id!r} appears twice (rows {first_row[pair.pair_id]} and {pair.index})",
            )
        first_row[pair.pair_id] = pair.index


def _check_files_exist(root: Path, pairs: Sequence[TwinPair]) -> None:
    referenced = {path for pair in pairs for path in (pair.anchor_file, pair.twin_file)}
    missing = sorted(str(path.relative_to(root)) for path in referenced if not path.is_file())
    if missing:
        listed = _quoted(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise TwinStoreError(
            root,
            f"{len(missing)} patch file(s) referenced by {PAIRS_NAME} do not exist: {listed}{more}",
        )
