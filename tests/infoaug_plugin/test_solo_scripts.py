"""solo-learn's own, unchanged ``main_pretrain.py`` and ``main_linear.py`` run ``infoaug_<base>``.

The methods reach solo-learn's registry through the Hydra plugin namespace, twin batches come from
the model's twin provider (``infoaug.twins``), and the checkpoint feeds solo-learn's linear eval.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from method_helpers import METHOD_KWARGS, MOMENTUM_BASES, ONE_THREAD_ENV
from PIL import Image

pytestmark = pytest.mark.slow

NUM_CLASSES = 5
HYDRA_QUIET = {
    "defaults": [
        "_self_",
        {"override hydra/hydra_logging": "disabled"},
        {"override hydra/job_logging": "disabled"},
    ],
    "hydra": {"output_subdir": None, "run": {"dir": "."}},
}
# The CPU settings of SOLO_LEARN_NOTES 7.3 (devices is a string so both parse_cfg and Lightning accept it).
CPU_RUN = {
    "wandb": {"enabled": False},
    "auto_resume": {"enabled": False},
    "max_epochs": 1,
    "devices": "1",
    "accelerator": "cpu",
    "strategy": "auto",
    "precision": 32,
    "sync_batchnorm": False,
    "limit_train_batches": 2,
}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom image folder of five classes of eight 32x32 images."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in range(NUM_CLASSES):
        (root / f"class{label}").mkdir()
        for index in range(8):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{index}.png")
    return root


def pretrain_config(base: str, images: Path, twins: Path, checkpoints: Path) -> dict:
    """A solo-learn pretraining YAML for ``infoaug_<base>`` on the custom folder, CPU-sized."""
    augmentation = {
        "rrc": {"enabled": True, "crop_min_scale": 0.5, "crop_max_scale": 1.0},
        "color_jitter": {
            "prob": 0.0,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.2,
            "hue": 0.1,
        },
        "grayscale": {"prob": 0.0},
        "gaussian_blur": {"prob": 0.0},
        "solarization": {"prob": 0.0},
        "equalization": {"prob": 0.0},
        "horizontal_flip": {"prob": 0.5},
        "crop_size": 32,
        "num_crops": 2,
    }
    config = {
        **HYDRA_QUIET,
        **CPU_RUN,
        "name": f"infoaug_{base}-test",
        "method": f"infoaug_{base}",
        "backbone": {"name": "resnet18"},
        "method_kwargs": METHOD_KWARGS[base],
        "data": {
            "dataset": "custom",
            "train_path": str(images),
            "val_path": None,
            "format": "image_folder",
            "num_workers": 0,
        },
        "augmentations": [augmentation],
        "optimizer": {
            "name": "sgd",
            "batch_size": 4,
            "lr": 0.05,
            "classifier_lr": 0.05,
            "weight_decay": 1e-5,
        },
        "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0},
        "checkpoint": {"enabled": True, "dir": str(checkpoints), "frequency": 1},
        "infoaug": {"twins": str(twins), "num_workers": 0, "loader": "torch"},
    }
    if base in MOMENTUM_BASES:
        config["momentum"] = {"base_tau": 0.99, "final_tau": 1.0}
    return config


def run_solo_script(script: Path, config: dict, workdir: Path) -> subprocess.CompletedProcess:
    """Runs a solo-learn script on ``config`` with Hydra, in ``workdir``, and fails on a bad exit."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(script), "--config-path", str(workdir), "--config-name", "config"],
        cwd=workdir,
        env=ONE_THREAD_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@dataclass
class Pretrained:
    """What one ``main_pretrain.py`` run left: its checkpoint and its logged metrics (CSV text)."""

    ckpt: Path
    metrics: str


@pytest.fixture(scope="module")
def pretrained(
    tmp_path_factory: pytest.TempPathFactory,
    solo_scripts: Path,
    image_folder: Path,
    twin_store: Path,
) -> Callable[[str], Pretrained]:
    """``pretrained(base)``: one ``main_pretrain.py`` epoch of ``infoaug_<base>``, run once."""
    cache: dict[str, Pretrained] = {}

    def run(base: str) -> Pretrained:
        if base not in cache:
            workdir = tmp_path_factory.mktemp(f"pretrain-{base}")
            config = pretrain_config(base, image_folder, twin_store, workdir / "trained_models")
            run_solo_script(solo_scripts / "main_pretrain.py", config, workdir)
            (ckpt,) = (workdir / "trained_models" / f"infoaug_{base}").rglob("*.ckpt")
            (metrics,) = (workdir / "lightning_logs").rglob("metrics.csv")
            cache[base] = Pretrained(ckpt, metrics.read_text())
        return cache[base]

    return run


# A plain method, a momentum one (evaluated below), and the two whose MI heads hold state in hooks;
# every base's training itself is covered by test_methods.py.
@pytest.mark.parametrize("base", ["simclr", "byol", "swav", "dino"])
def test_main_pretrain_trains_infoaug_method_with_provider_twins(
    base: str, pretrained: Callable[[str], Pretrained]
) -> None:
    run = pretrained(base)
    assert "train_mi_loss" in run.metrics.splitlines()[0]
    assert run.ckpt.stat().st_size > 0


def test_main_linear_evaluates_infoaug_checkpoint(
    pretrained: Callable[[str], Pretrained], solo_scripts: Path, image_folder: Path, tmp_path: Path
) -> None:
    config = {
        **HYDRA_QUIET,
        **CPU_RUN,
        "limit_val_batches": 2,
        "name": "linear-test",
        "pretrained_feature_extractor": str(pretrained("byol").ckpt),
        "pretrain_method": "byol",
        "backbone": {"name": "resnet18"},
        "data": {
            "dataset": "custom",
            "train_path": str(image_folder),
            "val_path": str(image_folder),
            "format": "image_folder",
            "num_workers": 0,
        },
        "optimizer": {"name": "sgd", "batch_size": 4, "lr": 0.1, "weight_decay": 0.0},
        "scheduler": {"name": "step", "lr_decay_steps": [60, 80]},
        "checkpoint": {"enabled": False},
    }
    run_solo_script(solo_scripts / "main_linear.py", config, tmp_path)
    (metrics,) = (tmp_path / "lightning_logs").rglob("metrics.csv")
    assert "val_acc1" in metrics.read_text()
