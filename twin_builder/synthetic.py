"""Synthetic videos with ground-truth twin patches, for end-to-end tests of the twin builder.

A G x G grid of cells lies on a blurred-noise background (high-contrast by default). Each cell
holds one textured square (half a cell wide, or a caller's image) that moves inside its own cell,
so objects never overlap:

- twin pairs share one latent motion (a sum of random sinusoids per axis), mapped through the
  identity or a 90-degree rotation, each plus independent noise;
- the other moving cells follow independent latents;
- about a quarter of the cells are static (the twin builder must reject them as "not enough
  entropy");
- an optional camera random walk translates the whole frame.

Objects are drawn at sub-pixel positions (bilinear ``cv2.warpAffine`` of each object), so the
motion is not quantised to whole pixels (MI_TRACKING_DATA.md 1.6 and 3.3).

Frames use OpenCV's BGR channel order, as ``cv2.VideoCapture`` and ``cv2.imread`` return them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

Cell = tuple[int, int]


@dataclass(frozen=True)
class SyntheticVideo:
    """A rendered synthetic video and its ground truth.

    Attributes:
        frames: (T, H, W, 3) uint8 frames, BGR, with ``H = W = grid * cell``.
        twin_of: ``{(row, col): (row, col)}`` for every cell that has a twin, both directions.
        moving: (G, G) bool, True where the cell's object moves (relative to the scene).
        centres: (T, G, G, 2) float64 object centres ``(x, y)`` in frame pixels (camera included).
        camera: (T, 2) float64 camera translation ``(x, y)`` in px applied to frame t.
        cell: side of a grid cell in px.
    """

    frames: np.ndarray
    twin_of: dict[Cell, Cell]
    moving: np.ndarray
    centres: np.ndarray
    camera: np.ndarray
    cell: int

    @property
    def grid(self) -> int:
        """G, the number of cells along each side."""
        return self.moving.shape[0]


def make_twin_video(
    grid: int = 4,
    frames: int = 120,
    cell: int = 48,
    seed: int = 0,
    camera_shift_px: float = 0.0,
    amplitude_px: float | None = None,
    twin_noise_px: float = 0.3,
    static_fraction: float = 0.25,
    n_pairs: int | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    textures: Sequence[np.ndarray] | None = None,
    background_levels: tuple[float, float] = (0.0, 255.0),
) -> SyntheticVideo:
    """Renders a video whose moving cells include twin pairs with shared latent motion.

    Args:
        grid: G, cells per side (the frame is ``grid * cell`` px square).
        frames: T, number of frames.
        cell: side of a cell in px (>= 16).
        seed: seed of everything random (background, textures, motions, pairing).
        camera_shift_px: largest excursion of the camera random walk, in px (0: static camera).
        amplitude_px: largest excursion of an object from its cell centre per axis, in px;
            ``None`` uses ``cell / 6`` (8 px for 48 px cells). Must keep the object in its cell.
        twin_noise_px: std of the independent per-frame position noise added to each twin, px.
        static_fraction: share of cells whose object never moves (rounded to whole cells).
        n_pairs: number of twin pairs; ``None`` uses a third of the moving cells (rounded down,
            at least 1 when two cells move). The remaining moving cells are independent.
        pairs: the twin pairs as row-major cell indices ``(a, b)``, instead of drawing them
            (``n_pairs`` must then be None); the static cells are drawn among the other cells.
        textures: one object image per cell (row-major), all of one square size that fits the
            cell: (s, s, 3) float32 BGR (opaque) or (s, s, 4) with colour premultiplied by the
            alpha in the last channel (0-1). ``None`` draws textured squares half a cell wide.
        background_levels: grey levels (low, high) the background noise is stretched to.

    Returns:
        The frames and their ground truth.

    Raises:
        ValueError: on parameters that cannot give a valid video.
    """
    if grid < 2 or frames < 2 or cell < 16:
        raise ValueError(f"need grid >= 2, frames >= 2, cell >= 16; got {grid}, {frames}, {cell}")
    if not 0.0 <= static_fraction <= 1.0:
        raise ValueError(f"static_fraction must be in [0, 1]; got {static_fraction}")
    n_cells = grid * grid
    if textures is not None:
        textures = [np.asarray(texture, dtype=np.float32) for texture in textures]
        shapes = {texture.shape for texture in textures}
        if len(textures) != n_cells or len(shapes) != 1:
            raise ValueError(f"textures must be {n_cells} images of one shape; got shapes {shapes}")
        shape = shapes.pop()
        if len(shape) != 3 or shape[0] != shape[1] or shape[2] not in (3, 4):
            raise ValueError(f"textures must be (s, s, 3) or (s, s, 4); got {shape}")
    size = cell // 2 if textures is None else textures[0].shape[0]
    amplitude = cell / 6 if amplitude_px is None else float(amplitude_px)
    if not 0 <= amplitude <= (cell - size) / 2 - 1:
        raise ValueError(
            f"amplitude_px={amplitude} would let a {size} px object leave its {cell} px cell"
        )
    rng = np.random.default_rng(seed)
    n_static = int(round(static_fraction * n_cells))
    n_moving = n_cells - n_static
    if pairs is not None:
        if n_pairs is not None:
            raise ValueError("give n_pairs or pairs, not both")
        n_pairs = len(pairs)
    if n_pairs is None:
        n_pairs = max(n_moving // 3, 1 if n_moving >= 2 else 0)
    if not 0 <= 2 * n_pairs <= n_moving:
        raise ValueError(f"n_pairs={n_pairs} needs {2 * n_pairs} moving cells; have {n_moving}")

    if pairs is None:
        order = rng.permutation(n_cells)
    else:
        paired = np.asarray(pairs, dtype=np.int64).reshape(-1)
        if len(np.unique(paired)) != len(paired) or not np.all((0 <= paired) & (paired < n_cells)):
            raise ValueError(f"pairs must name distinct cells in 0..{n_cells - 1}; got {pairs}")
        others = rng.permutation(np.setdiff1d(np.arange(n_cells), paired))
        # The static cells come first in ``order``, then the pairs, then the independent movers.
        order = np.concatenate([others[:n_static], paired, others[n_static:]])
    moving = np.zeros(n_cells, dtype=bool)
    moving[order[n_static:]] = True
    twin_of: dict[Cell, Cell] = {}
    offsets = np.zeros((frames, n_cells, 2))
    movers = order[n_static:]
    for p in range(n_pairs):
        a, b = movers[2 * p], movers[2 * p + 1]
        latent = _latent_motion(rng, frames, amplitude)
        # A 90-degree rotation keeps the excursion per axis within the amplitude.
        mapped = latent[:, ::-1] * np.array([-1.0, 1.0]) if rng.random() < 0.5 else latent
        offsets[:, a] = latent + twin_noise_px * rng.standard_normal((frames, 2))
        offsets[:, b] = mapped + twin_noise_px * rng.standard_normal((frames, 2))
        twin_of[divmod(int(a), grid)] = divmod(int(b), grid)
        twin_of[divmod(int(b), grid)] = divmod(int(a), grid)
    for c in movers[2 * n_pairs :]:
        offsets[:, c] = _latent_motion(rng, frames, amplitude)
    limit = (cell - size) / 2 - 1
    offsets = np.clip(offsets, -limit, limit)

    camera = _camera_walk(rng, frames, camera_shift_px)
    rows, cols = np.divmod(np.arange(n_cells), grid)
    base = np.stack([cols, rows], axis=-1) * cell + cell / 2.0
    centres = base[None] + offsets + camera[:, None, :]

    margin = int(np.ceil(camera_shift_px)) + 2
    background = _background(rng, grid * cell + 2 * margin, background_levels)
    if textures is None:
        textures = [_texture(rng, size) for _ in range(n_cells)]
    video = np.empty((frames, grid * cell, grid * cell, 3), dtype=np.uint8)
    for t in range(frames):
        shift = np.float64([[1, 0, camera[t, 0] - margin], [0, 1, camera[t, 1] - margin]])
        frame = cv2.warpAffine(
            background,
            shift,
            (grid * cell, grid * cell),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        ).astype(np.float32)
        for c in range(n_cells):
            _paste(frame, textures[c], centres[t, c])
        video[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    return SyntheticVideo(
        frames=video,
        twin_of=twin_of,
        moving=moving.reshape(grid, grid),
        centres=centres.reshape(frames, grid, grid, 2),
        camera=camera,
        cell=cell,
    )


def write_video(frames: np.ndarray, path: str | Path, fps: float = 25.0) -> Path:
    """Writes (T, H, W, 3) uint8 BGR frames to a video file that OpenCV can read back.

    The codec follows the suffix: ``.avi`` uses Motion-JPEG, ``.mp4`` uses MPEG-4 part 2.

    Args:
        frames: (T, H, W, 3) uint8 frames, BGR.
        path: destination file, ``.avi`` or ``.mp4``.
        fps: frame rate stored in the file.

    Returns:
        The path written.

    Raises:
        ValueError: on a bad frame array or suffix.
        OSError: if OpenCV cannot open a writer for ``path``.
    """
    frames = _check_frames(frames)
    path = Path(path)
    codecs = {".avi": "MJPG", ".mp4": "mp4v"}
    if path.suffix.lower() not in codecs:
        raise ValueError(f"{path}: unsupported video suffix; use one of {sorted(codecs)}")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*codecs[path.suffix.lower()]), fps, (width, height)
    )
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV could not open a video writer")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_frame_folder(
    frames: np.ndarray, directory: str | Path, prefix: str = "frame_"
) -> list[Path]:
    """Writes (T, H, W, 3) uint8 BGR frames as PNG files whose names sort in frame order.

    Args:
        frames: (T, H, W, 3) uint8 frames, BGR.
        directory: destination folder (created if missing).
        prefix: file name prefix; files are ``<prefix><t:06d>.png``.

    Returns:
        The paths written, in frame order.

    Raises:
        ValueError: on a bad frame array.
        OSError: if a file cannot be written.
    """
    frames = _check_frames(frames)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        path = directory / f"{prefix}{t:06d}.png"
        if not cv2.imwrite(str(path), frame):
            raise OSError(f"{path}: OpenCV could not write the frame")
        paths.append(path)
    return paths


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            "frames must be a non-empty (T, H, W, 3) uint8 array; "
            f"got {frames.shape} {frames.dtype}"
        )
    return frames


def _latent_motion(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """(T, 2) sum of three random sinusoids per axis, scaled so its largest |value| is amplitude."""
    t = np.arange(frames)[:, None, None]
    periods = rng.uniform(8.0, 40.0, size=(1, 3, 2))
    phases = rng.uniform(0.0, 2 * np.pi, size=(1, 3, 2))
    weights = rng.uniform(0.5, 1.0, size=(1, 3, 2))
    motion = (weights * np.sin(2 * np.pi * t / periods + phases)).sum(axis=1)
    return motion * (amplitude / np.abs(motion).max(axis=0).clip(min=1e-9))


def _camera_walk(rng: np.random.Generator, frames: int, max_shift: float) -> np.ndarray:
    """(T, 2) random-walk translation starting at 0 whose largest |value| is max_shift px."""
    if max_shift <= 0:
        return np.zeros((frames, 2))
    walk = np.cumsum(rng.standard_normal((frames, 2)), axis=0)
    walk -= walk[0]
    return walk * (max_shift / max(np.abs(walk).max(), 1e-9))


def _background(
    rng: np.random.Generator, side: int, levels: tuple[float, float] = (0.0, 255.0)
) -> np.ndarray:
    """(side, side, 3) float32 grey blurred noise stretched to the grey ``levels`` (low, high).

    Grey, so the contrast survives the conversion to grey that trackers do.
    """
    noise = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0), 2.0)
    low, high = noise.min(), noise.max()
    stretched = levels[0] + (noise - low) * ((levels[1] - levels[0]) / (high - low))
    return np.repeat(stretched[..., None], 3, axis=-1)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 object texture: fine grey blurred noise on a random colour."""
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.0)
    noise *= 60.0 / max(float(noise.std()), 1e-6)
    colour = rng.uniform(60, 195, size=3).astype(np.float32)
    return np.clip(colour + noise[..., None], 0, 255)


