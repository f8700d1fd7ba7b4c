"""``infoaug-demo`` and ``infoaug-eval`` end to end (real data, the real commands), and the exports
they train on."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torchvision.datasets as tv_datasets
from solo.data.classification_dataloader import prepare_data

from infoaug_plugin.evaluation.datasets import (
    DEBIAN_FASHION_MNIST,
    EXPORT_MARKER,
    DatasetError,
    LabelledImages,
    export_dataset,
    read_idx,
    write_cifar100,
    write_stl10,
)
from infoaug_plugin.evaluation.launch import accept_exports

BIN = Path(sys.executable).parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION_MNIST}); apt-get install it",
)


@pytest.fixture
def exports_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """``accept_exports()`` for one test; torchvision's own classes are restored afterwards."""
    for name in ("CIFAR10", "CIFAR100", "STL10"):
        monkeypatch.setattr(tv_datasets, name, getattr(tv_datasets, name))
    accept_exports()


def _random_split(n: int, side: int, classes: int, seed: int) -> LabelledImages:
    """``n`` random ``side`` x ``side`` RGB images with labels cycling over ``classes`` classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    return LabelledImages(
        images, np.arange(n) % classes, tuple(f"class{c}" for c in range(classes))
    )


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """Runs a console script of this environment, capturing text output."""
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@needs_fashion_mnist
def test_read_idx_reads_fashion_mnist_test_labels() -> None:
    labels = read_idx(DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_read_idx_names_the_file_of_a_corrupt_idx(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"not an idx file")
    with pytest.raises(DatasetError, match=f"{path}: not an unsigned-byte IDX file"):
        read_idx(path)


def test_export_names_a_data_dir_without_fashion_mnist(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        DatasetError, match=f"{empty}: no Fashion-MNIST train files.*train-images-idx3-ubyte"
    ):
        export_dataset("fashion-mnist", empty, tmp_path / "out", 10, 10)


def test_export_refuses_a_custom_dir_with_fewer_than_five_classes(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
    with pytest.raises(DatasetError, match="2 class folders; linear evaluation needs at least 5"):
        export_dataset("custom", tmp_path / "data", tmp_path / "out", 0, 0)


@needs_fashion_mnist
def test_fashion_mnist_export_takes_solo_learns_cifar_path_and_is_cached(
    tmp_path: Path, exports_accepted: None
) -> None:
    data = export_dataset("fashion-mnist", None, tmp_path, 50, 30, seed=0)
    train_loader, val_loader = prepare_data(
        data.solo_dataset, str(data.train_path), str(data.val_path), batch_size=30, num_workers=0
    )
    images, labels = next(iter(val_loader))
    assert (data.solo_dataset, data.num_classes, data.crop_size) == ("cifar10", 10, 32)
    assert images.shape == (30, 3, 32, 32)
    assert np.bincount(np.asarray(train_loader.dataset.targets)).tolist() == [5] * 10
    assert torch.equal(torch.unique(labels), torch.arange(10))
    marker_time = (data.root / EXPORT_MARKER).stat().st_mtime_ns
    assert export_dataset("fashion-mnist", None, tmp_path, 50, 30, seed=0) == data
    assert (data.root / EXPORT_MARKER).stat().st_mtime_ns == marker_time


@pytest.mark.parametrize(
    ("writer", "name", "side"), [(write_cifar100, "CIFAR100", 32), (write_stl10, "STL10", 96)]
)
def test_cifar100_and_stl10_exports_read_back_through_torchvision(
    tmp_path: Path, exports_accepted: None, writer: Callable, name: str, side: int
) -> None:
    train, test = _random_split(12, side, 6, seed=1), _random_split(7, side, 6, seed=2)
    writer(tmp_path, train, test)
    (tmp_path / EXPORT_MARKER).write_text("{}")
    cls = getattr(tv_datasets, name)
    read = cls(str(tmp_path), split="test") if name == "STL10" else cls(str(tmp_path), train=False)
    images = read.data.transpose(0, 2, 3, 1) if name == "STL10" else read.data
    labels = read.labels if name == "STL10" else read.targets
    assert np.array_equal(images, test.images)
    assert list(labels) == test.labels.tolist()


@pytest.mark.slow
@needs_fashion_mnist
def test_demo_quick_runs_offline_prints_its_table_and_writes_its_png(tmp_path: Path) -> None:
    completed = _run([str(BIN / "infoaug-demo"), "--quick", "--threads", "1"], tmp_path, 600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| method | linear top-1 (%) | time (min) |" in completed.stdout
    assert "| infoaug_simclr | " in completed.stdout
    assert "| simclr | " in completed.stdout
    assert (tmp_path / "infoaug-demo" / "demo.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
@needs_fashion_mnist
def test_harness_runs_a_two_cell_matrix_with_solo_linear_eval_then_skips_finished_cells(
    tmp_path: Path, make_twin_store: Callable[..., Path]
) -> None:
    store = make_twin_store(tmp_path / "twins", n_pairs=32, size=32)
    out = tmp_path / "eval"
    command = [
        str(BIN / "infoaug-eval"), "--out", "eval", "--twins", str(store),
        "--bases", "simclr", "--variants", "base", "mi", "--seeds", "0",
        "--train-size", "64", "--test-size", "50", "--epochs", "1", "--batch-size", "16",
        "--twin-batch-size", "8", "--linear-eval", "solo", "--linear-epochs", "1",
        "--linear-batch-size", "16", "--proj-hidden-dim", "64", "--proj-output-dim", "32",
        "--threads", "1",
    ]  # fmt: skip
    first = _run(command, tmp_path, 600)
    assert first.returncode == 0, first.stderr[-3000:]
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["method"] for row in rows) == ["infoaug_simclr", "simclr"]
    assert all(0.0 <= float(row["top1"]) <= 100.0 for row in rows)
    table = (out / "results.md").read_text()
    assert "| simclr | base |" in table and "| infoaug_simclr | InfoAug (MI twins) |" in table
    assert (out / "results.png").read_bytes()[:8] == PNG_MAGIC
    results = sorted(out.glob("runs/*/result.json"))
    stamps = [path.stat().st_mtime_ns for path in results]

    second = _run(command, tmp_path, 300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (second.stdout + second.stderr).count("finished before, skipped") == 2
    assert [path.stat().st_mtime_ns for path in results] == stamps
