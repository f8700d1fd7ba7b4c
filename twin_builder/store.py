"""Writing twin stores: per-video atomic commits, resumable builds, final manifest, merging.

Layout written here (the reader's contract is ``store_format``)::

    STORE/
      build_params.json        the parameters this store is built with (written first)
      .staging/<video_id>/     a video being written; deleted when a build starts
      patches/<video_id>/      committed patch images
      videos/<video_id>/       committed per-video files: pairs.csv, analysis.npz, video.json
      pairs.csv                all committed videos' rows, by video id (written at the end)
      manifest.json            complete=true, written last

A video is committed when its ``videos/<video_id>/video.json`` exists: the builder writes the video
into ``.staging/<video_id>/``, renames its two folders into place, then writes ``video.json``
atomically. Anything of a video without ``video.json`` is an interrupted commit and is redone.
``manifest.json`` is removed before a build or merge changes anything and rewritten (atomically,
``complete: true``) only after ``pairs.csv`` is final, so an interrupted run never reads as
complete.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from twin_builder.pipeline import VideoOutput
from twin_builder.store_format import (
    ANALYSIS_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PAIRS_NAME,
    PATCHES_DIR,
    VIDEO_RECORD_NAME,
    VIDEOS_DIR,
    read_pairs_csv,
    write_json_atomic,
    write_pairs_csv,
)
from twin_builder.video import VideoSource

BUILD_PARAMS_NAME = "build_params.json"
STAGING_DIR = ".staging"
# zlib level of the patch PNGs: level 1 writes several times faster than the default 3 and the
# files of 64 px photo crops are only slightly larger.
PNG_COMPRESSION = 1


class StoreError(Exception):
    """A store that cannot be built into or merged (names the store and the problem)."""


def builder_version() -> str:
    """The installed ``infoaug`` distribution's version (the builder ships with it)."""
    try:
        return metadata.version("infoaug")
    except metadata.PackageNotFoundError:
        return "unknown"


def source_record(source: VideoSource) -> dict:
    """The manifest entry of a source before processing (``id``, ``name``, ``size``, ``sha256``)."""
    return {
        "id": source.video_id,
        "name": source.path.name,
        "size": source.size_bytes,
        "sha256": source.sha256,
    }


