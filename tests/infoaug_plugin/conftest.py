"""Fixtures for the ``infoaug_<base>`` method tests: a shared twin store and solo-learn's
unchanged training scripts."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from method_helpers import IMAGE_SIZE

import infoaug_plugin  # noqa: F401  (registers the methods)

SOLO_URL = "https://github.com/vturrisi/solo-learn.git"
SOLO_COMMIT = "9187ea39c2c3f43c455ab06664d2b019a9802954"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Trains on one torch thread for a module's tests: on a 2-core machine shared with other
    jobs, two torch threads that wait on each other were several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def twin_store(
    tmp_path_factory: pytest.TempPathFactory, make_twin_store: Callable[..., Path]
) -> Path:
    """A 32-pair store of 32x32 patches, shared by the session (tests only read it)."""
    return make_twin_store(tmp_path_factory.mktemp("store") / "twins", n_pairs=32, size=IMAGE_SIZE)


@pytest.fixture(scope="session")
def solo_scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """solo-learn's unchanged ``main_pretrain.py`` and ``main_linear.py`` at the pinned commit."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot fetch solo-learn's scripts")
    checkout = tmp_path_factory.mktemp("solo-learn")
    try:
        subprocess.run(["git", "init", "-q", str(checkout)], check=True)
        subprocess.run(
            ["git", "-C", str(checkout), "fetch", "-q", "--depth", "1", SOLO_URL, SOLO_COMMIT],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"git cannot reach {SOLO_URL} at {SOLO_COMMIT}: {error}")
    subprocess.run(
        [
            "git",
            "-C",
            str(checkout),
            "checkout",
            "-q",
            "FETCH_HEAD",
            "--",
            "main_pretrain.py",
            "main_linear.py",
        ],
        check=True,
    )
    return checkout
