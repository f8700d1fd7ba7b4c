"""Patch tracking: representative points on a G x G grid, followed by pyramidal Lucas-Kanade.

Each window's first frame is sliced into a G x G grid of patches; each patch gets one (or several)
Shi-Tomasi corners inside its cell, or the cell centre when the cell has no corner (flagged as
low-texture). Points are tracked frame to frame with pyramidal Lucas-Kanade and checked
forward-backward; a patch whose point is lost in any frame of the window is invalid for the window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Seed corners: candidates per representative point, and their least quality relative to the
# cell's strongest corner.
CANDIDATES_PER_POINT = 8
CORNER_QUALITY = 0.05
# Tracker settings are tuned on frames of REFERENCE_SIZE (longer, shorter side in px: the default
# --max-side on 16:9 video); frames smaller on both sides get a proportionally smaller search
# window, never below MIN_WIN_SIZE (the seed corners' block size: fewer pixels give an unstable fit).
REFERENCE_SIZE = (640, 360)
MIN_WIN_SIZE = 7


@dataclass(frozen=True)
class LucasKanade:
    """Pyramidal Lucas-Kanade with a forward-backward check.

    Attributes:
        win_size: side of the search window in pixels.
        max_level: pyramid levels above the base image.
        fb_threshold: largest forward-backward error in pixels for a point to be kept.
        iterations: most iterations per pyramid level.
        epsilon: iterations stop once the update is below this, in pixels.
    """

    win_size: int = 21
    max_level: int = 3
    fb_threshold: float = 1.0
    iterations: int = 30
    epsilon: float = 0.01

    def _flow(
        self, source: np.ndarray, target: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            source,
            target,
            points.reshape(-1, 1, 2),
            None,
            winSize=(self.win_size, self.win_size),
            maxLevel=self.max_level,
            criteria=(
                cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT,
                self.iterations,
                self.epsilon,
            ),
        )
        return moved.reshape(-1, 2), status.reshape(-1).astype(bool)

    def for_frame(self, height: int, width: int) -> LucasKanade:
        """These settings for frames of ``height`` x ``width`` pixels.

        On frames smaller than the reference on both sides, the window shrinks with the frame (by
        the larger of the two side ratios) so that it covers about the same part of the scene: a
        21 px window spans a whole grid cell of a 176 x 144 frame at grid 8, and costs twice the
        tracking time of the scaled 9 px one. The pyramid's reach, about ``win_size / 2 *
        2**max_level`` px, keeps its share of the frame too, so a window held at MIN_WIN_SIZE
        gets fewer levels. Other frames (640 x 272 included) keep these settings.

        Args:
            height: frame height in pixels.
            width: frame width in pixels.

        Returns:
            The settings with ``win_size`` (odd) and ``max_level`` scaled, or these settings.
        """
        longer, shorter = REFERENCE_SIZE
        scale = max(max(height, width) / longer, min(height, width) / shorter)
        if scale >= 1:
            return self
        win_size = min(self.win_size, max(MIN_WIN_SIZE, round(self.win_size * scale) | 1))
        reach = self.win_size / 2 * 2**self.max_level * scale
        max_level = min(self.max_level, max(0, round(math.log2(reach / (win_size / 2)))))
        return dataclasses.replace(self, win_size=win_size, max_level=max_level)

    def step(
        self,
        previous: np.ndarray,
        current: np.ndarray,
        points: np.ndarray,
        check_backward: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Moves points from ``previous`` to ``current``.

        Args:
            previous: (H, W) uint8 grey frame the points lie in.
            current: (H, W) uint8 grey next frame.
            points: (N, 2) float32 (x, y) pixel positions in ``previous``.
            check_backward: also track back and require a forward-backward error < fb_threshold.

        Returns:
            ``(moved, ok)``: (N, 2) float32 positions in ``current`` and (N,) bool, True where the
            point was tracked (inside the frame, and passing the forward-backward check).
        """
        points = np.ascontiguousarray(points, dtype=np.float32)
        if len(points) == 0:
            return points.copy(), np.zeros(0, dtype=bool)
        moved, ok = self._flow(previous, current, points)
        if check_backward:
            returned, ok_back = self._flow(current, previous, moved)
            fb_error = np.linalg.norm(returned - points, axis=1)
            ok &= ok_back & (fb_error < self.fb_threshold)
        height, width = current.shape
        inside = (
            (moved[:, 0] >= 0)
            & (moved[:, 0] <= width - 1)
            & (moved[:, 1] >= 0)
            & (moved[:, 1] <= height - 1)
        )
        return moved, ok & inside