class TwinStoreWriter:
    """A twin store being built: knows its parameters and which videos are committed.

    Args:
        root: the store directory (created if missing).
        params: ``BuildParams.to_dict()`` of the build; an existing store must have the same.

    Raises:
        StoreError: the directory holds a store built with other parameters, or is a non-store
            non-empty directory.
    """

    def __init__(self, root: Path, params: dict) -> None:
        self.root = root
        self.params = params
        params_path = root / BUILD_PARAMS_NAME
        if params_path.exists():
            existing = json.loads(params_path.read_text())
            if existing != params:
                changed = sorted(
                    key
                    for key in existing.keys() | params.keys()
                    if existing.get(key) != params.get(key)
                )
                details = ", ".join(
                    f"{key}: store {existing.get(key)!r} vs now {params.get(key)!r}"
                    for key in changed
                )
                raise StoreError(
                    f"{root}: store was built with other parameters ({details}); "
                    "use a new --out directory or the same parameters to resume"
                )
        elif root.exists() and any(root.iterdir()):
            raise StoreError(f"{root}: not empty and not a twin store (no {BUILD_PARAMS_NAME})")
        root.mkdir(parents=True, exist_ok=True)
        if not params_path.exists():
            write_json_atomic(params_path, params)

    def begin(self) -> None:
        """Marks the store incomplete and removes leftovers of an interrupted run."""
        (self.root / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(self.root / STAGING_DIR, ignore_errors=True)

    def record_path(self, video_id: str) -> Path:
        """``videos/<video_id>/video.json``: the commit marker and record of a video."""
        return self.root / VIDEOS_DIR / video_id / VIDEO_RECORD_NAME

    def is_committed(self, video_id: str) -> bool:
        """Whether the video is already in the store (built or recorded as skipped)."""
        return self.record_path(video_id).exists()

    def commit_video(self, source: VideoSource, output: VideoOutput) -> dict:
        """Writes one processed video and commits it atomically.

        Args:
            source: the video.
            output: what the pipeline produced for it.

        Returns:
            The video's manifest record (status ``built``).
        """
        video_id = source.video_id
        staging = self.root / STAGING_DIR / video_id
        shutil.rmtree(staging, ignore_errors=True)
        staged_patches = staging / PATCHES_DIR
        staged_video = staging / VIDEOS_DIR
        staged_patches.mkdir(parents=True)
        staged_video.mkdir(parents=True)
        for relative, image in output.patches.items():
            name = Path(relative).name
            if not cv2.imwrite(
                str(staged_patches / name), image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
            ):
                raise StoreError(f"{staged_patches / name}: PNG could not be written")
        write_pairs_csv(staged_video / PAIRS_NAME, output.rows)
        _write_analysis(staged_video / ANALYSIS_NAME, output)
        record = {
            **source_record(source),
            "status": "built",
            "skip_reason": None,
            "detail": None,
            "windows": len(output.windows),
            "patches": int(sum(len(w.valid) for w in output.windows)),
            "tracked_patches": int(sum(w.tracked.sum() for w in output.windows)),
            "valid_patches": int(sum(w.valid.sum() for w in output.windows)),
            "pairs": len(output.rows),
            "patch_files": len(output.patches),
        }
        self._install(video_id, staging)
        write_json_atomic(self.record_path(video_id), record)
        return record

    def record_skip(self, source: VideoSource, reason: str, detail: str) -> dict:
        """Commits a video that could not be used, with why.

        Returns:
            The video's manifest record (status ``skipped``).
        """
        record = {
            **source_record(source),
            "status": "skipped",
            "skip_reason": reason,
            "detail": detail,
            "windows": 0,
            "patches": 0,
            "tracked_patches": 0,
            "valid_patches": 0,
            "pairs": 0,
            "patch_files": 0,
        }
        staging = self.root / STAGING_DIR / source.video_id
        shutil.rmtree(staging, ignore_errors=True)
        (staging / VIDEOS_DIR).mkdir(parents=True)
        self._install(source.video_id, staging)
        write_json_atomic(self.record_path(source.video_id), record)
        return record

    def _install(self, video_id: str, staging: Path) -> None:
        """Moves a staged video's folders into place, replacing leftovers of an interrupted commit."""
        for kind in (PATCHES_DIR, VIDEOS_DIR):
            target = self.root / kind / video_id
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            if (staging / kind).exists():
                (staging / kind).rename(target)
        shutil.rmtree(staging, ignore_errors=True)

    def copy_video(self, store: Path, record: dict) -> None:
        """Commits a video of another complete store (same parameters) into this one.

        Args:
            store: the source store.
            record: the video's manifest record in that store.
        """
        video_id = record["id"]
        staging = self.root / STAGING_DIR / video_id
        shutil.rmtree(staging, ignore_errors=True)
        for kind in (PATCHES_DIR, VIDEOS_DIR):
            if (store / kind / video_id).exists():
                shutil.copytree(store / kind / video_id, staging / kind)
        (staging / VIDEOS_DIR / VIDEO_RECORD_NAME).unlink(missing_ok=True)
        self._install(video_id, staging)
        write_json_atomic(self.record_path(video_id), record)

    def committed_records(self) -> list[dict]:
        """Records of every committed video, sorted by video id."""
        paths = sorted((self.root / VIDEOS_DIR).glob(f"*/{VIDEO_RECORD_NAME}"))
        return [json.loads(path.read_text()) for path in paths]

    def finish(self, run: dict) -> dict:
        """Writes ``pairs.csv`` from every committed video, then ``manifest.json`` (complete).

        Args:
            run: how the store was produced (e.g. shards, workers), recorded under ``run``.

        Returns:
            The manifest written.
        """
        records = self.committed_records()

        def rows():
            for record in records:
                if record["status"] == "built":
                    yield from read_pairs_csv(self.root / VIDEOS_DIR / record["id"] / PAIRS_NAME)

        pair_count = write_pairs_csv(self.root / PAIRS_NAME, rows())
        built = [r for r in records if r["status"] == "built"]
        counts = {
            "videos": len(records),
            "videos_built": len(built),
            "videos_skipped": len(records) - len(built),
            "windows": sum(r["windows"] for r in built),
            "patches": sum(r["patches"] for r in built),
            "tracked_patches": sum(r["tracked_patches"] for r in built),
            "valid_patches": sum(r["valid_patches"] for r in built),
            "patch_files": sum(r["patch_files"] for r in built),
            "pairs": pair_count,
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "complete": True,
            "builder": {"name": "twin_builder", "version": builder_version()},
            "params": self.params,
            "selection": self.params["selection"],
            "videos": records,
            "counts": counts,
            "run": run,
        }
        write_json_atomic(self.root / MANIFEST_NAME, manifest)
        return manifest


def _write_analysis(path: Path, output: VideoOutput) -> None:
    """Writes the per-window arrays ``inspect``/``show`` read (keys in ``store_format``)."""
    windows = output.windows
    with path.open("wb") as handle:
        np.savez_compressed(
            handle,
            window_start=np.array([w.start for w in windows], dtype=np.int64),
            centres=np.stack([w.centres for w in windows]).astype(np.float32),
            textured=np.stack([w.textured for w in windows]),
            tracked=np.stack([w.tracked for w in windows]),
            valid=np.stack([w.valid for w in windows]),
            mi=np.stack([w.mi for w in windows]).astype(np.float32),
            twins=np.stack([w.twins for w in windows]).astype(np.int64),
            thumbnails=output.thumbnails,
            scale=np.float64(output.scale),
            processed_size=np.array(output.processed_size, dtype=np.int64),
        )


def read_manifest(store: Path) -> dict:
    """Reads a complete store's manifest.

    Raises:
        StoreError: no manifest, or not complete.
    """
    path = store / MANIFEST_NAME
    if not path.exists():
        raise StoreError(
            f"{store}: no {MANIFEST_NAME}: not a twin store, or its build did not finish"
        )
    manifest = json.loads(path.read_text())
    if not manifest.get("complete"):
        raise StoreError(f"{path}: store is not complete")
    return manifest


def merge_stores(stores: list[Path], out: Path) -> dict:
    """Combines complete stores built with the same parameters (e.g. shards) into ``out``.

    A video present in several stores is taken once (same id = same content and parameters).

    Args:
        stores: complete twin stores.
        out: destination; a new directory, or a store with the same parameters.

    Returns:
        The merged store's manifest.

    Raises:
        StoreError: a store is incomplete, or the parameters differ.
    """
    if not stores:
        raise StoreError("merge: no input store given")
    manifests = [read_manifest(store) for store in stores]
    params = manifests[0]["params"]
    for store, manifest in zip(stores[1:], manifests[1:]):
        if manifest["params"] != params:
            changed = sorted(
                k
                for k in params.keys() | manifest["params"].keys()
                if params.get(k) != manifest["params"].get(k)
            )
            raise StoreError(
                f"{store}: built with other parameters than {stores[0]} (differ: {', '.join(changed)})"
            )
    writer = TwinStoreWriter(out, params)
    writer.begin()
    for store, manifest in zip(stores, manifests):
        for record in manifest["videos"]:
            video_id = record["id"]
            if writer.is_committed(video_id):
                continue
            writer.copy_video(store, record)
    shards = sorted(
        {shard for manifest in manifests for shard in manifest.get("run", {}).get("shards", [])}
    )
    return writer.finish({"merged_from": [str(store.name) for store in stores], "shards": shards})
