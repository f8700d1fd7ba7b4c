"""Every YAML of ``solo_configs/`` composes with Hydra and builds; the data paths read real formats.

CIFAR-10/100 and STL-10 cannot be downloaded here, so the data tests write tiny files in the real
formats (CIFAR pickled batches, STL-10 column-major ``*_X.bin`` / ``*_y.bin``). torchvision checks
each file's md5 against the official archive's, even with ``download=False``; the tests register
the md5s of the tiny files in place of the official ones (``monkeypatch`` on the datasets'
``train_list`` / ``test_list`` / ``meta``), so torchvision's own integrity check, loading and
solo-learn's pipelines all run unchanged, and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from solo.args.linear import parse_cfg as parse_linear_cfg
from solo.args.pretrain import parse_cfg as parse_pretrain_cfg
from solo.data.classification_dataloader import prepare_data
from solo.methods import METHODS
from torchvision.datasets import CIFAR10, CIFAR100, STL10

from infoaug_plugin.cli.linear import build_backbone
from infoaug_plugin.cli.pretrain import build_train_loader, build_val_loader, check_method
from infoaug_plugin.data import fill_loader_defaults

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs"
BASES = ("simclr", "byol", "mocov2plus", "mocov3", "swav", "vicreg", "barlow_twins", "dino")
FOLDERS = ("cifar", "stl10", "custom")
PRETRAIN_YAMLS = sorted((CONFIGS / "pretrain").glob("*/infoaug_*.yaml"))
LINEAR_YAMLS = sorted((CONFIGS / "linear").glob("*/infoaug_*.yaml"))
# Small heads keep building 24 models fast; the backbone stays solo's resnet18.
TINY_HEADS = {
    "proj_hidden_dim": 32,
    "proj_output_dim": 16,
    "pred_hidden_dim": 32,
    "num_prototypes": 8,
    "queue_size": 64,
}


def _compose(path: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(path.parent), version_base="1.2"):
        cfg = compose(path.name, overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    return cfg


def _ids(paths: list[Path]) -> list[str]:
    return [f"{path.parent.name}/{path.stem}" for path in paths]


def test_configs_cover_every_method_on_every_dataset() -> None:
    expected = {(folder, f"infoaug_{base}") for folder in FOLDERS for base in BASES}
    assert {(path.parent.name, path.stem) for path in PRETRAIN_YAMLS} == expected
    assert {(path.parent.name, path.stem) for path in LINEAR_YAMLS} == expected


@pytest.mark.parametrize("path", PRETRAIN_YAMLS, ids=_ids(PRETRAIN_YAMLS))
def test_pretrain_yaml_composes_and_builds_its_model(path: Path, tmp_path: Path) -> None:
    (tmp_path / "class0").mkdir()
    cfg = _compose(path, [f"data.train_path={tmp_path}", f"infoaug.twins={tmp_path}"])
    for key, value in TINY_HEADS.items():
        if key in cfg.method_kwargs:
            cfg.method_kwargs[key] = value
    assert cfg.wandb.enabled is False and cfg.auto_resume.enabled is True
    assert (
        "crop_size" not in cfg.infoaug.augmentations
    )  # twin augmentations: one pipeline, no crops
    cfg = parse_pretrain_cfg(cfg)
    check_method(cfg)
    fill_loader_defaults(cfg.infoaug)
    assert cfg.infoaug.image_size == cfg.augmentations[0].crop_size
    model = METHODS[cfg.method](cfg)
    assert cfg.method == path.stem and type(model).__name__.lower().startswith("infoaug")


@pytest.mark.parametrize("path", LINEAR_YAMLS, ids=_ids(LINEAR_YAMLS))
def test_linear_yaml_composes_and_builds_its_backbone(path: Path, tmp_path: Path) -> None:
    (tmp_path / "class0").mkdir()
    cfg = _compose(
        path,
        [
            f"data.train_path={tmp_path}",
            f"data.val_path={tmp_path}",
            "pretrained_feature_extractor=x.ckpt",
        ],
    )
    assert cfg.wandb.enabled is False and cfg.auto_resume.enabled is True
    cfg = parse_linear_cfg(cfg)
    assert f"infoaug_{cfg.pretrain_method}" == path.stem
    assert build_backbone(cfg) is not None


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_cifar(root: Path, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes 5x4 training and 8 test images in torchvision's CIFAR layout."""
    rng = np.random.default_rng(0)
    cls, label_key, names_key, num_classes = (
        (CIFAR10, "labels", "label_names", 10)
        if dataset == "cifar10"
        else (CIFAR100, "fine_labels", "fine_label_names", 100)
    )
    folder = root / cls.base_folder
    folder.mkdir(parents=True)

    def batch(name: str, count: int) -> list[str]:
        entry = {
            "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            label_key: rng.integers(0, num_classes, count).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
        return [name, _md5(folder / name)]

    monkeypatch.setattr(cls, "train_list", [batch(name, 4) for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [batch(name, 8) for name, _ in cls.test_list])
    (folder / cls.meta["filename"]).write_bytes(
        pickle.dumps({names_key: [f"c{i}" for i in range(num_classes)]})
    )
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


def _write_stl10(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes 10 labelled, 6 unlabelled and 8 test images in STL-10's binary layout."""
    rng = np.random.default_rng(0)
    folder = root / STL10.base_folder
    folder.mkdir(parents=True)
    counts = {"train": 10, "unlabeled": 6, "test": 8}
    for split, count in counts.items():
        images = rng.integers(0, 256, (count, 3, 96, 96), dtype=np.uint8)
        # STL-10 stores each channel column-major.
        (folder / f"{split}_X.bin").write_bytes(
            np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()
        )
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(
                rng.integers(1, 11, count, dtype=np.uint8).tobytes()
            )
    monkeypatch.setattr(
        STL10, "train_list", [[name, _md5(folder / name)] for name, _ in STL10.train_list]
    )
    monkeypatch.setattr(
        STL10, "test_list", [[name, _md5(folder / name)] for name, _ in STL10.test_list]
    )


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10"])
def test_dataset_configs_read_files_in_the_real_format(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dataset == "stl10":
        _write_stl10(tmp_path, monkeypatch)
    else:
        _write_cifar(tmp_path, dataset, monkeypatch)
    folder, size = ("stl10", 96) if dataset == "stl10" else ("cifar", 32)
    data = [
        f"data.dataset={dataset}",
        f"data.train_path={tmp_path}",
        f"data.val_path={tmp_path}",
        "data.num_workers=0",
    ]
    cfg = _compose(
        CONFIGS / "pretrain" / folder / "infoaug_simclr.yaml", [*data, "optimizer.batch_size=4"]
    )
    cfg = parse_pretrain_cfg(cfg)

    indexes, views, targets = next(iter(build_train_loader(cfg)))
    assert indexes.shape == targets.shape == (4,)
    assert [tuple(view.shape) for view in views] == [(4, 3, size, size)] * 2
    images, _ = next(iter(build_val_loader(cfg)))
    assert images.shape[1:] == (3, size, size)

    linear_cfg = _compose(
        CONFIGS / "linear" / folder / "infoaug_simclr.yaml",
        [*data, "pretrained_feature_extractor=x.ckpt"],
    )
    linear_cfg = parse_linear_cfg(linear_cfg)
    train_loader, val_loader = prepare_data(
        linear_cfg.data.dataset,
        train_data_path=linear_cfg.data.train_path,
        val_data_path=linear_cfg.data.val_path,
        batch_size=4,
        num_workers=linear_cfg.data.num_workers,
    )
    assert next(iter(train_loader))[0].shape == (4, 3, size, size)
    assert len(val_loader.dataset) == 8
    assert linear_cfg.data.num_classes == (100 if dataset == "cifar100" else 10)
