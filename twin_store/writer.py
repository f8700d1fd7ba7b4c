"""Writing format-2 twin stores: per-video commits into shards, resume, final index, merge, convert.

Every store is written here: ``twin-builder build`` commits one :class:`VideoEntry` per video and
calls :meth:`StoreWriter.finish`; ``merge`` links the shards of finished stores into a new one and
finishes it; ``convert`` packs a format-1 store's PNG files (not re-encoded) into shards.

Crash safety: ``manifest.json`` is removed before a run changes anything and written last, so an
interrupted run never reads as complete. A video is committed when its journal line is written
(after its members are synced); a new run cuts each appendable shard back to its last commit and
skips the committed videos.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from twin_store.format import (
    ALL_COLUMNS,
    ANALYSIS_NAME,
    BUILD_PARAMS_NAME,
    DEFAULT_SHARD_BYTES,
    FORMAT_1,
    FORMAT_VERSION,
    INDEX_COLUMNS,
    INDEX_DIR,
    MANIFEST_NAME,
    PAIRS_NAME,
    PATCHES_DIR,
    SHARDS_DIR,
    VIDEO_INDEX_NAME,
    VIDEOS_DIR,
    VIDEOS_NAME,
    TwinStoreError,
    group_rows,
    index_path,
    is_safe_name,
    patch_member,
    shard_name,
    write_json_atomic,
)
from twin_store.shards import ShardAppender, read_header, read_journal


@dataclass(frozen=True)
class VideoEntry:
    """Everything one video adds to a store (F crop frames, P patches, N pairs).

    Attributes:
        record: the video's record in ``videos.json`` (``id``, ``name``, ``status``, counts...).
        window_start: (F,) tracking window start of each crop frame.
        frame: (F,) frame number of each crop frame.
        patch_frame: (P,) crop frame of each patch, non-decreasing.
        patch_row: (P,) grid row of each patch.
        patch_col: (P,) grid column of each patch.
        patch_box: (P, 4) crop box ``x0 y0 x1 y1`` in original pixels (-1 when unknown).
        patch_png: (P,) encoded PNG of each patch.
        pair_frame: (N,) crop frame of each pair.
        pair_anchor: (N,) anchor patch (row of this video's patches).
        pair_twin: (N,) twin patch.
        pair_mi: (N,) MI in nats, NaN for ``random`` selection.
        analysis: ``analysis.npz`` bytes for ``inspect`` / ``show``, or None.
    """

    record: dict[str, Any]
    window_start: np.ndarray
    frame: np.ndarray
    patch_frame: np.ndarray
    patch_row: np.ndarray
    patch_col: np.ndarray
    patch_box: np.ndarray
    patch_png: Sequence[bytes]
    pair_frame: np.ndarray
    pair_anchor: np.ndarray
    pair_twin: np.ndarray
    pair_mi: np.ndarray
    analysis: bytes | None = None

    @property
    def video_id(self) -> str:
        return self.record["id"]


def skipped_entry(record: Mapping[str, Any]) -> VideoEntry:
    """The entry of a video that gave no pairs (its record says why)."""
    empty = np.zeros(0, dtype=np.int64)
    return VideoEntry(
        record=dict(record),
        window_start=empty,
        frame=empty,
        patch_frame=empty,
        patch_row=empty,
        patch_col=empty,
        patch_box=np.zeros((0, 4), dtype=np.int64),
        patch_png=[],
        pair_frame=empty,
        pair_anchor=empty,
        pair_twin=empty,
        pair_mi=np.zeros(0),
    )


def entry_from_rows(
    record: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    read_png: Callable[[str], bytes],
    analysis: bytes | None = None,
) -> VideoEntry:
    """Builds a video's entry from its ``pairs.csv``-style rows (as the pipeline gives them).

    Args:
        record: the video's record.
        rows: its rows (``ALL_COLUMNS`` keys; ``frame`` and the boxes optional).
        read_png: the PNG bytes of a row's ``anchor_file`` / ``twin_file``.
        analysis: the video's ``analysis.npz`` bytes, if any.

    Returns:
        The entry; a crop frame's patches are its distinct grid cells, in cell order.
    """
    frames, patches, pairs = group_rows(rows)
    file_and_box = {}
    for row, (_, anchor, twin) in zip(rows, pairs):
        file_and_box.setdefault(anchor, (row["anchor_file"], row.get("anchor_box") or ""))
        file_and_box.setdefault(twin, (row["twin_file"], row.get("twin_box") or ""))
    boxes = [file_and_box[number][1] for number in range(len(patches))]
    return VideoEntry(
        record=dict(record),
        window_start=np.array([start for _, start, _ in frames], dtype=np.int64),
        frame=np.array([frame for _, _, frame in frames], dtype=np.int64),
        patch_frame=np.array([key[0] for key in patches], dtype=np.int64),
        patch_row=np.array([key[1] for key in patches], dtype=np.int64),
        patch_col=np.array([key[2] for key in patches], dtype=np.int64),
        patch_box=np.array(
            [[int(v) for v in box.split()] if box else [-1] * 4 for box in boxes], dtype=np.int64
        ).reshape(-1, 4),
        patch_png=[read_png(file_and_box[number][0]) for number in range(len(patches))],
        pair_frame=np.array([frame for frame, _, _ in pairs], dtype=np.int64),
        pair_anchor=np.array([anchor for _, anchor, _ in pairs], dtype=np.int64),
        pair_twin=np.array([twin for _, _, twin in pairs], dtype=np.int64),
        pair_mi=np.array(
            [float(row["mi"]) if row["mi"] not in ("", None) else np.nan for row in rows]
        ),
        analysis=analysis,
    )


def builder_version() -> str:
    """The installed ``infoaug`` distribution's version (the builder ships with it)."""
    try:
        return metadata.version("infoaug")
    except metadata.PackageNotFoundError:
        return "unknown"


class StoreWriter:
    """A format-2 store being written: its parameters, shards and committed videos.

    Args:
        root: the store directory (created if missing).
        params: the build parameters; a store that has committed videos must have the same.
        shard_bytes: a shard is closed once it holds this many bytes.

    Raises:
        TwinStoreError: the directory holds a store with committed videos built with other
            parameters, or is a non-empty directory that is not a store, or cannot be written.
    """

    def __init__(
        self, root: Path, params: Mapping[str, Any], *, shard_bytes: int = DEFAULT_SHARD_BYTES
    ):
        self.root = root
        self.params = dict(params)
        self.shard_bytes = shard_bytes
        if root.exists() and not root.is_dir():
            raise TwinStoreError(root, "exists and is not a directory")
        pinned_path = root / BUILD_PARAMS_NAME
        if root.is_dir() and not pinned_path.is_file() and any(root.iterdir()):
            raise TwinStoreError(root, f"not empty and not a twin store (no {BUILD_PARAMS_NAME})")
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / SHARDS_DIR).mkdir(exist_ok=True)
        except OSError as error:
            raise TwinStoreError(root, f"cannot be created ({error.strerror})") from None
        pinned = _read_pinned(root) if pinned_path.is_file() else None
        if pinned is not None and pinned["params"] != self.params and not self.has_pairs():
            # A store with no built video pins nothing: its skip records were made under the old
            # parameters, so a corrected retry starts over.
            shutil.rmtree(root / SHARDS_DIR)
            (root / SHARDS_DIR).mkdir()
            pinned = None
        if pinned is not None and pinned["params"] != self.params:
            raise TwinStoreError(
                root,
                f"store was built with other parameters ({_diff(pinned['params'], self.params)}); "
                "use a new --out directory or the same parameters to resume",
            )
        self.store_id = pinned["store_id"] if pinned else uuid.uuid4().hex
        if pinned is None:
            write_json_atomic(pinned_path, {"params": self.params, "store_id": self.store_id})
        self.committed = self._committed_videos()
        self._appender: ShardAppender | None = None

    def _read_journals(self) -> list[tuple[Path, list[dict[str, Any]]]]:
        return [
            (path, read_journal(path.with_suffix(".log")))
            for path in sorted((self.root / SHARDS_DIR).glob("*.tar"))
        ]

    def _committed_videos(self) -> set[str]:
        return {entry["video"] for _, entries in self._read_journals() for entry in entries}

    def has_pairs(self) -> bool:
        """Whether a committed video gave pairs (otherwise there is no store to finish)."""
        return any(
            entry["record"].get("pairs")
            for _, entries in self._read_journals()
            for entry in entries
        )

    def begin(self) -> None:
        """Marks the store incomplete (before anything in it changes)."""
        (self.root / MANIFEST_NAME).unlink(missing_ok=True)

    def is_committed(self, video_id: str) -> bool:
        """Whether the video is already in the store (built or recorded as skipped)."""
        return video_id in self.committed

    def commit(self, entry: VideoEntry) -> dict[str, Any]:
        """Appends a video's patches, index rows and analysis to the open shard, then journals it.

        Args:
            entry: the video.

        Returns:
            The video's record.

        Raises:
            TwinStoreError: the video id is not a safe name.
        """
        video = entry.video_id
        if not is_safe_name(video):
            raise TwinStoreError(self.root, f"video id {video!r} must be a plain file name")
        shard = self._shard()
        offsets, sizes = np.zeros(len(entry.patch_png), np.int64), np.zeros(
            len(entry.patch_png), np.int64
        )
        for number, png in enumerate(entry.patch_png):
            frame = entry.patch_frame[number]
            name = patch_member(
                video,
                int(entry.window_start[frame]),
                int(entry.frame[frame]),
                int(entry.patch_row[number]),
                int(entry.patch_col[number]),
            )
            offsets[number], sizes[number] = shard.add(name, png)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            window_start=entry.window_start,
            frame=entry.frame,
            patch_frame=entry.patch_frame,
            patch_row=entry.patch_row,
            patch_col=entry.patch_col,
            patch_box=entry.patch_box,
            patch_offset=offsets,
            patch_size=sizes,
            pair_frame=entry.pair_frame,
            pair_anchor=entry.pair_anchor,
            pair_twin=entry.pair_twin,
            pair_mi=entry.pair_mi,
        )
        index = shard.add(f"{video}/{VIDEO_INDEX_NAME}", buffer.getvalue())
        analysis = shard.add(f"{video}/{ANALYSIS_NAME}", entry.analysis) if entry.analysis else None
        shard.commit({"video": video, "record": entry.record, "index": index, "analysis": analysis})
        self.committed.add(video)
        return entry.record

    def _shard(self) -> ShardAppender:
        """The shard to append to: the open one while it has room, else a new one.

        The first call of a run reopens this store's last shard (cutting off an interrupted
        commit), and seals it if it is full.
        """
        if self._appender is None:
            self._appender = self._reopen_last_shard()
        if self._appender is not None and self._appender.size < self.shard_bytes:
            return self._appender
        if self._appender is not None:
            self._appender.seal()
        shards = sorted((self.root / SHARDS_DIR).glob("*.tar"))
        number = int(shards[-1].stem) + 1 if shards else 0
        header = {"store_id": self.store_id, "shard": number}
        self._appender = ShardAppender(self.root / SHARDS_DIR / shard_name(number), header, None)
        return self._appender

    def _reopen_last_shard(self) -> ShardAppender | None:
        """This store's last shard, cut back to its last commit; None if the last is not ours."""
        shards = sorted((self.root / SHARDS_DIR).glob("*.tar"))
        header = read_header(shards[-1]) if shards else None
        if not header or header.get("store_id") != self.store_id:
            return None
        entries = read_journal(shards[-1].with_suffix(".log"))
        return ShardAppender(shards[-1], header, entries[-1]["end"] if entries else None)

    def finish(self, run: Mapping[str, Any], progress: bool = False) -> dict[str, Any]:
        """Writes the index, ``videos.json`` and, last, ``manifest.json`` (complete).

        Args:
            run: how the store was produced (e.g. shards, workers, merged_from).
            progress: show a tqdm bar while the videos' index rows are gathered.

        Returns:
            The manifest written.
        """
        # Seal the last shard; reopening it first cuts off an interrupted commit left at its end.
        appender = self._appender or self._reopen_last_shard()
        if appender is not None:
            appender.seal()
        self._appender = None
        journals = self._read_journals()
        shards, owners = [], {}
        for number, (path, entries) in enumerate(journals):
            header = read_header(path) or {}
            size = path.stat().st_size
            shards.append({"name": path.name, "bytes": size, "store_id": header.get("store_id")})
            for entry in entries:
                owners.setdefault(entry["video"], (number, path, entry))
        records = []
        tables = _IndexBuilder()
        for video in tqdm(sorted(owners), desc="index", unit="video", disable=not progress):
            number, path, entry = owners[video]
            analysis = entry.get("analysis")
            records.append(
                {**entry["record"], "analysis_member": [number, *analysis] if analysis else None}
            )
            if entry["record"]["status"] == "built":
                tables.add(len(records) - 1, number, _read_member(path, *entry["index"]))
        tables.write(self.root)
        built = [r for r in records if r["status"] == "built"]
        counts = {
            "videos": len(records),
            "videos_built": len(built),
            "videos_skipped": len(records) - len(built),
            **{key: sum(r.get(key, 0) for r in built) for key in _SUMMED_COUNTS},
            "pairs": tables.pairs,
            "patch_files": tables.patches,
            "frames": tables.frames,
            "shards": len(shards),
        }
        write_json_atomic(self.root / VIDEOS_NAME, records)
        for shard in shards:
            shard["crc32"] = _crc32(self.root / SHARDS_DIR / shard["name"])
        manifest = {
            "format_version": FORMAT_VERSION,
            "complete": True,
            "builder": {"name": "twin_builder", "version": builder_version()},
            "params": self.params,
            "selection": self.params.get("selection"),
            "store_id": self.store_id,
            "shards": shards,
            "counts": counts,
            "run": dict(run),
        }
        write_json_atomic(self.root / MANIFEST_NAME, manifest)
        return manifest


