"""Scene videos built from Fashion-MNIST training garments: an in-domain twin source with ground truth.

A scene is a G x G grid of cells on a dark, weakly textured background (the texture gives the
trackers and the camera estimator something to hold on to). Every cell holds one training garment
(28 x 28 grey, drawn in grey BGR) that moves inside its cell at sub-pixel positions
(:func:`twin_builder.synthetic.make_twin_video` renders it):

- twin cells come in pairs whose two garments are of the **same class** and share one latent
  motion, each plus independent noise;
- about a quarter of the other cells stand still, the rest move independently (random classes);
- an optional camera random walk moves the whole frame.

The labels only build the world: ``twin-builder build`` mines the frames like any video and the
learner never sees a label. The ground truth kept beside the videos (class and index of every cell's
garment, object centres per frame, twin cells) lets :func:`twin_purity` say how often a store's
twins show the same class. Only the arrays given to :func:`write_scene_videos` are read, and
:func:`load_fashion_mnist_train` reads the training split alone, never the test split.

Layout of a scene folder (give the folder itself to ``twin-builder build``; it finds the frame
folders and ignores the rest)::

    SCENES/
      scenes.json               settings and data fingerprint; written last, so it marks completion
      scene_0000/frame_*.png    the frames of one video (lossless PNG)
      scene_0000.truth.npz      its ground truth (see ``_write_truth``)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from infoaug_plugin.evaluation.datasets import DEBIAN_FASHION_MNIST, read_fashion_split
from infoaug_plugin.evaluation.twins import TwinSettings
from twin_builder.synthetic import make_twin_video, write_frame_folder
from twin_builder.video import describe_source
from twin_store import open_store

SCENES_MARKER = "scenes.json"
TRUTH_SUFFIX = ".truth.npz"
SELECTIONS: tuple[str, ...] = ("mi", "random")
# Grey levels of the background noise: dark like Fashion-MNIST's own background, with just enough
# contrast for corner detection and camera estimation.
BACKGROUND_LEVELS = (6.0, 38.0)
# Garment pixels at least this bright are opaque; darker ones blend into the background, so the
# image's black surround disappears instead of showing as a square.
OPAQUE_LEVEL = 48.0


class SceneError(ValueError):
    """Scene inputs, files or stores that cannot be used; the message names them and the problem."""


@dataclass(frozen=True)
class SceneSettings:
    """How many scene videos to render, and how.

    The defaults render 12 videos of 96 frames (6 windows of 16 frames each for the builder) in a
    few seconds; ``twin-builder build`` with :func:`scene_twin_settings` mines about 2,000 pairs
    from them in well under a minute on one core.

    Attributes:
        videos: number of videos.
        frames: frames per video.
        grid: cells per side (G); build with the same ``--grid`` so builder cells match scene cells.
        cell: side of a cell in px. A 28 px garment in a 36-40 px cell looks, once the builder
            crops the cell and resizes it, much like the 32 x 32 padded training images.
        pairs: twin pairs per video (same class, shared latent motion).
        static_fraction: share of all cells that stand still (taken among the unpaired cells).
        amplitude_px: largest excursion of a garment from its cell centre per axis, px.
        twin_noise_px: std of the independent position noise of each twin, px.
        camera_shift_px: largest excursion of the camera random walk, px (0: static camera).
        seed: seed of everything random (garments, pairing, motions, background).
    """

    videos: int = 18
    frames: int = 128
    grid: int = 6
    cell: int = 38
    pairs: int = 12
    static_fraction: float = 0.25
    amplitude_px: float = 3.5
    twin_noise_px: float = 0.15
    camera_shift_px: float = 0.0
    seed: int = 0


def builder_settings(settings: SceneSettings, workers: int = 1, seed: int = 0) -> TwinSettings:
    """``twin-builder build`` options suited to scenes.

    The builder's grid is the scene's, and 16-frame windows give several windows per video. With
    a still camera the camera model is ``none``: most of a scene's corners lie on garments that
    each move by about a pixel per frame, as much as the camera estimator's RANSAC tolerance, so
    a similarity fit drifts by up to a pixel per frame (measured) and that error, subtracted from
    every track, makes the still garments look as if they moved and blurs the twins' MI. With
    camera motion the similarity model is kept (expect lower purity then).

    Args:
        settings: the scenes to mine.
        workers: builder worker processes.
        seed: builder seed.

    Returns:
        The builder options.
    """
    camera = "none" if settings.camera_shift_px == 0 else "similarity"
    return TwinSettings(grid=settings.grid, window=32, camera=camera, workers=workers, seed=seed)


def load_fashion_mnist_train(data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the Fashion-MNIST training split only (the test files are never opened).

    Args:
        data_dir: folder holding ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``
            (or a ``raw/`` below it); ``None`` for Debian's ``dataset-fashion-mnist``.

    Returns:
        ``(images, labels)``: (N, 28, 28) uint8 grey images and (N,) int64 classes.

    Raises:
        DatasetError: the files are missing or malformed.
    """
    return read_fashion_split(DEBIAN_FASHION_MNIST if data_dir is None else data_dir, "train")


