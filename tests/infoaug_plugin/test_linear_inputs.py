"""Hostile inputs to ``infoaug-linear`` and ``infoaug-demo --data-dir``: one line naming the file.

Also: linear evaluation of a 2-class folder, where solo's top-5 accuracy has no 5 classes to rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from solo.methods.base import BaseMethod

from infoaug_plugin.cli.linear import linear
from infoaug_plugin.config import ConfigError
from infoaug_plugin.evaluation import demo

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs"
BIN = Path(sys.executable).parent
CPU = [
    "accelerator=cpu",
    'devices="1"',
    "strategy=auto",
    "precision=32",
    "sync_batchnorm=False",
    "data.num_workers=0",
    "optimizer.batch_size=4",
    "++limit_train_batches=1",
    "++limit_val_batches=1",
    "max_epochs=1",
    "wandb.enabled=False",
]


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` and ``val/`` with 2 classes of 4 random 32x32 PNG images each."""
    root = tmp_path_factory.mktemp("two_classes")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(2):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(4):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    folder / f"{index}.png"
                )
    return root


def _overrides(folder: Path, checkpoint: Path) -> list[str]:
    return [
        f"data.train_path={folder / 'train'}",
        f"data.val_path={folder / 'val'}",
        f'pretrained_feature_extractor="{checkpoint}"',
        *CPU,
    ]


def _save_backbone(backbone: torch.nn.Module, path: Path) -> Path:
    """A solo-learn-style checkpoint: the backbone's weights under ``backbone.`` keys."""
    state = {f"backbone.{key}": value for key, value in backbone.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, path)
    return path


def _bad_checkpoint(tmp_path: Path, problem: str) -> Path:
    path = tmp_path / f"{problem}.ckpt"
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    elif problem == "no state_dict":
        torch.save({"epoch": 3, "weights": {"w": torch.zeros(2)}}, path)
    elif problem == "resnet50":
        _save_backbone(BaseMethod._BACKBONES["resnet50"](method="simclr"), path)
    return path


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("empty", "the file is empty or cut short; not a checkpoint"),
        ("random bytes", "not a PyTorch checkpoint of tensors and plain data"),
        ("no state_dict", "has no 'state_dict'"),
        ("resnet50", "backbone weights do not fit the backbone being evaluated (first: "),
        ("missing", "cannot read it (No such file or directory)"),
    ],
)
def test_a_bad_checkpoint_is_refused_naming_the_file(
    tmp_path: Path, two_classes: Path, monkeypatch: pytest.MonkeyPatch, problem: str, message: str
) -> None:
    checkpoint = _bad_checkpoint(tmp_path, problem)
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONFIGS / "linear" / "custom"), version_base="1.2"):
        cfg = compose("infoaug_simclr.yaml", overrides=_overrides(two_classes, checkpoint))
    with pytest.raises(ConfigError) as refusal:
        linear(cfg)
    text = str(refusal.value)
    assert text.startswith(f"pretrained_feature_extractor: {checkpoint}") and message in text
    assert "weights_only" not in text
    assert not (tmp_path / "trained_models").exists()


def _linear_command(tmp_path: Path, folder: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "infoaug-linear"),
            "--config-path",
            str(CONFIGS / "linear" / "custom"),
            "--config-name",
            "infoaug_simclr.yaml",
            *_overrides(folder, checkpoint),
        ],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_random_bytes_end_the_command_with_one_line_and_no_unsafe_advice(
    tmp_path: Path, two_classes: Path
) -> None:
    checkpoint = _bad_checkpoint(tmp_path, "random bytes")
    done = _linear_command(tmp_path, two_classes, checkpoint)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "weights_only" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("infoaug-linear: ")]
    assert line.startswith(f"infoaug-linear: error: pretrained_feature_extractor: {checkpoint}:")


def test_linear_evaluation_of_a_two_class_folder_reports_top_two_as_acc5(
    tmp_path: Path, two_classes: Path
) -> None:
    resnet18 = BaseMethod._BACKBONES["resnet18"](method="simclr")
    resnet18.fc = torch.nn.Identity()  # as solo's pretraining methods keep it
    checkpoint = _save_backbone(resnet18, tmp_path / "resnet18.ckpt")
    done = _linear_command(tmp_path, two_classes, checkpoint)
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics,) = tmp_path.glob("lightning_logs/version_*/metrics.csv")
    rows = metrics.read_text().splitlines()
    header = rows[0].split(",")
    (logged,) = [row.split(",") for row in rows[1:] if row.split(",")[header.index("val_acc5")]]
    # Of 2 classes, the true one is always in the top 2: acc5 is top-min(5, 2) accuracy.
    assert float(logged[header.index("val_acc5")]) == pytest.approx(100.0)
    assert 0.0 <= float(logged[header.index("val_acc1")]) <= 100.0


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the MNIST format) holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_demo_refuses_idx_images_that_are_not_28_by_28(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "small"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("t10k", 20)):
        _write_idx(data_dir / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (count, 10, 10)))
        _write_idx(data_dir / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, count))
    argv = ["--quick", "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]
    assert demo.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("infoaug-demo: ")]
    assert str(data_dir / "train-images-idx3-ubyte") in line
    assert "images of 10 x 10 pixels; Fashion-MNIST images are 28 x 28" in line
