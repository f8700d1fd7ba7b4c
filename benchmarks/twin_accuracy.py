"""How well ``twin-builder`` finds twins on synthetic videos with known twins.

Each clip is rendered by :func:`twin_builder.synthetic.make_twin_video`, written to an AVI file
and run through the builder's per-video pipeline with its default parameters (``--max-side 0``:
frames are kept at their size). Sets cross the frame geometry (grid, cell size in px, window)
with the background's contrast and the camera's random walk; each set has ``--seeds`` clips.
Per set and in all, three shares over every window of every clip:

- twin accuracy: ground-truth twin cells whose selected twin is their true twin;
- static rejected: cells whose object never moves that the builder marks invalid;
- moving kept: cells whose object moves that stay valid.

The figures are deterministic for a given builder, so comparing two builders means running this
script with each on the ``PYTHONPATH``. A Markdown table follows, ready to paste into a note.

Usage::

    python benchmarks/twin_accuracy.py [--seeds 8]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from twin_builder.pipeline import BuildParams, process_video
from twin_builder.synthetic import make_twin_video, write_video
from twin_builder.video import describe_source

FRAMES = 120
# (grid, cell px, window): 192 px frames at grid 4; 176 (carphone's width) and 144 px at grid 8;
# 384 px frames at grid 8.
GEOMETRIES = ((4, 48, 120), (8, 22, 60), (8, 18, 60), (8, 48, 60))
CONTRASTS = {"high": (0.0, 255.0), "low": (80.0, 176.0)}
CAMERA_WALKS_PX = (0.0, 6.0)


@dataclass
class Tally:
    """Hits and totals of the three shares, summed over windows."""

    twins_found: int = 0
    twins: int = 0
    static_rejected: int = 0
    static: int = 0
    moving_kept: int = 0
    moving: int = 0

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def shares(self) -> tuple[float, float, float]:
        """(twin accuracy, static rejected, moving kept)."""
        return (
            self.twins_found / self.twins,
            self.static_rejected / self.static,
            self.moving_kept / self.moving,
        )


def score_clip(
    grid: int, cell: int, window: int, levels: tuple[float, float], camera: float, seed: int
) -> Tally:
    """Renders one clip, builds its windows and counts the hits against its ground truth."""
    truth = make_twin_video(
        grid=grid,
        frames=FRAMES,
        cell=cell,
        seed=seed,
        camera_shift_px=camera,
        background_levels=levels,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = write_video(truth.frames, Path(folder) / "clip.avi")
        params = BuildParams(grid=grid, window=window, max_side=None)
        windows = process_video(describe_source(path), params).windows
    moving = truth.moving.reshape(-1)
    cells = {(r * grid + c): tr * grid + tc for (r, c), (tr, tc) in truth.twin_of.items()}
    tally = Tally()
    for analysed in windows:
        tally.twins_found += sum(analysed.twins[a] == b for a, b in cells.items())
        tally.twins += len(cells)
        tally.static_rejected += int((~analysed.valid[~moving]).sum())
        tally.static += int((~moving).sum())
        tally.moving_kept += int(analysed.valid[moving].sum())
        tally.moving += int(moving.sum())
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="clips per set (seeds 0..n-1)")
    args = parser.parse_args()

    sets = list(itertools.product(GEOMETRIES, CONTRASTS.items(), CAMERA_WALKS_PX))
    total = Tally()
    table = []
    with tqdm(total=len(sets) * args.seeds, desc="clips") as progress:
        for (grid, cell, window), (contrast, levels), camera in sets:
            tally = Tally()
            for seed in range(args.seeds):
                tally.add(score_clip(grid, cell, window, levels, camera, seed))
                progress.update()
            total.add(tally)
            side = grid * cell
            table.append((f"{grid} | {side} px | {window}", contrast, camera, tally))

    print(
        "\n| grid | frame | window | contrast | camera walk | twin cells | twin accuracy "
        "| static rejected | moving kept |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for label, contrast, camera, tally in [*table, ("all | | ", "", np.nan, total)]:
        accuracy, rejected, kept = tally.shares()
        walk = "" if np.isnan(camera) else f"{camera:g} px"
        print(
            f"| {label} | {contrast} | {walk} | {tally.twins} | {accuracy:.3f} | {rejected:.3f} "
            f"| {kept:.3f} |"
        )


if __name__ == "__main__":
    main()