def write_scene_videos(
    images: np.ndarray, labels: np.ndarray, out: Path, settings: SceneSettings
) -> Path:
    """Renders scene videos and their ground truth into ``out`` (or reuses a finished copy).

    The folder is written under a temporary name and renamed when complete, with
    ``SCENES_MARKER`` written last: a folder whose marker records the same settings and data is
    reused as it is; an interrupted one is never reused; a finished one made with other settings
    or data is replaced.

    Args:
        images: (N, H, W) uint8 grey images of the training split, or grey (N, H, W, 3) copies;
            rows and columns black in every image are dropped.
        labels: (N,) integer classes of ``images``.
        out: the scene folder.
        settings: what to render.

    Returns:
        ``out``, holding the frame folders (give it to ``twin-builder build``) and ground truth.

    Raises:
        SceneError: bad images, labels or settings, or ``out`` is a folder that is not a scene
            folder (it is never deleted then).
    """
    images, labels = _check_data(images, labels, settings)
    request = {
        "settings": asdict(settings),
        "data_sha256": _data_sha256(images, labels),
    }
    marker = out / SCENES_MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if {key: recorded.get(key) for key in request} == request:
            return out
    elif out.exists() and any(out.iterdir()):
        raise SceneError(f"{out}: exists, is not empty and holds no {SCENES_MARKER}; not replaced")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [f"scene_{video:04d}" for video in range(settings.videos)]
    for video, name in enumerate(tqdm(names, desc="render scenes", unit="video", leave=False)):
        _render_scene(images, labels, settings, video, tmp, name)
    (tmp / SCENES_MARKER).write_text(json.dumps({**request, "videos": names}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def twin_purity(store: Path, scenes: Path, selection: str) -> float:
    """The fraction of a store's pairs whose two patches show garments of the same class.

    Each patch is mapped to the garment whose ground-truth centre, at the pair's frame, lies
    nearest the centre of the patch's crop box.

    Args:
        store: a complete twin store mined from ``scenes``.
        scenes: the scene folder written by :func:`write_scene_videos`.
        selection: ``mi``: the store's own twins; ``random``: the random-twin baseline, the exact
            expectation over the other patches of each pair's crop frame that the store lists (what
            the training loader draws a random twin from).

    Returns:
        The purity in [0, 1].

    Raises:
        SceneError: unknown selection, a store without crop boxes, or a store video (or a box)
            that the scenes' ground truth does not hold.
        TwinStoreError: the store is incomplete or malformed.
    """
    if selection not in SELECTIONS:
        raise SceneError(f"selection must be one of {SELECTIONS}; got {selection!r}")
    twin_store = open_store(store)
    rows = list(twin_store.rows())
    if not all(row["anchor_box"] and row["twin_box"] for row in rows):
        raise SceneError(f"{twin_store.root}: a pair has no crop box")
    truths = _read_truths(scenes)
    anchor_classes, twin_classes = [], []
    frame_classes: dict[tuple[str, str, str], dict[tuple[str, str], int]] = defaultdict(dict)
    for row in rows:
        if row["video"] not in truths:
            raise SceneError(
                f"{twin_store.root}: video {row['video']!r} (pair {row['pair_id']}) is "
                f"not one of the scenes in {scenes}"
            )
        truth = truths[row["video"]]
        frame = int(row["frame"])
        anchor = _class_in_box(truth, frame, row["anchor_box"], row["pair_id"])
        twin = _class_in_box(truth, frame, row["twin_box"], row["pair_id"])
        anchor_classes.append(anchor)
        twin_classes.append(twin)
        classes = frame_classes[row["video"], row["window_start"], row["frame"]]
        classes[row["anchor_row"], row["anchor_col"]] = anchor
        classes[row["twin_row"], row["twin_col"]] = twin
    if selection == "mi":
        return float(np.mean(np.equal(anchor_classes, twin_classes)))
    expectations = []
    for row, anchor in zip(rows, anchor_classes):
        frame = frame_classes[row["video"], row["window_start"], row["frame"]]
        others = [
            label for cell, label in frame.items() if cell != (row["anchor_row"], row["anchor_col"])
        ]
        expectations.append(np.mean(np.equal(others, anchor)))
    return float(np.mean(expectations))


def _check_data(
    images: np.ndarray, labels: np.ndarray, settings: SceneSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Validates the arrays and settings; returns the arrays as uint8 images and int64 labels."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 4 and images.shape[-1] == 3:
        if not (images == images[..., :1]).all():
            raise SceneError("images must be grey; these (N, H, W, 3) images have colour")
        images = images[..., 0]
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise SceneError(
            f"images must be a non-empty (N, H, W) or grey (N, H, W, 3) uint8 array; got "
            f"{images.shape} {images.dtype}"
        )
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise SceneError(
            f"labels must be ({len(images)},) integers; got {labels.shape} {labels.dtype}"
        )
    if images.shape[1] != images.shape[2]:
        raise SceneError(f"images must be square; got {images.shape[1]} x {images.shape[2]}")
    if settings.videos < 1 or settings.grid < 2:
        raise SceneError(f"need videos >= 1 and grid >= 2; got {settings.videos}, {settings.grid}")
    if settings.pairs < 1 or 2 * settings.pairs > settings.grid**2:
        raise SceneError(
            f"pairs={settings.pairs} needs 1..{settings.grid**2 // 2} for a {settings.grid} px grid"
        )
    _, counts = np.unique(labels, return_counts=True)
    if not (counts >= 2).any():
        raise SceneError("no class has two images; twin pairs need two garments of one class")
    # Rows and columns black in every image (e.g. the padding of 32 px copies) are dropped, so
    # padded and raw 28 px images give the same garments.
    rows = np.flatnonzero(images.max(axis=(0, 2)))
    cols = np.flatnonzero(images.max(axis=(0, 1)))
    if len(rows) == 0:
        raise SceneError("every image is black")
    size = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    top = min(rows[0], images.shape[1] - size)
    left = min(cols[0], images.shape[2] - size)
    images = images[:, top : top + size, left : left + size]
    limit = (settings.cell - size) / 2 - 1
    if not 0 <= settings.amplitude_px <= limit:
        raise SceneError(
            f"amplitude_px={settings.amplitude_px} would let a {size} px garment leave its "
            f"{settings.cell} px cell (at most {limit:g} px)"
        )
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _data_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """Fingerprint of the arrays a scene folder was rendered from."""
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _garment_texture(image: np.ndarray) -> np.ndarray:
    """(s, s, 4) float32 grey BGR garment, colour premultiplied by its alpha (last channel)."""
    grey = image.astype(np.float32)
    alpha = np.clip(grey / OPAQUE_LEVEL, 0.0, 1.0)
    return np.dstack([grey * alpha] * 3 + [alpha])


def _choose_garments(
    rng: np.random.Generator, labels: np.ndarray, settings: SceneSettings
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Draws the twin cells and every cell's garment: both garments of a pair share a class.

    Returns:
        ``(pairs, indices)``: pairs of row-major cell indices and (G*G,) image indices.
    """
    n_cells = settings.grid**2
    cells = rng.permutation(n_cells)
    pairs = [(int(cells[2 * p]), int(cells[2 * p + 1])) for p in range(settings.pairs)]
    indices = rng.choice(len(labels), size=n_cells, replace=False)
    classes, counts = np.unique(labels, return_counts=True)
    pair_classes = rng.choice(classes[counts >= 2], size=settings.pairs)
    for (a, b), label in zip(pairs, pair_classes):
        indices[[a, b]] = rng.choice(np.flatnonzero(labels == label), size=2, replace=False)
    return pairs, indices


def _render_scene(
    images: np.ndarray,
    labels: np.ndarray,
    settings: SceneSettings,
    video: int,
    folder: Path,
    name: str,
) -> None:
    """Renders scene ``video`` into ``folder/name/`` and writes its ground truth beside it."""
    rng = np.random.default_rng([settings.seed, video])
    pairs, indices = _choose_garments(rng, labels, settings)
    rendered = make_twin_video(
        grid=settings.grid,
        frames=settings.frames,
        cell=settings.cell,
        seed=int(rng.integers(2**32)),
        camera_shift_px=settings.camera_shift_px,
        amplitude_px=settings.amplitude_px,
        twin_noise_px=settings.twin_noise_px,
        static_fraction=settings.static_fraction,
        pairs=pairs,
        textures=[_garment_texture(images[index]) for index in indices],
        background_levels=BACKGROUND_LEVELS,
    )
    frames_dir = folder / name
    write_frame_folder(rendered.frames, frames_dir)
    twin_of = np.full((settings.grid, settings.grid, 2), -1, dtype=np.int64)
    for cell, twin in rendered.twin_of.items():
        twin_of[cell] = twin
    np.savez_compressed(
        folder / f"{name}{TRUTH_SUFFIX}",
        video_id=describe_source(frames_dir).video_id,
        classes=labels[indices].reshape(settings.grid, settings.grid),
        indices=indices.reshape(settings.grid, settings.grid),
        centres=rendered.centres,
        moving=rendered.moving,
        twin_of=twin_of,
        camera=rendered.camera,
    )


def _read_truths(scenes: Path) -> dict[str, dict[str, np.ndarray]]:
    """Ground truth of every scene video, keyed by the video id the builder gives it.

    Each value holds ``centres`` (T, G*G, 2) object centres in frame px, ``classes`` (G*G,) and
    ``cell`` (the scene's cell side, px).
    """
    marker = scenes / SCENES_MARKER
    if not marker.is_file():
        raise SceneError(f"{scenes}: no {SCENES_MARKER}; not a finished scene folder")
    recorded = json.loads(marker.read_text())
    truths = {}
    for name in recorded["videos"]:
        path = scenes / f"{name}{TRUTH_SUFFIX}"
        if not path.is_file():
            raise SceneError(f"{path}: ground truth missing")
        with np.load(path) as truth:
            centres = truth["centres"]
            truths[str(truth["video_id"])] = {
                "centres": centres.reshape(len(centres), -1, 2),
                "classes": truth["classes"].reshape(-1),
                "cell": recorded["settings"]["cell"],
            }
    return truths


def _class_in_box(truth: dict[str, np.ndarray], frame: int, box: str, pair_id: str) -> int:
    """Class of the garment nearest the centre of a ``"x0 y0 x1 y1"`` crop box at ``frame``."""
    centres = truth["centres"]
    try:
        x0, y0, x1, y1 = (float(value) for value in box.split())
    except ValueError as error:
        raise SceneError(f"pair {pair_id}: crop box {box!r} is not 'x0 y0 x1 y1'") from error
    if not 0 <= frame < len(centres):
        raise SceneError(f"pair {pair_id}: frame {frame} outside the scene's {len(centres)} frames")
    distances = np.linalg.norm(centres[frame] - ((x0 + x1) / 2, (y0 + y1) / 2), axis=1)
    nearest = int(np.argmin(distances))
    # A crop centred further than a cell from every garment cannot come from this scene.
    if distances[nearest] > truth["cell"]:
        raise SceneError(
            f"pair {pair_id}: crop box {box} at frame {frame} is {distances[nearest]:.0f} px from "
            "the nearest garment; the store was not mined from these scenes"
        )
    return int(truth["classes"][nearest])