def _read_pinned(root: Path) -> dict[str, Any]:
    """``build_params.json``: the store's parameters and id."""
    path = root / BUILD_PARAMS_NAME
    try:
        pinned = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise TwinStoreError(root, f"{BUILD_PARAMS_NAME} is unreadable ({error})") from None
    if not isinstance(pinned, dict) or not {"params", "store_id"} <= pinned.keys():
        raise TwinStoreError(
            root,
            f"{BUILD_PARAMS_NAME} is not a format-{FORMAT_VERSION} store's: to build on a format-1 "
            "store, convert it first (twin-builder convert STORE --out NEW)",
        )
    return pinned


_SUMMED_COUNTS = ("windows", "patches", "tracked_patches", "valid_patches")


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    return ", ".join(f"{key}: store {old.get(key)!r} vs now {new.get(key)!r}" for key in changed)


def _read_member(path: Path, offset: int, size: int) -> dict[str, np.ndarray]:
    with path.open("rb") as handle:
        handle.seek(offset)
        with np.load(io.BytesIO(handle.read(size))) as arrays:
            return dict(arrays)


def _crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as handle:
        while chunk := handle.read(2**24):
            crc = zlib.crc32(chunk, crc)
    return crc


class _IndexBuilder:
    """Concatenates the videos' index rows into the store's tables, renumbering the ids."""

    def __init__(self) -> None:
        self.columns: dict[tuple[str, str], list[np.ndarray]] = {
            (table, column): [] for table, columns in INDEX_COLUMNS.items() for column in columns
        }
        self.frames = self.patches = self.pairs = 0

    def add(self, video: int, shard: int, arrays: Mapping[str, np.ndarray]) -> None:
        frames, patches = len(arrays["frame"]), len(arrays["patch_frame"])
        add = self.columns
        add["frames", "video"].append(np.full(frames, video))
        add["frames", "window_start"].append(arrays["window_start"])
        add["frames", "frame"].append(arrays["frame"])
        # first_patch: where each frame's patches start (the final end is appended in write()).
        starts = np.searchsorted(arrays["patch_frame"], np.arange(frames))
        add["frames", "first_patch"].append(self.patches + starts)
        add["patches", "shard"].append(np.full(patches, shard))
        add["patches", "offset"].append(arrays["patch_offset"])
        add["patches", "size"].append(arrays["patch_size"])
        add["patches", "row"].append(arrays["patch_row"])
        add["patches", "col"].append(arrays["patch_col"])
        add["patches", "box"].append(arrays["patch_box"].reshape(-1, 4))
        add["pairs", "frame"].append(self.frames + arrays["pair_frame"])
        add["pairs", "anchor"].append(self.patches + arrays["pair_anchor"])
        add["pairs", "twin"].append(self.patches + arrays["pair_twin"])
        add["pairs", "mi"].append(arrays["pair_mi"])
        self.frames += frames
        self.patches += patches
        self.pairs += len(arrays["pair_frame"])

    def write(self, root: Path) -> None:
        self.columns["frames", "first_patch"].append(np.array([self.patches]))
        (root / INDEX_DIR).mkdir(exist_ok=True)
        for (table, column), parts in self.columns.items():
            dtype = INDEX_COLUMNS[table][column]
            empty = np.zeros((0, 4) if column == "box" else 0, dtype=dtype)
            values = np.concatenate(parts).astype(dtype) if parts else empty
            path = index_path(root, table, column)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with tmp.open("wb") as handle:
                np.save(handle, values)
            os.replace(tmp, path)