def _paste(frame: np.ndarray, texture: np.ndarray, centre: np.ndarray) -> None:
    """Draws ``texture`` centred at the sub-pixel ``centre`` (x, y) into ``frame`` in place.

    ``texture`` is (s, s, 3) opaque, or (s, s, 4) with premultiplied colour and alpha last.
    """
    size = texture.shape[0]
    top_left = centre - size / 2.0
    origin = np.floor(top_left).astype(int) - 1
    fraction = top_left - (origin + 1)
    box = size + 3
    if texture.shape[2] == 4:
        rgba = texture
    else:
        rgba = np.dstack([texture, np.full((size, size), 1.0, np.float32)])
    # Bilinear placement at the fractional offset inside a box with a one-pixel border.
    warp = np.float64([[1, 0, 1 + fraction[0]], [0, 1, 1 + fraction[1]]])
    moved = cv2.warpAffine(rgba, warp, (box, box), flags=cv2.INTER_LINEAR, borderValue=0)
    # Clip to the frame: with camera motion, objects of border cells may leave it partly.
    x0, y0 = origin
    height, width = frame.shape[:2]
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + box, width), min(y0 + box, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    moved = moved[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    region = frame[fy0:fy1, fx0:fx1]
    region *= 1.0 - moved[..., 3:4]
    region += moved[..., :3]
