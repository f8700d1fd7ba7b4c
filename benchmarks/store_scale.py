"""The twin store at scale: format 1 (one PNG per patch) against format 2 (tar shards + npy index).

For each size (pairs), writes a synthetic store through the real writer and measures, for format
2 and format 1 side by side:

- ``write_s``: format 2: ``StoreWriter.commit`` of every video and ``finish`` (index, CRC-32 of
  the shards, manifest); format 1: ``twin_store.write_format_1`` from the format-2 store (the
  only format-1 writer there is: it reads each patch from the shards and writes one file each).
- ``bytes`` (allocated on disk, as ``du``) and ``files``.
- ``open_s``: ``open_store`` (open and validate) in a fresh process (forked from a server that
  has imported the code and never opened a store), after the store's pages are
  dropped from the page cache (``posix_fadvise(DONTNEED)`` after ``sync``; cold-ish: the virtual
  disk's host cache and the kernel's dentry/inode caches still hold what they hold);
  ``open_warm_s`` is a second ``open_store`` in the same process.
- ``rss_mb``: resident memory that ``open_store`` adds to that process (``VmRSS`` after minus
  before, MiB), split into ``rss_anon_mb`` (private, ``RssAnon``) and ``rss_file_mb`` (mapped
  file pages, ``RssFile``: the memory-mapped index, shared by every process that opens the store);
  ``peak_rss_mb``: the process's peak (``VmHWM``) minus its resident memory before opening.
- ``torch_pairs_per_s`` / ``dali_pairs_per_s``: ``infoaug_plugin.data.build_twin_loader``
  (``loader: torch`` or ``loader: dali`` with ``dali_device: cpu``) in a fresh process after
  dropping the store's pages: pairs per second over ``--batches`` batches after the first one,
  the best of ``--repeats`` such windows (other load on a shared machine only slows a window).
- ``first_batch_s`` (torch) and ``dali_first_batch_s``: from calling ``build_twin_loader`` (which
  opens and validates the store and builds the loader) to holding the first batch, the wait of a
  training process before its first step; ``torch_peak_rss_mb`` / ``dali_peak_rss_mb``: the
  most resident memory the loader added to that process (DataLoader workers are processes of
  their own and not counted; DALI's threads are), and ``<loader>_rss_anon_mb`` /
  ``<loader>_rss_file_mb`` its private and mapped-file part after the timed batches.

Synthetic store: videos of ``--pairs-per-video`` pairs on a 4 x 4 grid; every crop frame has 16
patches and up to 16 pairs (each cell an anchor once, its twin another cell of the frame), so
there is about one patch per pair. Patch images are ``--pool`` distinct 32 x 32 PNG textures,
encoded once and reused as the bytes of many patches. Targets (format 2 at 10^6 pairs): open and
validate under 1 s, under 50 MB added resident memory, at most one file per 10,000 pairs, loader
throughput no lower than format 1's at 10^4 pairs.

Usage::

    python benchmarks/store_scale.py [--sizes 10000 100000 1000000] [--formats 1 2]
        [--max-format1 N] [--json FILE] [--markdown FILE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from twin_store import StoreWriter, VideoEntry, open_store, write_format_1
from twin_store.shards import BLOCK

GRID = 4
CELLS = GRID * GRID
PATCH = 32
MiB = 2**20
# Targets of format 2 at TARGET_PAIRS pairs.
TARGET_PAIRS = 10**6
TARGET_OPEN_S = 1.0
TARGET_RSS_MB = 50.0
TARGET_PAIRS_PER_FILE = 10_000
BASELINE_PAIRS = 10**4
# Free space kept beyond a size's estimated needs.
DISK_MARGIN = 2 * 2**30
# Page size of format-1 files' allocation (each file takes whole blocks of this size).
FS_BLOCK = 4096
# Keys of every JSON object, in the order of the issue, then the extra measurements.
KEYS = (
    "pairs",
    "format",
    "write_s",
    "bytes",
    "files",
    "open_s",
    "rss_mb",
    "torch_pairs_per_s",
    "dali_pairs_per_s",
    "first_batch_s",
    "rss_anon_mb",
    "rss_file_mb",
    "peak_rss_mb",
    "open_warm_s",
    "apparent_bytes",
    "dali_first_batch_s",
    "torch_peak_rss_mb",
    "dali_peak_rss_mb",
    "torch_rss_anon_mb",
    "torch_rss_file_mb",
    "dali_rss_anon_mb",
    "dali_rss_file_mb",
    "skipped",
)
PARAMS = {"grid": GRID, "window": 8, "estimator": "synthetic", "seed": 0, "selection": "mi"}


# ---------------------------------------------------------------------------------------------
# Synthetic stores


def patch_pool(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct PNG-encoded 32 x 32 textures (smooth colour fields with pixel noise)."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (GRID, GRID, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize((PATCH, PATCH), Image.BILINEAR)).astype(np.int16)
        pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        pool.append(buffer.getvalue())
    return pool


def video_entry(
    number: int, n_pairs: int, pool: list[bytes], rng: np.random.Generator
) -> VideoEntry:
    """A synthetic video of ``n_pairs`` pairs: 16 patches per crop frame, each cell an anchor once.

    Args:
        number: the video's number (its id is ``video<number>``).
        n_pairs: pairs of the video.
        pool: PNG bytes the patches are drawn from.
        rng: random draws of twins, images and MI.

    Returns:
        The entry, as ``twin-builder build`` would commit it.
    """
    frames = -(-n_pairs // CELLS)
    cells = np.arange(CELLS)
    pair_frame = np.arange(n_pairs) // CELLS
    pair_anchor = np.arange(n_pairs) % CELLS
    pair_twin = (pair_anchor + 1 + rng.integers(CELLS - 1, size=n_pairs)) % CELLS
    patch_row, patch_col = np.tile(cells // GRID, frames), np.tile(cells % GRID, frames)
    box = np.stack(
        [patch_col * PATCH, patch_row * PATCH, (patch_col + 1) * PATCH, (patch_row + 1) * PATCH],
        axis=1,
    )
    patches = frames * CELLS
    record = {
        "id": f"video{number:07d}",
        "name": f"video{number:07d}.mp4",
        "size": 0,
        "sha256": f"{number:064x}",
        "status": "built",
        "windows": frames,
        "patches": patches,
        "tracked_patches": patches,
        "valid_patches": patches,
        "pairs": n_pairs,
        "patch_files": patches,
    }
    starts = 8 * np.arange(frames, dtype=np.int64)
    return VideoEntry(
        record=record,
        window_start=starts,
        frame=starts + 4,
        patch_frame=np.repeat(np.arange(frames), CELLS),
        patch_row=patch_row,
        patch_col=patch_col,
        patch_box=box,
        patch_png=[pool[i] for i in rng.integers(len(pool), size=patches)],
        pair_frame=pair_frame,
        pair_anchor=pair_anchor + CELLS * pair_frame,
        pair_twin=pair_twin + CELLS * pair_frame,
        pair_mi=rng.random(n_pairs),
    )


def video_sizes(pairs: int, per_video: int) -> list[int]:
    """Pairs of each video: ``per_video`` each, the last one the remainder."""
    sizes = [per_video] * (pairs // per_video)
    return sizes + ([pairs % per_video] if pairs % per_video else [])


def write_format_2(
    root: Path, pairs: int, per_video: int, pool: list[bytes], shard_bytes: int
) -> float:
    """Writes a format-2 store of ``pairs`` pairs through ``StoreWriter``.

    Returns:
        Seconds spent in the writer (commits and ``finish``; making the synthetic entries excluded).
    """
    rng = np.random.default_rng(pairs)
    writer = StoreWriter(root, PARAMS, shard_bytes=shard_bytes)
    writer.begin()
    spent = 0.0
    sizes = video_sizes(pairs, per_video)
    for number, n_pairs in enumerate(tqdm(sizes, desc=f"write format 2 ({pairs})", unit="video")):
        entry = video_entry(number, n_pairs, pool, rng)
        started = time.perf_counter()
        writer.commit(entry)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    writer.finish({"shards": ["0/1"], "benchmark": "store_scale"}, progress=True)
    return spent + time.perf_counter() - started


def convert_to_format_1(format_2: Path, root: Path) -> float:
    """Writes the format-2 store as format 1 with ``write_format_1``; returns its seconds."""
    started = time.perf_counter()
    write_format_1(open_store(format_2), root, progress=True)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Measurements


def store_files(root: Path) -> Iterator[os.DirEntry]:
    """Every regular file under ``root``."""
    folders = [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield entry


def disk_usage(root: Path) -> dict[str, int]:
    """``files``, ``bytes`` (allocated blocks, as ``du``) and ``apparent_bytes`` of a store."""
    files = allocated = apparent = 0
    for entry in store_files(root):
        stat = entry.stat(follow_symlinks=False)
        files += 1
        allocated += stat.st_blocks * 512
        apparent += stat.st_size
    return {"files": files, "bytes": allocated, "apparent_bytes": apparent}


def drop_page_cache(root: Path, files: int) -> None:
    """Writes back dirty pages, then asks the kernel to drop the store's file pages from its cache."""
    os.sync()
    for entry in tqdm(store_files(root), total=files, desc="drop cache", unit="file", leave=False):
        descriptor = os.open(entry.path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def memory_status() -> dict[str, float]:
    """``VmRSS``, ``RssAnon``, ``RssFile`` and ``VmHWM`` of this process, in MiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values


def probe_open(store: Path) -> dict[str, Any]:
    """Opens and validates ``store`` in this (fresh) process; time and memory it adds."""
    before = memory_status()
    started = time.perf_counter()
    opened = open_store(store)
    open_s = time.perf_counter() - started
    after = memory_status()
    started = time.perf_counter()
    open_store(store)
    return {
        "pairs": len(opened),
        "open_s": open_s,
        "open_warm_s": time.perf_counter() - started,
        "rss_mb": after["VmRSS"] - before["VmRSS"],
        "rss_anon_mb": after["RssAnon"] - before["RssAnon"],
        "rss_file_mb": after["RssFile"] - before["RssFile"],
        "peak_rss_mb": after["VmHWM"] - before["VmRSS"],
    }


def probe_loader(
    store: Path, loader: str, batches: int, repeats: int, batch_size: int, workers: int
) -> dict:
    """First-batch latency and pairs/s of a twin loader in this (fresh) process.

    Args:
        store: the twin store.
        loader: ``torch`` or ``dali`` (CPU).
        batches: batches of a timed window, after the first batch (epochs follow each other).
        repeats: timed windows, one after the other; the fastest counts.
        batch_size: pairs per batch.
        workers: DataLoader workers / DALI threads.

    Returns:
        ``first_batch_s``, ``pairs_per_s``, ``peak_rss_mb`` (the most resident memory the loader
        added to this process, MiB) and, after the timed batches, the private (``rss_anon_mb``)
        and mapped-file (``rss_file_mb``) memory it added.
    """
    from omegaconf import OmegaConf

    from infoaug_plugin.data import build_twin_loader

    # This process was started by the forkserver, which made that the default start method;
    # DataLoader workers fork, as they do under a training process on Linux.
    multiprocessing.set_start_method("fork", force=True)
    before = memory_status()
    cfg = OmegaConf.create(
        {
            "twins": str(store),
            "loader": loader,
            "dali_device": "cpu",
            "batch_size": batch_size,
            "num_workers": workers,
            "image_size": PATCH,
        }
    )
    started = time.perf_counter()
    twin_loader = build_twin_loader(cfg)

    def stream() -> Iterator[list]:
        while True:
            yield from twin_loader

    batches_in = stream()
    next(batches_in)
    first_batch_s = time.perf_counter() - started
    pairs_per_s = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        pairs = sum(len(next(batches_in)[0]) for _ in range(batches))
        pairs_per_s = max(pairs_per_s, pairs / (time.perf_counter() - started))
    after = memory_status()
    return {
        "first_batch_s": first_batch_s,
        "pairs_per_s": pairs_per_s,
        "peak_rss_mb": after["VmHWM"] - before["VmRSS"],
        "rss_anon_mb": after["RssAnon"] - before["RssAnon"],
        "rss_file_mb": after["RssFile"] - before["RssFile"],
    }


def _run_and_send(connection: Connection, probe: Callable[..., dict], args: tuple) -> None:
    """Body of a probe process: runs ``probe(*args)`` and sends back its result or traceback."""
    try:
        connection.send((True, probe(*args)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent
        connection.send((False, traceback.format_exc()))
    finally:
        connection.close()


class FreshProcesses:
    """Runs each probe in a new process forked from a server that has only imported the code.

    The server (multiprocessing's ``forkserver``) imports the plugin's loaders once, so a probe
    does not pay those imports, yet starts without any store opened or cached in it.
    """

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["infoaug_plugin.data", "twin_store"])

    def run(self, probe: Callable[..., dict], *args: Any) -> dict[str, Any]:
        """``probe(*args)`` in a fresh process.

        Raises:
            RuntimeError: the probe failed (with its traceback) or its process died.
        """
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_run_and_send, args=(sender, probe, args))
        process.start()
        sender.close()
        try:
            ok, result = receiver.recv()
        except EOFError:
            ok, result = False, "the process died before answering"
        process.join()
        if not ok:
            raise RuntimeError(f"probe {probe.__name__}{args} failed:\n{result}")
        return result


def measure(root: Path, processes: FreshProcesses, args: argparse.Namespace) -> dict[str, Any]:
    """Size, open and loader measurements of a written store (see the module docstring)."""
    result: dict[str, Any] = disk_usage(root)
    drop_page_cache(root, result["files"])
    result.update(processes.run(probe_open, root))
    for loader in args.loaders:
        drop_page_cache(root, result["files"])
        probe = processes.run(
            probe_loader, root, loader, args.batches, args.repeats, args.batch_size, args.workers
        )
        for key, value in probe.items():
            result[f"{loader}_{key}"] = value
    result["first_batch_s"] = result.pop("torch_first_batch_s", None)
    return result


# ---------------------------------------------------------------------------------------------
# One size


def needed_bytes(pairs: int, store_format: int, png_bytes: float) -> int:
    """Estimated disk space of a store (about one patch per pair, see the module docstring)."""
    patches = pairs + CELLS * math.ceil(pairs / CELLS)
    if store_format == 2:
        member = BLOCK + BLOCK * math.ceil(png_bytes / BLOCK)
        return int(patches * (member + 5 * 8) + pairs * 32)
    return int(patches * FS_BLOCK * math.ceil(png_bytes / FS_BLOCK) + pairs * 300)


def skipped(pairs: int, store_format: int, reason: str) -> dict[str, Any]:
    """The JSON object of a (size, format) that was not run."""
    print(f"skipped: {pairs} pairs, format {store_format}: {reason}")
    return {
        **{key: None for key in KEYS},
        "pairs": pairs,
        "format": store_format,
        "skipped": reason,
    }


def run_size(
    pairs: int,
    formats: list[int],
    pool: list[bytes],
    workdir: Path,
    processes: FreshProcesses,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Writes and measures the stores of one size; returns one object per format asked for.

    Format 1 is converted from the format-2 store, so the format-2 store is written whenever
    format 1 is asked for (and measured only if format 2 is asked for too).
    """
    png_bytes = float(np.mean([len(png) for png in pool]))
    reasons = {}
    if 1 in formats and pairs > args.max_format1:
        reasons[1] = f"format 1 above --max-format1 {args.max_format1} pairs"
    wanted = [f for f in formats if f not in reasons]
    # The format-2 store is always written (format 1 is converted from it); both exist at once.
    need = needed_bytes(pairs, 2, png_bytes) + (
        needed_bytes(pairs, 1, png_bytes) if 1 in wanted else 0
    )
    free = shutil.disk_usage(workdir).free
    if wanted and need + DISK_MARGIN > free:
        for f in wanted:
            reasons[f] = (
                f"needs about {need / 2**30:.1f} GiB + {DISK_MARGIN / 2**30:.0f} GiB margin, "
                f"{free / 2**30:.1f} GiB free in {workdir}"
            )
        wanted = []
    results = {f: skipped(pairs, f, reason) for f, reason in reasons.items()}
    if not wanted:
        return [results[f] for f in formats]
    format_2 = workdir / f"store-{pairs}-format2"
    format_1 = workdir / f"store-{pairs}-format1"
    try:
        write_s = write_format_2(format_2, pairs, args.pairs_per_video, pool, args.shard_mb * MiB)
        if 2 in wanted:
            results[2] = {
                "pairs": pairs,
                "format": 2,
                "write_s": write_s,
                **measure(format_2, processes, args),
            }
        if 1 in wanted:
            write_s = convert_to_format_1(format_2, format_1)
            if not args.keep:
                shutil.rmtree(format_2)
            results[1] = {
                "pairs": pairs,
                "format": 1,
                "write_s": write_s,
                **measure(format_1, processes, args),
            }
    finally:
        if not args.keep:
            for root in (format_1, format_2):
                shutil.rmtree(root, ignore_errors=True)
    for result in results.values():
        for key in KEYS:
            result.setdefault(key, None)
        result["skipped"] = result.get("skipped")
    return [results[f] for f in formats]


# ---------------------------------------------------------------------------------------------
# Report


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per (size, format); skipped ones say why."""
    header = (
        "| pairs | format | write s | disk MB | files | open s (cold) | open s (warm) "
        "| RSS added MB (anon / file) | peak MB | torch pairs/s | DALI pairs/s "
        "| first batch s (torch / DALI) |"
    )
    lines = [header, "|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|"]
    for r in results:
        if r["skipped"]:
            lines.append(f"| {r['pairs']:,} | {r['format']} | skipped: {r['skipped']} |")
            continue
        lines.append(
            f"| {r['pairs']:,} | {r['format']} | {_cell(r['write_s'], 1)} "
            f"| {_cell(r['bytes'] / MiB, 1)} | {_cell(r['files'])} | {_cell(r['open_s'], 3)} "
            f"| {_cell(r['open_warm_s'], 3)} | {_cell(r['rss_mb'], 1)} "
            f"({_cell(r['rss_anon_mb'], 1)} / {_cell(r['rss_file_mb'], 1)}) "
            f"| {_cell(r['peak_rss_mb'], 1)} | {_cell(r['torch_pairs_per_s'], 0)} "
            f"| {_cell(r['dali_pairs_per_s'], 0)} | {_cell(r['first_batch_s'])} / "
            f"{_cell(r['dali_first_batch_s'])} |"
        )
    return "\n".join(lines)


def target_lines(results: list[dict[str, Any]]) -> list[str]:
    """Whether format 2 meets the targets, at 10^6 pairs or, if not run, at its largest size."""
    done_2 = [r for r in results if r["format"] == 2 and not r["skipped"]]
    if not done_2:
        return ["targets: no format-2 store was measured"]
    at = max(done_2, key=lambda r: r["pairs"])
    where = f"{at['pairs']:,} pairs"
    if at["pairs"] < TARGET_PAIRS:
        where += f" (the targets are for {TARGET_PAIRS:,}; larger sizes were not run)"
    lines = [f"targets, format 2 at {where}:"]

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "NOT met")

    lines.append(
        f"- open + validate {at['open_s']:.3f} s (cold-ish) < {TARGET_OPEN_S:g} s: "
        f"{verdict(at['open_s'] < TARGET_OPEN_S)}"
    )
    lines.append(
        f"- added resident memory {at['rss_mb']:.1f} MB (private {at['rss_anon_mb']:.1f}, "
        f"shared file pages {at['rss_file_mb']:.1f}) < {TARGET_RSS_MB:g} MB: "
        f"{verdict(at['rss_mb'] < TARGET_RSS_MB)}"
    )
    per_file = at["pairs"] / at["files"]
    lines.append(
        f"- {at['files']} files, one per {per_file:,.0f} pairs (at most one per "
        f"{TARGET_PAIRS_PER_FILE:,}): {verdict(per_file >= TARGET_PAIRS_PER_FILE)}"
    )
    baseline = next(
        (
            r
            for r in results
            if r["format"] == 1 and r["pairs"] == BASELINE_PAIRS and not r["skipped"]
        ),
        None,
    )
    for loader in ("torch", "dali"):
        rate = at[f"{loader}_pairs_per_s"]
        reference = baseline[f"{loader}_pairs_per_s"] if baseline else None
        met = None if rate is None or reference is None else rate >= reference
        against = f"format 1 at {BASELINE_PAIRS:,} pairs: {_cell(reference, 0)} pairs/s"
        ratio = f" (ratio {rate / reference:.2f})" if met is not None else ""
        lines.append(
            f"- {loader} loader {_cell(rate, 0)} pairs/s >= {against}{ratio}: {verdict(met)}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--formats", type=int, nargs="+", choices=(1, 2), default=[1, 2])
    parser.add_argument(
        "--max-format1",
        type=int,
        default=10**9,
        help="skip format 1 above this many pairs (10^6 files take long on a small machine)",
    )
    parser.add_argument("--json", type=Path, help="write the results here (a list of objects)")
    parser.add_argument("--markdown", type=Path, help="write the table and targets here")
    parser.add_argument(
        "--workdir", type=Path, help="where stores are written (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--pairs-per-video", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=256, help="distinct patch images")
    parser.add_argument("--shard-mb", type=int, default=256, help="shard size of format 2")
    parser.add_argument(
        "--loaders", nargs="*", choices=("torch", "dali"), default=["torch", "dali"]
    )
    parser.add_argument("--batches", type=int, default=50, help="batches of a timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows; the best counts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / DALI threads")
    args = parser.parse_args()

    pool = patch_pool(args.pool)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="store_scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"synthetic stores: {args.pairs_per_video} pairs per video, {GRID}x{GRID} grid (16 patches "
        f"per crop frame), {len(pool)} distinct {PATCH}x{PATCH} PNGs of "
        f"{np.mean([len(p) for p in pool]):.0f} bytes on average; format 2 shards of "
        f"{args.shard_mb} MiB; format 1 written by twin_store.write_format_1 from the format-2 "
        f"store; loaders: batch {args.batch_size}, {args.workers} workers/threads, "
        f"best of {args.repeats} timed windows of {args.batches} batches after the first, "
        f"{PATCH} px crops, dali_device cpu; "
        f"page cache of the store dropped before each measuring process"
    )
    processes = FreshProcesses()
    results = []
    try:
        for pairs in args.sizes:
            results.extend(run_size(pairs, args.formats, pool, workdir, processes, args))
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report = "\n".join([markdown_table(results), "", *target_lines(results)])
    print(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
