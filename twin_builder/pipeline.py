"""The per-video pipeline: decode, split, track, compensate, estimate, select, crop.

Each stage lives in its own module and works on arrays; this module wires them for one video and
returns everything the store needs (pair rows, patch images, per-window analysis), without
touching the disk apart from reading the video.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from twin_builder.camera import (
    BACKGROUND_TRACKER,
    CameraModel,
    estimate_camera_motion,
    residual_motion,
)
from twin_builder.depth import DepthProvider, depth_displacements
from twin_builder.mi import motion_entropy_mask, mutual_information_matrix
from twin_builder.tracking import LucasKanade, seed_grid_points, track_window
from twin_builder.video import (
    DEFAULT_CUT_THRESHOLD,
    SkipReason,
    VideoInputError,
    VideoReader,
    VideoSource,
    WindowFrames,
)
from twin_store.format import PATCHES_DIR

SELECTIONS = ("mi", "random")
FEATURES = ("displacement", "position")
ESTIMATORS = ("ksg", "3kl")
THUMBNAIL_SIDE = 320
# Smallest grid cell side in processed pixels: a corner detector needs a 7 px block inside it.
MIN_CELL_SIDE = 8


@dataclass(frozen=True)
class BuildParams:
    """Every parameter that changes what a build writes (all recorded in the manifest).

    Attributes:
        grid: patches per side of the grid (G).
        window: frames per tracking window (T).
        stride: frames between window starts in a shot (None: ``window``, no overlap).
        points_per_cell: representative points tracked per patch (m); motion samples are 2m-D.
        fb_threshold: forward-backward error limit in pixels.
        camera: camera-motion model removed from the tracks.
        features: the motion samples MI is estimated on: ``displacement`` (per-frame
            camera-compensated displacement, the default) or ``position`` (camera-compensated
            position relative to the window's first frame, i.e. the running sum of displacements).
        estimator: ``ksg`` (KSG-1) or ``3kl``.
        k: k-th neighbour of the estimator.
        theiler: Theiler window in frames.
        selection: ``mi`` (twin = valid patch of highest MI) or ``random`` (the random baseline).
        mi_floor: with ``mi`` selection, the MI (nats) a twin must exceed; None keeps every argmax.
        max_side: longest side of the processed frames in pixels (None: original size).
        cut_threshold: shot cut threshold, mean absolute grey-level difference (0-255).
        crops_per_window: frames per window at which crops are taken, evenly spread.
        patch_size: side of the square crop in processed pixels (None: the grid cell's shorter side).
        crop_size: side of the written patch images in pixels.
        depth_provider: ``module:factory`` of a depth provider (None: 2-D motion).
        seed: seeds the estimator's jitter and the random selection.
    """

    grid: int = 8
    window: int = 60
    stride: int | None = None
    points_per_cell: int = 1
    fb_threshold: float = 1.0
    camera: str = CameraModel.SIMILARITY.value
    features: str = "displacement"
    estimator: str = "ksg"
    k: int = 3
    theiler: int = 3
    selection: str = "mi"
    mi_floor: float | None = None
    max_side: int | None = 640
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    crops_per_window: int = 1
    patch_size: int | None = None
    crop_size: int = 64
    depth_provider: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.grid < 2:
            problems.append(f"grid must be >= 2, got {self.grid}")
        # A window gives window - 1 motion samples; the estimator needs k + 2 * theiler + 1.
        if self.window - 1 < self.k + 2 * self.theiler + 1:
            problems.append(
                f"window must be >= k + 2*theiler + 2 = {self.k + 2 * self.theiler + 2} frames, "
                f"got {self.window}"
            )
        if self.stride is not None and self.stride < 1:
            problems.append(f"stride must be >= 1, got {self.stride}")
        if self.points_per_cell < 1:
            problems.append(f"points-per-cell must be >= 1, got {self.points_per_cell}")
        if self.selection not in SELECTIONS:
            problems.append(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.features not in FEATURES:
            problems.append(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.estimator not in ESTIMATORS:
            problems.append(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.camera not in {model.value for model in CameraModel}:
            problems.append(
                f"camera must be one of {[m.value for m in CameraModel]}, got {self.camera!r}"
            )
        if not 1 <= self.crops_per_window <= self.window:
            problems.append(f"crops-per-window must be in 1..window, got {self.crops_per_window}")
        if self.k < 1 or self.theiler < 0:
            problems.append(
                f"k must be >= 1 and theiler >= 0, got k={self.k}, theiler={self.theiler}"
            )
        for name in ("max_side", "patch_size", "crop_size"):
            value = getattr(self, name)
            if value is not None and value < 8:
                problems.append(f"{name.replace('_', '-')} must be >= 8 pixels, got {value}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def window_stride(self) -> int:
        """The stride actually used (``window`` when ``stride`` is None)."""
        return self.stride or self.window

    def to_dict(self) -> dict:
        """The parameters as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class WindowAnalysis:
    """What one window found (kept for ``inspect`` and ``show``).

    Attributes:
        start: first frame of the window.
        centres: (P, 2) float32 patch centres (mean of its seeds) on the first frame, processed px.
        textured: (P,) bool, False where a seed fell back to the cell centre (no corner found).
        tracked: (P,) bool, the patch's track survived the window.
        valid: (P,) bool, tracked and with enough motion entropy (the MI candidates).
        mi: (P, P) float32 MI matrix in nats, NaN where a patch is not valid.
        twins: (P,) int, the selected twin of each anchor, -1 for none.
    """

    start: int
    centres: np.ndarray
    textured: np.ndarray
    tracked: np.ndarray
    valid: np.ndarray
    mi: np.ndarray
    twins: np.ndarray


@dataclass
class VideoOutput:
    """Everything the store writes for one video.

    Attributes:
        rows: pairs.csv rows (``ALL_COLUMNS`` keys), in window, frame, anchor order.
        patches: patch images, relative store path -> (crop_size, crop_size, 3) uint8 BGR.
        windows: per-window analysis.
        thumbnails: (W, h, w, 3) uint8 RGB first frame of every window, longest side THUMBNAIL_SIDE.
        scale: processed pixels per original pixel.
        processed_size: (width, height) of the processed frames.
    """

    rows: list[dict] = field(default_factory=list)
    patches: dict[str, np.ndarray] = field(default_factory=dict)
    windows: list[WindowAnalysis] = field(default_factory=list)
    thumbnails: np.ndarray | None = None
    scale: float = 1.0
    processed_size: tuple[int, int] = (0, 0)


def window_seed(seed: int, video_id: str, start: int) -> int:
    """A per-window seed independent of processing order (so shards and workers agree)."""
    return int(
        np.random.SeedSequence([seed, zlib.crc32(video_id.encode()), start]).generate_state(1)[0]
    )


def select_twins(
    mi: np.ndarray, valid: np.ndarray, selection: str, mi_floor: float | None, seed: int
) -> np.ndarray:
    """Picks every valid patch's twin.

    Args:
        mi: (P, P) MI matrix in nats (only entries between valid patches are read).
        valid: (P,) bool candidates.
        selection: ``mi``: the valid other patch of highest MI (above ``mi_floor`` when given);
            ``random``: a uniformly drawn valid other patch.
        mi_floor: see ``selection``.
        seed: seed of the random draw.

    Returns:
        (P,) int twin index, -1 where the patch is invalid or has no acceptable twin.
    """
    twins = np.full(len(valid), -1)
    candidates = np.flatnonzero(valid)
    if len(candidates) < 2:
        return twins
    if selection == "random":
        rng = np.random.default_rng(seed)
        for anchor in candidates:
            twins[anchor] = rng.choice(candidates[candidates != anchor])
        return twins
    sub = mi[np.ix_(candidates, candidates)].astype(np.float64)
    np.fill_diagonal(sub, -np.inf)
    best = sub.argmax(axis=1)
    accepted = sub[np.arange(len(candidates)), best] > (-np.inf if mi_floor is None else mi_floor)
    twins[candidates[accepted]] = candidates[best[accepted]]
    return twins


def crop_offsets(window: int, crops_per_window: int) -> np.ndarray:
    """Window-relative frame offsets at which crops are taken: evenly spread, first frame first."""
    return np.unique(np.linspace(0, window - 1, crops_per_window).round().astype(int))


def crop_box(
    centre: np.ndarray, patch_size: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """A ``patch_size`` square around ``centre``, shifted to lie inside the frame.

    Args:
        centre: (2,) (x, y) in processed pixels.
        patch_size: side in processed pixels.
        width: frame width.
        height: frame height.

    Returns:
        (x0, y0, x1, y1) half-open integer box (clipped when the frame is smaller than the patch).
    """
    # Plain Python arithmetic: np.clip on scalars costs more than the crop itself.
    x0 = min(max(round(centre[0] - patch_size / 2), 0), max(width - patch_size, 0))
    y0 = min(max(round(centre[1] - patch_size / 2), 0), max(height - patch_size, 0))
    return x0, y0, min(x0 + patch_size, width), min(y0 + patch_size, height)


def motion_samples(
    positions: np.ndarray,
    transforms: np.ndarray,
    frames: Sequence[np.ndarray],
    depth: DepthProvider | None,
) -> np.ndarray:
    """Per-patch motion samples: camera-compensated displacement (and depth change) per frame.

    Args:
        positions: (T, P, m, 2) tracked positions in processed pixels.
        transforms: (T-1, 3, 3) camera transforms of the window.
        frames: T (H, W, 3) uint8 BGR frames (read only with a depth provider).
        depth: optional depth provider.

    Returns:
        (P, T-1, m*d) float64 samples in px per frame, d = 2 (dx, dy) or 3 (dx, dy, dz).
    """
    motion = residual_motion(positions, transforms)
    if depth is not None:
        motion = np.concatenate(
            [motion, depth_displacements(depth, frames, positions)[..., None]], axis=-1
        )
    steps, patches = motion.shape[:2]
    return motion.transpose(1, 0, 2, 3).reshape(patches, steps, -1)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB copy of a BGR frame, longest side at most THUMBNAIL_SIDE."""
    height, width = frame.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(height, width))
    small = cv2.resize(
        frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
    )
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def analyse_window(
    window: WindowFrames, params: BuildParams, seed: int, depth: DepthProvider | None
) -> tuple[WindowAnalysis, np.ndarray]:
    """Tracks, compensates camera motion, estimates MI and selects twins in one window.

    Args:
        window: the window's frames.
        params: build parameters.
        seed: the window's seed.
        depth: optional depth provider.

    Returns:
        ``(analysis, positions)`` with positions (T, P, m, 2) the tracked points.
    """
    seeds = seed_grid_points(window.grays[0], params.grid, params.points_per_cell)
    height, width = window.grays[0].shape
    tracker = LucasKanade(fb_threshold=params.fb_threshold).for_frame(height, width)
    positions, tracked = track_window(window.grays, seeds, tracker)
    transforms = estimate_camera_motion(
        window.grays, CameraModel(params.camera), BACKGROUND_TRACKER.for_frame(height, width)
    )
    samples = motion_samples(positions, transforms, window.frames, depth)
    # "Enough entropy" is judged on the displacements: a still patch's running sum of tracking
    # noise wanders and would pass a spread test on positions.
    valid = tracked & motion_entropy_mask(samples, k=params.k)
    if params.features == "position":
        samples = np.cumsum(samples, axis=1)
    mi = np.full((len(valid), len(valid)), np.nan, dtype=np.float32)
    candidates = np.flatnonzero(valid)
    if len(candidates) >= 2:
        mi[np.ix_(candidates, candidates)] = mutual_information_matrix(
            samples[candidates],
            estimator=params.estimator,
            k=params.k,
            theiler=params.theiler,
            seed=seed,
        )
    twins = select_twins(mi, valid, params.selection, params.mi_floor, seed)
    textured = seeds.textured.all(axis=1)
    analysis = WindowAnalysis(
        window.start, seeds.points.mean(axis=1), textured, tracked, valid, mi, twins
    )
    return analysis, positions


def process_video(
    source: VideoSource, params: BuildParams, depth: DepthProvider | None = None
) -> VideoOutput:
    """Runs the whole pipeline on one video.

    Args:
        source: the video.
        params: build parameters.
        depth: optional depth provider (its spec is ``params.depth_provider``).

    Returns:
        The pairs, patch images and analysis of every window.

    Raises:
        VideoInputError: the video is unreadable, corrupt, empty, too short, static, all black, or
            too small for the grid.
    """
    reader = VideoReader(source, params.max_side, params.cut_threshold)
    output = VideoOutput()
    offsets = crop_offsets(params.window, params.crops_per_window)
    thumbnails = []
    for window in reader.windows(params.window, params.window_stride):
        width, height = output.processed_size = reader.size
        output.scale = reader.scale
        if min(width, height) // params.grid < MIN_CELL_SIDE:
            raise VideoInputError(
                source.path,
                SkipReason.TOO_SMALL,
                f"{width}x{height} px frames give grid cells under {MIN_CELL_SIDE} px "
                f"with --grid {params.grid}",
            )
        seed = window_seed(params.seed, source.video_id, window.start)
        analysis, positions = analyse_window(window, params, seed, depth)
        output.windows.append(analysis)
        patch_size = params.patch_size or min(height, width) // params.grid
        _add_pairs(
            output,
            source.video_id,
            window,
            analysis,
            positions.mean(axis=2),
            offsets,
            patch_size,
            params,
        )
        thumbnails.append(_thumbnail(window.frames[0]))
    reader.check_content(params.window)
    output.thumbnails = np.stack(thumbnails)
    return output


def _add_pairs(
    output: VideoOutput,
    video_id: str,
    window: WindowFrames,
    analysis: WindowAnalysis,
    tracked_centres: np.ndarray,
    offsets: np.ndarray,
    patch_size: int,
    params: BuildParams,
) -> None:
    """Appends one row per (anchor, crop frame) and the crops it references.

    ``tracked_centres`` is (T, P, 2): each patch's mean tracked point per frame of the window.
    """
    width, height = output.processed_size
    grid = params.grid
    anchors = np.flatnonzero(analysis.twins >= 0)
    for offset in offsets:
        frame = analysis.start + int(offset)
        files, boxes = {}, {}
        for patch in np.unique(np.concatenate([anchors, analysis.twins[anchors]])):
            row, col = divmod(int(patch), grid)
            box = crop_box(tracked_centres[offset, patch], patch_size, width, height)
            x0, y0, x1, y1 = box
            crop = cv2.resize(
                window.frames[offset][y0:y1, x0:x1],
                (params.crop_size, params.crop_size),
                interpolation=cv2.INTER_AREA,
            )
            relative = (
                f"{PATCHES_DIR}/{video_id}/w{analysis.start:06d}_f{frame:06d}_r{row}c{col}.png"
            )
            output.patches[relative] = crop
            files[patch] = relative
            boxes[patch] = " ".join(str(round(v / output.scale)) for v in box)
        for anchor in anchors:
            twin = analysis.twins[anchor]
            anchor_row, anchor_col = divmod(int(anchor), grid)
            twin_row, twin_col = divmod(int(twin), grid)
            mi = "" if params.selection == "random" else f"{analysis.mi[anchor, twin]:.6f}"
            output.rows.append(
                {
                    "pair_id": f"{video_id}:w{analysis.start}:f{frame}:r{anchor_row}c{anchor_col}",
                    "video": video_id,
                    "window_start": analysis.start,
                    "anchor_row": anchor_row,
                    "anchor_col": anchor_col,
                    "twin_row": twin_row,
                    "twin_col": twin_col,
                    "mi": mi,
                    "anchor_file": files[anchor],
                    "twin_file": files[twin],
                    "frame": frame,
                    "anchor_box": boxes[anchor],
                    "twin_box": boxes[twin],
                }
            )
