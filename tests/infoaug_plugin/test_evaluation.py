"""``infoaug-demo`` and ``infoaug-eval`` end to end (real data, the real commands), and the exports
they train on."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tv_datasets
from solo.data.classification_dataloader import prepare_data

from infoaug_plugin.evaluation.configs import Budget, Hardware, linear_config, pretrain_config
from infoaug_plugin.evaluation.datasets import (
    DEBIAN_FASHION_MNIST,
    EXPORT_MARKER,
    DatasetError,
    ExportedData,
    LabelledImages,
    export_dataset,
    read_idx,
    write_cifar100,
    write_stl10,
)
from infoaug_plugin.evaluation.harness import matrix_cells, parse_variant_sources
from infoaug_plugin.evaluation.launch import accept_exports
from infoaug_plugin.evaluation.report import learning_verdict, summarise
from infoaug_plugin.evaluation.runs import Cell, CellResult

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
def test_harness_runs_calibration_rows_and_a_twin_cell_with_solo_linear_eval_then_skips_them(
    tmp_path: Path, make_twin_store: Callable[..., Path]
) -> None:
    store = make_twin_store(tmp_path / "twins", n_pairs=32, size=32)
    out = tmp_path / "eval"
    budget = [
        "--train-size", "64", "--test-size", "50", "--epochs", "1", "--batch-size", "16",
        "--twin-batch-size", "8", "--linear-batch-size", "16", "--proj-hidden-dim", "64",
        "--proj-output-dim", "32", "--threads", "1",
    ]  # fmt: skip
    command = [
        str(BIN / "infoaug-eval"), "--out", "eval", "--twins", str(store), "--bases", "simclr",
        "--variants", "untrained", "pixels", "mi", "--seeds", "0", "1", "--jobs", "2", *budget,
    ]  # fmt: skip
    first = _run(command, tmp_path, 900)
    assert first.returncode == 0, first.stderr[-3000:]
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = sorted((row["variant"], row["twin_source"], row["seed"]) for row in rows)
    assert cells == sorted(
        (variant, source, seed)
        for variant, source in (("untrained", ""), ("pixels", ""), ("mi", "store"))
        for seed in ("0", "1")
    )
    top1 = {(row["variant"], row["seed"]): float(row["top1"]) for row in rows}
    assert all(0.0 <= value <= 100.0 for value in top1.values())
    # The pixel probe reads no weights; the untrained backbone's initialisation follows the seed.
    assert top1[("pixels", "0")] == top1[("pixels", "1")]
    assert all(float(row["pretrain_s"]) == 0.0 for row in rows if row["variant"] != "mi")
    assert all(row["twin_purity"] == "" for row in rows)
    table = (out / "results.md").read_text()
    assert "| simclr | untrained backbone | - |" in table
    assert "| infoaug_simclr | InfoAug (MI twins) | store |" in table
    assert "95% interval" in table
    assert (out / "results.png").read_bytes()[:8] == PNG_MAGIC
    results = sorted(out.glob("runs/*/result.json"))
    assert len(results) == 6
    stamps = [path.stat().st_mtime_ns for path in results]

    second = _run(command, tmp_path, 300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (second.stdout + second.stderr).count("finished before, skipped") == 6
    assert [path.stat().st_mtime_ns for path in results] == stamps

    # --report-only runs nothing: seed 2 is listed as having no result, seeds 0 and 1 are reported.
    report = _run(
        [*command[: -len(budget)], "--seeds", "0", "1", "2", *budget, "--report-only"],
        tmp_path,
        300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert not list(out.glob("runs/*seed2"))
    assert report.stderr.count("NO RESULT") == 3
    assert "- no result: simclr-mi-store-seed2: not finished" in (out / "results.md").read_text()
    with (out / "results.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6


@pytest.mark.slow
@needs_fashion_mnist
def test_harness_runs_a_base_cell_with_solo_linear_eval(tmp_path: Path) -> None:
    command = [
        str(BIN / "infoaug-eval"), "--out", "eval", "--bases", "simclr", "--variants", "base",
        "--seeds", "0", "--train-size", "64", "--test-size", "50", "--epochs", "1",
        "--batch-size", "16", "--linear-eval", "solo", "--linear-epochs", "1",
        "--linear-batch-size", "16", "--proj-hidden-dim", "64", "--proj-output-dim", "32",
        "--threads", "1",
    ]  # fmt: skip
    completed = _run(command, tmp_path, 600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    with (tmp_path / "eval" / "results.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["method"], row["variant"], row["twin_source"]) == ("simclr", "base", "")
    assert 0.0 <= float(row["top1"]) <= 100.0
    # No InfoAug variant: no twin store is built.
    assert not (tmp_path / "eval" / "twins").exists()


def test_calibration_variants_refuse_solo_linear_eval(tmp_path: Path) -> None:
    data = ExportedData(tmp_path, "cifar10", 10, 32, 10, 10)
    with pytest.raises(ValueError, match="'pixels' is evaluated by the probe only"):
        linear_config(
            "simclr", "pixels", data, None, Budget(linear_eval="solo"), Hardware(), 0, tmp_path
        )
    with pytest.raises(ValueError, match="'untrained' is not pretrained"):
        pretrain_config("simclr", "untrained", data, None, Budget(), Hardware(), 0, tmp_path)


def test_matrix_runs_calibration_rows_once_and_infoaug_variants_per_twin_source() -> None:
    cells = matrix_cells(
        ["simclr"], ["random", "base", "untrained", "mi"], ["clips", "scenes"], [0]
    )
    assert [cell.key for cell in cells] == [
        "simclr-untrained-seed0",
        "simclr-base-seed0",
        "simclr-mi-clips-seed0",
        "simclr-mi-scenes-seed0",
        "simclr-random-clips-seed0",
        "simclr-random-scenes-seed0",
    ]
    with pytest.raises(ValueError, match="a twin source is needed by exactly the InfoAug"):
        Cell("simclr", "base", 0, "clips")


def test_variant_sources_restrict_one_infoaug_variant_to_some_twin_sources() -> None:
    only = parse_variant_sources(["mi_shared=scenes"])
    cells = matrix_cells(["simclr"], ["mi", "mi_shared"], ["clips", "scenes"], [0], only)
    assert [cell.key for cell in cells] == [
        "simclr-mi-clips-seed0",
        "simclr-mi-scenes-seed0",
        "simclr-mi_shared-scenes-seed0",
    ]
    with pytest.raises(ValueError, match="expected VARIANT=SOURCE"):
        parse_variant_sources(["base=scenes"])


def test_a_reference_base_runs_only_as_itself(tmp_path: Path) -> None:
    cells = matrix_cells(["simclr", "nnclr"], ["untrained", "base", "mi"], ["clips"], [0])
    assert [cell.key for cell in cells] == [
        "simclr-untrained-seed0",
        "simclr-base-seed0",
        "simclr-mi-clips-seed0",
        "nnclr-base-seed0",
    ]
    data = ExportedData(tmp_path, "cifar10", 10, 32, 10, 10)
    assert (
        pretrain_config("nnclr", "base", data, None, Budget(), Hardware(), 0, tmp_path)["method"]
        == "nnclr"
    )
    with pytest.raises(ValueError, match="nnclr is a reference method without InfoAug"):
        pretrain_config("nnclr", "mi", data, tmp_path, Budget(), Hardware(), 0, tmp_path)


def _results(variant: str, values: list[float], source: str | None = None) -> list[CellResult]:
    return [
        CellResult("simclr", variant, seed, v, 1.0, 1.0, source) for seed, v in enumerate(values)
    ]


def test_confidence_interval_is_students_t_over_seeds() -> None:
    (summary,) = summarise(_results("base", [80.0, 81.0, 82.0]))
    # t(0.975, 2 dof) = 4.3027; std = 1; n = 3.
    assert summary.ci95 == pytest.approx(4.3027 / np.sqrt(3), rel=1e-4)
    assert np.isnan(summarise(_results("base", [80.0]))[0].ci95)


def test_verdict_says_the_budget_learns_only_when_base_clears_the_seed_spread() -> None:
    untrained = _results("untrained", [78.0, 78.5, 78.2])
    learned = learning_verdict(summarise(untrained + _results("base", [82.0, 82.4, 81.9])))
    assert "simclr beat the untrained backbone by 3.87 points" in learned
    noisy = learning_verdict(summarise(untrained + _results("base", [76.0, 84.0, 80.0])))
    assert noisy.startswith("**The budget is too small to learn**")
    below = learning_verdict(summarise(untrained + _results("base", [77.0, 77.2, 77.1])))
    assert "**The budget is too small to learn**: simclr is -1.13 points" in below