def link_shards(writer: StoreWriter, store_root: Path, shard_names: Iterable[str]) -> int:
    """Hard-links (or copies, across file systems) another store's shards and journals into ``writer``'s.

    A shard already linked by an interrupted merge (same store id and number) is not linked again.

    Returns:
        How many shards were added.
    """
    target = writer.root / SHARDS_DIR
    present = {
        (header.get("store_id"), header.get("shard"))
        for header in map(read_header, sorted(target.glob("*.tar")))
        if header
    }
    added = 0
    for name in shard_names:
        source = store_root / SHARDS_DIR / name
        header = read_header(source) or {}
        if (header.get("store_id"), header.get("shard")) in present:
            continue
        existing = sorted(target.glob("*.tar"))
        number = int(existing[-1].stem) + 1 if existing else 0
        for suffix in (".log", ".tar"):  # the shard last: a shard without its journal holds nothing
            destination = (target / shard_name(number)).with_suffix(suffix)
            try:
                os.link(source.with_suffix(suffix), destination)
            except OSError:
                shutil.copyfile(source.with_suffix(suffix), destination)
        added += 1
    writer.committed = writer._committed_videos()
    return added


def merge_stores(stores: Sequence[Path], out: Path, progress: bool = False) -> dict[str, Any]:
    """Combines complete stores built with the same parameters into ``out``, without re-encoding.

    Format-2 stores' shards are hard-linked (copied across file systems) and their indexes
    concatenated; a format-1 store's PNG files are packed into new shards as they are (this is
    ``twin-builder convert``). A video in several stores is taken once, from the first. An
    interrupted merge resumes when run again.

    Args:
        stores: complete twin stores (each validated first).
        out: destination: a new directory, or an unfinished merge into it.
        progress: show tqdm bars.

    Returns:
        The merged store's manifest.

    Raises:
        TwinStoreError: a store is invalid, the parameters differ, or ``out`` is one of the inputs.
    """
    from twin_store.reader import open_store

    if not stores:
        raise TwinStoreError(out, "merge: no input store given")
    opened = [open_store(store) for store in stores]
    for store in opened:  # reading the records validates them (their ids become member names)
        if not store.videos:
            raise TwinStoreError(store.root, "lists no video")
    params = opened[0].manifest["params"]
    for store in opened[1:]:
        if store.manifest["params"] != params:
            raise TwinStoreError(
                store.root,
                f"built with other parameters than {opened[0].root} ({_diff(params, store.manifest['params'])})",
            )
    if any(store.root == out.expanduser().resolve() for store in opened):
        raise TwinStoreError(out, "merge: the output is one of the input stores")
    writer = StoreWriter(out, params)
    writer.begin()
    for store in opened:
        if store.format_version == FORMAT_VERSION:
            link_shards(writer, store.root, [shard["name"] for shard in store.manifest["shards"]])
            continue
        records = [r for r in store.videos if not writer.is_committed(r["id"])]
        for record in tqdm(
            records, desc=f"pack {store.root.name}", unit="video", disable=not progress
        ):
            number = next(i for i, r in enumerate(store.videos) if r is record)
            writer.commit(_video_entry(store, number, record))
    run_shards = sorted(
        {s for store in opened for s in store.manifest.get("run", {}).get("shards", [])}
    )
    return writer.finish(
        {"merged_from": [store.root.name for store in opened], "shards": run_shards}, progress
    )


