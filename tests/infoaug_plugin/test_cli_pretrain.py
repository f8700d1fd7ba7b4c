"""``infoaug-pretrain`` and ``infoaug-linear`` end to end on CPU, and stores refused before training.

The runs use the shipped ``solo_configs/*/custom`` YAMLs on a tiny image folder (5 classes,
32x32) with solo-learn's CPU overrides, tiny heads and two steps per epoch.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from infoaug_plugin.cli.common import config_path_from_cwd
from infoaug_plugin.cli.pretrain import pretrain
from twin_store import MANIFEST_NAME, TwinStoreError

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
    "++limit_train_batches=2",
    "++limit_val_batches=1",
    "++log_every_n_steps=1",
]
TINY_TWINS = ["infoaug.batch_size=4", "infoaug.num_workers=0", "infoaug.image_size=32"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` and ``val/`` with 5 classes of 6 random 32x32 PNG images each."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(5):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(6):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    folder / f"{index}.png"
                )
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, make_twin_store) -> Path:
    return make_twin_store(tmp_path_factory.mktemp("twins") / "store", n_pairs=16, size=32)


def _run(command: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), *args], cwd=workdir, capture_output=True, text=True, timeout=300
    )


def _pretrain_args(
    method: str, image_folder: Path, store: Path, crops: int, workdir: Path
) -> list[str]:
    """Arguments of a tiny CPU run; ``--config-path`` is relative to ``workdir``, as users type it."""
    return [
        "--config-path",
        os.path.relpath(CONFIGS / "pretrain" / "custom", workdir),
        "--config-name",
        f"infoaug_{method}.yaml",
        f"data.train_path={image_folder / 'train'}",
        f"data.val_path={image_folder / 'val'}",
        f"infoaug.twins={store}",
        "max_epochs=2",
        *[f"augmentations.{i}.crop_size=32" for i in range(crops)],
        *CPU,
        *TINY_TWINS,
    ]


def _logged_mi_losses(workdir: Path) -> list[float]:
    (metrics,) = workdir.glob("lightning_logs/version_*/metrics.csv")
    with metrics.open() as handle:
        return [
            float(row["train_mi_loss_step"])
            for row in csv.DictReader(handle)
            if row.get("train_mi_loss_step")
        ]


def test_pretrain_with_torch_twins_then_linear_evaluation_of_its_checkpoint(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    pretrained = _run(
        "infoaug-pretrain",
        tmp_path,
        *_pretrain_args("simclr", image_folder, store, crops=1, workdir=tmp_path),
        "infoaug.loader=torch",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
    )
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    losses = _logged_mi_losses(tmp_path)
    assert len(losses) == 4 and all(np.isfinite(losses))
    (checkpoint,) = tmp_path.glob("trained_models/infoaug_simclr/*/*-ep=1.ckpt")
    assert json.loads((checkpoint.parent / "args.json").read_text())["infoaug"]["loader"] == "torch"

    evaluated = _run(
        "infoaug-linear",
        tmp_path,
        "--config-path",
        os.path.relpath(CONFIGS / "linear" / "custom", tmp_path),
        "--config-name",
        "infoaug_simclr.yaml",
        f"data.train_path={image_folder / 'train'}",
        f"data.val_path={image_folder / 'val'}",
        f'pretrained_feature_extractor="{checkpoint}"',
        "max_epochs=1",
        *CPU,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert list(tmp_path.glob("trained_models/linear/*/*-ep=0.ckpt"))


def test_pretrain_with_dali_main_data_and_dali_twins_on_cpu(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    # Also keeps the YAML's GPU-style ``devices: [0]``, which the command turns into 1 on CPU.
    args = [
        arg
        for arg in _pretrain_args("byol", image_folder, store, crops=2, workdir=tmp_path)
        if not arg.startswith("devices")
    ]
    pretrained = _run(
        "infoaug-pretrain",
        tmp_path,
        *args,
        "data.format=dali",
        "dali.device=cpu",
        "infoaug.loader=dali",
        "infoaug.dali_device=cpu",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
        "method_kwargs.pred_hidden_dim=32",
    )
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    losses = _logged_mi_losses(tmp_path)
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert list(tmp_path.glob("trained_models/infoaug_byol/*/*-ep=1.ckpt"))


def test_pretrain_runs_a_plain_solo_learn_method_as_the_baseline(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    args = [
        arg
        for arg in _pretrain_args("simclr", image_folder, store, crops=1, workdir=tmp_path)
        if not arg.startswith("infoaug.")
    ]
    pretrained = _run(
        "infoaug-pretrain",
        tmp_path,
        *args,
        "method=simclr",
        "~infoaug",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
    )
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    (metrics,) = tmp_path.glob("lightning_logs/version_*/metrics.csv")
    logged = metrics.read_text().splitlines()[0].split(",")
    assert "train_nce_loss_step" in logged and not any(
        key.startswith("train_mi_loss") for key in logged
    )
    assert list(tmp_path.glob("trained_models/simclr/*/*-ep=1.ckpt"))


def test_a_format_1_store_still_trains(
    tmp_path: Path, image_folder: Path, format_1_store: Path
) -> None:
    store = format_1_store
    pretrained = _run(
        "infoaug-pretrain",
        tmp_path,
        *_pretrain_args("simclr", image_folder, store, crops=1, workdir=tmp_path),
        "infoaug.loader=torch",
        "max_epochs=1",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
    )
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    losses = _logged_mi_losses(tmp_path)
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_command_line_refuses_a_bad_store_before_training(
    tmp_path: Path, image_folder: Path, store: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(store, broken)
    (broken / MANIFEST_NAME).unlink()
    refused = _run(
        "infoaug-pretrain",
        tmp_path,
        *_pretrain_args("simclr", image_folder, broken, crops=1, workdir=tmp_path),
    )
    assert refused.returncode != 0
    assert f"twins store {broken}: manifest.json is missing" in refused.stderr
    assert not (tmp_path / "trained_models").exists() and not (tmp_path / "lightning_logs").exists()


def _break_store(store: Path, target: Path, problem: str) -> Path:
    """Copies ``store`` to ``target`` with one defect."""
    shutil.copytree(store, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    shard = target / "shards" / "000000.tar"
    if problem == "truncated shard":
        with shard.open("r+b") as handle:
            handle.truncate(shard.stat().st_size - 2000)
    elif problem == "missing shard":
        shard.unlink()
    elif problem == "index past a shard's end":
        offsets = np.load(target / "index" / "patches.offset.npy")
        offsets[-1] = shard.stat().st_size
        np.save(target / "index" / "patches.offset.npy", offsets)
    elif problem == "index of the wrong length":
        np.save(
            target / "index" / "pairs.twin.npy", np.load(target / "index" / "pairs.twin.npy")[:-1]
        )
    elif problem == "wrong version":
        manifest["format_version"] = 3
    elif problem == "incomplete manifest":
        del manifest["counts"]
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("truncated shard", "shards/000000.tar is truncated"),
        ("missing shard", "shards/000000.tar is missing"),
        ("index past a shard's end", "index/patches.offset.npy row"),
        (
            "index of the wrong length",
            "index/pairs.twin.npy has 15 rows but the pairs table has 16",
        ),
        ("wrong version", "manifest.json has format_version 3"),
        ("incomplete manifest", "manifest.json is missing key 'counts'"),
    ],
)
def test_bad_store_is_refused_before_the_model_is_built(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_folder: Path,
    store: Path,
    problem: str,
    message: str,
) -> None:
    broken = _break_store(store, tmp_path / "broken", problem)
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONFIGS / "pretrain" / "custom"), version_base="1.2"):
        cfg = compose(
            "infoaug_simclr.yaml",
            overrides=_pretrain_args("simclr", image_folder, broken, crops=1, workdir=tmp_path)[4:],
        )
    with pytest.raises(TwinStoreError) as refusal:
        pretrain(cfg)
    assert str(refusal.value).startswith(f"twins store {broken}: ")
    assert message in str(refusal.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken"]


def test_relative_config_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "infoaug-pretrain",
        "--config-path",
        "cfg/a",
        "-cp=cfg/b",
        "--config-path=pkg://x.y",
        "k=v",
    ]
    assert config_path_from_cwd(argv) == [
        "infoaug-pretrain",
        "--config-path",
        str(tmp_path / "cfg" / "a"),
        f"-cp={tmp_path / 'cfg' / 'b'}",
        "--config-path=pkg://x.y",
        "k=v",
    ]
