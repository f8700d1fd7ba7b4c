"""What a pretraining run shows while it trains, and runs on data without labels or validation set.

The runs use the shipped ``solo_configs/pretrain/custom`` YAMLs on tiny 32x32 image folders with
solo-learn's CPU overrides: kNN accuracy, the base and MI losses and a (patch | twin) grid per
epoch in Lightning's default CSV logger's folder, the grids in an offline wandb run, and an
InfoAug run on an unlabelled folder without ``val_path``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infoaug_plugin.twin_examples import twin_grid

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs" / "pretrain" / "custom"
PRETRAIN = Path(sys.executable).parent / "infoaug-pretrain"
SIZE = 32
TWIN_BATCH = 4
# The grid: TWIN_BATCH rows of (patch | twin), 2-pixel padding.
GRID_SHAPE = (TWIN_BATCH * SIZE + (TWIN_BATCH + 1) * 2, 2 * SIZE + 3 * 2, 3)
CPU = [
    "accelerator=cpu",
    'devices="1"',
    "strategy=auto",
    "precision=32",
    "sync_batchnorm=False",
    "data.num_workers=0",
    "optimizer.batch_size=4",
    "max_epochs=2",
    "++limit_train_batches=3",
    "++log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` and ``val/`` with 5 classes of 6 images, and ``flat/``: 30 images, no classes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "flat").mkdir()
    for split in ("train", "val"):
        for label in range(5):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(6):
                image = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
                image.save(folder / f"{index}.png")
                if split == "train":
                    image.save(root / "flat" / f"{label}-{index}.png")
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, make_twin_store) -> Path:
    return make_twin_store(tmp_path_factory.mktemp("twins") / "store", n_pairs=16, size=SIZE)


def _pretrain(workdir: Path, method: str, *overrides: str, env: dict | None = None) -> None:
    done = subprocess.run(
        [
            str(PRETRAIN),
            "--config-path",
            str(CONFIGS),
            "--config-name",
            f"{method}.yaml",
            *[f"augmentations.{i}.crop_size={SIZE}" for i in range(2 if "byol" in method else 1)],
            "method_kwargs.proj_hidden_dim=32",
            "method_kwargs.proj_output_dim=16",
            f"infoaug.batch_size={TWIN_BATCH}",
            "infoaug.num_workers=0",
            f"infoaug.image_size={SIZE}",
            "infoaug.loader=torch",
            *CPU,
            *overrides,
        ],
        check=False,
        cwd=workdir,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _epoch_rows(workdir: Path) -> list[dict[str, str]]:
    (metrics,) = workdir.glob("lightning_logs/version_*/metrics.csv")
    with metrics.open() as handle:
        return list(csv.DictReader(handle))


def _logged(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def test_a_run_logs_knn_accuracy_both_losses_and_a_twin_grid_per_epoch(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    _pretrain(
        tmp_path,
        "infoaug_simclr",
        f"data.train_path={image_folder / 'train'}",
        f"data.val_path={image_folder / 'val'}",
        f"infoaug.twins={store}",
        "knn_eval.enabled=True",
        "knn_eval.k=5",
    )
    rows = _epoch_rows(tmp_path)
    for key in ("val_knn_acc1", "val_knn_acc5", "val_acc1"):
        accuracies = _logged(rows, key)
        assert len(accuracies) == 2 and all(0 <= value <= 100 for value in accuracies), key
    for key in ("train_base_loss_step", "train_mi_loss_step"):
        losses = _logged(rows, key)
        assert len(losses) == 6 and all(np.isfinite(losses)), key

    grids = sorted(tmp_path.glob("lightning_logs/version_*/twin_examples/*.png"))
    assert [path.name for path in grids] == ["epoch=0.png", "epoch=1.png"]
    pixels = [np.asarray(Image.open(path)) for path in grids]
    assert all(grid.shape == GRID_SHAPE for grid in pixels)
    assert not np.array_equal(*pixels)  # each epoch shows its own (augmented) pairs


def test_an_offline_wandb_run_gets_the_twin_grids(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    _pretrain(
        tmp_path,
        "infoaug_simclr",
        f"data.train_path={image_folder / 'train'}",
        f"data.val_path={image_folder / 'val'}",
        f"infoaug.twins={store}",
        "wandb.enabled=True",
        "wandb.offline=True",
        env={"WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"},
    )
    (run,) = tmp_path.glob("wandb/offline-run-*")
    grids = sorted(run.glob("files/media/images/twin_examples_*.png"))
    assert len(grids) == 2
    for path in grids:
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == GRID_SHAPE and pixels.max() > 1  # bytes, not [0, 1] floats


def test_infoaug_pretrains_on_unlabelled_images_without_a_validation_set(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    _pretrain(
        tmp_path,
        "infoaug_byol",
        f"data.train_path={image_folder / 'flat'}",
        "~data.val_path",
        "data.no_labels=True",
        f"infoaug.twins={store}",
        "method_kwargs.pred_hidden_dim=32",
    )
    rows = _epoch_rows(tmp_path)
    assert not any(key.startswith("val_") for key in rows[0])
    mi_losses = _logged(rows, "train_mi_loss_step")
    assert len(mi_losses) == 6 and all(np.isfinite(mi_losses))
    assert all(np.isnan(_logged(rows, "train_class_loss_step")))  # no labels, as in solo-learn
    (checkpoint,) = tmp_path.glob("trained_models/infoaug_byol/*/*-ep=1.ckpt")
    state = torch.load(checkpoint, map_location="cpu")["state_dict"]
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())
    assert len(list(tmp_path.glob("lightning_logs/version_*/twin_examples/*.png"))) == 2


def test_the_grid_puts_each_patch_beside_its_twin() -> None:
    patches = torch.zeros(3, 3, 8, 8)
    twins = torch.zeros(3, 3, 8, 8)
    for row in range(3):
        patches[row, 0] = row + 1.0  # red, brighter down the grid
        twins[row, 2] = 1.0  # blue
    grid = twin_grid(patches, twins)
    assert grid.shape == (3, 3 * 8 + 4 * 2, 2 * 8 + 3 * 2)
    for row in range(3):
        top = 2 + row * 10
        patch, twin = grid[:, top : top + 8, 2:10], grid[:, top : top + 8, 12:20]
        assert patch[0].min() == 1 and patch[1:].max() == 0, row
        assert twin[2].min() == 1 and twin[:2].max() == 0, row