def _video_entry(store: Any, number: int, record: dict[str, Any]) -> VideoEntry:
    """A video of an opened store as an entry (its PNG bytes as stored)."""
    if record.get("status") != "built":
        return skipped_entry(record)
    frames = np.flatnonzero(store.frames.video == number)
    first, end = store.frames.first_patch[frames], store.frames.first_patch[frames + 1]
    patches = np.concatenate([np.arange(a, b) for a, b in zip(first, end)]).astype(np.int64)
    local_patch = np.full(len(store.patches.row), -1, dtype=np.int64)
    local_patch[patches] = np.arange(len(patches))
    local_frame = np.full(len(store.frames.video), -1, dtype=np.int64)
    local_frame[frames] = np.arange(len(frames))
    pairs = np.flatnonzero(np.isin(store.pairs.frame, frames))
    analysis = store.root / VIDEOS_DIR / record["id"] / ANALYSIS_NAME
    return VideoEntry(
        record=record,
        window_start=store.frames.window_start[frames].astype(np.int64),
        frame=store.frames.frame[frames].astype(np.int64),
        patch_frame=np.repeat(np.arange(len(frames)), end - first),
        patch_row=store.patches.row[patches].astype(np.int64),
        patch_col=store.patches.col[patches].astype(np.int64),
        patch_box=store.patches.box[patches].astype(np.int64),
        patch_png=[store.read_patch(int(patch)).tobytes() for patch in patches],
        pair_frame=local_frame[store.pairs.frame[pairs]],
        pair_anchor=local_patch[store.pairs.anchor[pairs]],
        pair_twin=local_patch[store.pairs.twin[pairs]],
        pair_mi=store.pairs.mi[pairs].astype(np.float64),
        analysis=analysis.read_bytes() if analysis.is_file() else None,
    )