@dataclass
class GridSeeds:
    """Representative points of the G x G patches of a frame.

    Attributes:
        points: (G*G, m, 2) float32 (x, y) pixel positions, patches row-major from the top-left.
        textured: (G*G, m) bool, False where no corner was found and the cell centre stands in.
        cell_boxes: (G*G, 4) int (x0, y0, x1, y1) cell bounds in pixels (half-open).
    """

    points: np.ndarray
    textured: np.ndarray
    cell_boxes: np.ndarray


def grid_cell_boxes(height: int, width: int, grid: int) -> np.ndarray:
    """Bounds of the G x G cells of a frame.

    Args:
        height: frame height in pixels.
        width: frame width in pixels.
        grid: cells per side (G).

    Returns:
        (G*G, 4) int (x0, y0, x1, y1), half-open, row-major from the top-left.
    """
    ys = np.linspace(0, height, grid + 1).round().astype(int)
    xs = np.linspace(0, width, grid + 1).round().astype(int)
    return np.array(
        [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]
    )


def seed_grid_points(gray: np.ndarray, grid: int, points_per_cell: int = 1) -> GridSeeds:
    """Picks the representative point(s) of every grid cell: good Shi-Tomasi corners near its centre.

    Among the cell's corners of at least ``CORNER_QUALITY`` times its strongest one, the ones
    nearest the cell centre are taken: the strongest corner of a cell often lies on its border or
    on an object's outline, where a tracking window straddles two motions and the crop centred on
    the point would mostly show the neighbouring cell.

    Args:
        gray: (H, W) uint8 grey first frame of the window.
        grid: cells per side (G).
        points_per_cell: corners per cell (m); missing corners fall back to the cell centre.

    Returns:
        The seeds of the G*G patches.
    """
    boxes = grid_cell_boxes(*gray.shape, grid)
    points = np.zeros((len(boxes), points_per_cell, 2), dtype=np.float32)
    textured = np.zeros((len(boxes), points_per_cell), dtype=bool)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        centre = np.float32(((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2))
        points[index] = centre
        corners = cv2.goodFeaturesToTrack(
            gray[y0:y1, x0:x1],
            maxCorners=CANDIDATES_PER_POINT * points_per_cell,
            qualityLevel=CORNER_QUALITY,
            minDistance=3,
            blockSize=7,
        )
        if corners is not None:
            found = corners.reshape(-1, 2) + (x0, y0)
            nearest = found[
                np.argsort(np.linalg.norm(found - centre, axis=1), kind="stable")[:points_per_cell]
            ]
            points[index, : len(nearest)] = nearest
            textured[index, : len(nearest)] = True
    return GridSeeds(points, textured, boxes)


def track_window(
    grays: Sequence[np.ndarray], seeds: GridSeeds, tracker: LucasKanade
) -> tuple[np.ndarray, np.ndarray]:
    """Tracks the seeds of every patch through the frames of one window.

    Args:
        grays: T (H, W) uint8 grey frames of the window; the seeds lie in ``grays[0]``.
        seeds: the patch seeds, (P, m, 2) points.
        tracker: the Lucas-Kanade settings.

    Returns:
        ``(positions, valid)``: (T, P, m, 2) float32 point positions (frozen after a point is
        lost) and (P,) bool, True where every point of the patch was tracked through all T frames.
    """
    patches, per_patch, _ = seeds.points.shape
    positions = np.repeat(seeds.points.reshape(1, -1, 2), len(grays), axis=0)
    alive = np.ones(patches * per_patch, dtype=bool)
    for t in range(1, len(grays)):
        positions[t] = positions[t - 1]
        indices = np.flatnonzero(alive)
        if len(indices) == 0:
            break
        moved, ok = tracker.step(grays[t - 1], grays[t], positions[t - 1, indices])
        positions[t, indices] = moved
        alive[indices[~ok]] = False
    valid = alive.reshape(patches, per_patch).all(axis=1)
    return positions.reshape(len(grays), patches, per_patch, 2), valid
