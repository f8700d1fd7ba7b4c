"""Building a store from input videos: sharding, resuming, a process pool over videos.

Each video is processed and committed by one worker (videos never share files), so the pool only
passes small manifest records back; the main process writes ``pairs.csv`` and the manifest at the
end.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numba
from tqdm import tqdm

from twin_builder.depth import load_depth_provider
from twin_builder.pipeline import BuildParams, process_video
from twin_builder.store import TwinStoreWriter
from twin_builder.video import VideoInputError, VideoSource, discover_inputs


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


def build_video(source: VideoSource, store_root: Path, params: BuildParams) -> dict:
    """Processes one video and commits it (or its skip record) to the store.

    Args:
        source: the video.
        store_root: the store directory (already opened by the main process).
        params: build parameters.

    Returns:
        The video's manifest record.
    """
    writer = TwinStoreWriter(store_root, params.to_dict())
    depth = load_depth_provider(params.depth_provider) if params.depth_provider else None
    try:
        output = process_video(source, params, depth)
    except VideoInputError as error:
        return writer.record_skip(source, error.reason.value, error.detail)
    return writer.commit_video(source, output)


def _init_worker() -> None:
    # Videos already run in parallel; OpenCV's and numba's own threads would oversubscribe the cores.
    cv2.setNumThreads(1)
    numba.set_num_threads(1)


def build_store(
    inputs: list[Path],
    out: Path,
    params: BuildParams,
    workers: int = 1,
    shard: Shard = Shard(),
    progress: bool = True,
) -> BuildReport:
    """Builds (or resumes) a twin store from videos.

    Args:
        inputs: video files, folders of videos, folders of frames.
        out: the store directory.
        params: build parameters (must equal those of an existing store at ``out``).
        workers: processes working on videos in parallel (1: in this process).
        shard: the share of the input videos this run builds.
        progress: show a tqdm bar and per-video messages on stderr.

    Returns:
        What was built, skipped and resumed, and the manifest.

    Raises:
        InputDiscoveryError: an input is missing or holds no video.
        StoreError: ``out`` holds a store with other parameters, or something else.
    """
    sources = [source for source in discover_inputs(inputs) if shard.holds(source)]
    writer = TwinStoreWriter(out, params.to_dict())
    writer.begin()
    resumed = [s.video_id for s in sources if writer.is_committed(s.video_id)]
    pending = [s for s in sources if not writer.is_committed(s.video_id)]
    built: list[dict] = []
    skipped: list[dict] = []
    bar = tqdm(
        total=len(pending), desc="videos", unit="video", disable=not progress, file=sys.stderr
    )

    def report(record: dict) -> None:
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
            report(build_video(source, out, params))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            futures = [pool.submit(build_video, source, out, params) for source in pending]
            for future in as_completed(futures):
                report(future.result())
    bar.close()
    records = writer.committed_records()
    if not any(record["pairs"] for record in records):
        return BuildReport(None, built, skipped, resumed)
    manifest = writer.finish({"shards": [str(shard)], "workers": workers})
    return BuildReport(manifest, built, skipped, resumed)