def write_format_1(store: Any, out: Path, progress: bool = False) -> dict[str, Any]:
    """Writes a store as a format-1 store: one PNG file per patch, ``pairs.csv``, the manifest.

    For tools that want loose files (``twin-builder convert --to 1``); training reads both formats.

    Args:
        store: an opened store (either format).
        out: a new directory.
        progress: show a tqdm bar.

    Returns:
        The manifest written.

    Raises:
        TwinStoreError: ``out`` exists and is not empty.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TwinStoreError(out, "exists and is not an empty directory")
    files = {}
    for patch in tqdm(
        range(len(store.patches.row)), desc="patches", unit="patch", disable=not progress
    ):
        member = store.patch_name(patch).split("/", 2)[-1] if store.shard_paths else None
        relative = f"{PATCHES_DIR}/{member}" if member else store.patch_name(patch)
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.read_patch(patch).tobytes())
        files[patch] = relative
    rows = []
    for number, row in enumerate(store.rows()):
        row["anchor_file"] = files[int(store.pairs.anchor[number])]
        row["twin_file"] = files[int(store.pairs.twin[number])]
        rows.append(row)
    with (out / PAIRS_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for record in store.videos:
        analysis = store.read_analysis(record["id"]) if record.get("status") == "built" else None
        if analysis is not None:
            folder = out / VIDEOS_DIR / record["id"]
            folder.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(folder / ANALYSIS_NAME, **analysis)
    counts = {
        key: value
        for key, value in store.manifest["counts"].items()
        if key not in ("frames", "shards")
    }
    manifest = {
        "format_version": FORMAT_1,
        "complete": True,
        "builder": store.manifest["builder"],
        "params": store.manifest["params"],
        "selection": store.manifest["selection"],
        "videos": [{k: v for k, v in r.items() if k != "analysis_member"} for r in store.videos],
        "counts": counts,
        "run": {**store.manifest.get("run", {}), "converted_from": store.root.name},
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
