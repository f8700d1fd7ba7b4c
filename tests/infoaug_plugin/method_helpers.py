"""Helpers for the ``infoaug_<base>`` method tests: tiny configs, main and twin data, trainers."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from twin_store import open_store

# Tiny heads so that a step of resnet18 on 32x32 images dominates; sizes fit a batch of 4.
METHOD_KWARGS: dict[str, dict[str, Any]] = {
    "simclr": {"proj_hidden_dim": 32, "proj_output_dim": 16, "temperature": 0.2},
    "byol": {"proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 32},
    "mocov2plus": {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "temperature": 0.2,
        "queue_size": 32,
    },
    "mocov3": {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "pred_hidden_dim": 32,
        "temperature": 0.2,
    },
    "swav": {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "temperature": 0.1,
        "num_prototypes": 12,
        "queue_size": 32,
        "epoch_queue_starts": 0,
        "freeze_prototypes_epochs": 0,
    },
    "vicreg": {"proj_hidden_dim": 32, "proj_output_dim": 16},
    "barlow_twins": {"proj_hidden_dim": 32, "proj_output_dim": 16},
    "dino": {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "num_prototypes": 12,
        "freeze_last_layer": 0,
    },
}
BASES = tuple(METHOD_KWARGS)
MOMENTUM_BASES = ("byol", "mocov2plus", "mocov3", "dino")
IMAGE_SIZE = 32
NUM_CLASSES = 5
# Training subprocesses run on one thread, like the in-process tests (see the one_torch_thread fixture).
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def build_cfg(method: str, batch_size: int = 4, max_epochs: int = 2, **infoaug: Any) -> DictConfig:
    """A struct-free solo-learn cfg for ``method`` (a base or ``infoaug_<base>`` name) on 32x32
    cifar-stem images, with tiny heads; ``infoaug`` keys go to the ``infoaug`` node."""
    base = method.removeprefix("infoaug_")
    cfg = {
        "name": f"test-{method}",
        "method": method,
        "backbone": {"name": "resnet18"},
        "method_kwargs": dict(METHOD_KWARGS[base]),
        "data": {
            "dataset": "cifar10",
            "train_path": ".",
            "val_path": None,
            "format": "image_folder",
            "num_workers": 0,
            "num_large_crops": 2,
            "num_small_crops": 0,
            "num_classes": NUM_CLASSES,
        },
        "optimizer": {
            "name": "sgd",
            "batch_size": batch_size,
            "lr": 0.05,
            "classifier_lr": 0.05,
            "weight_decay": 1e-5,
            "kwargs": {"momentum": 0.9},
        },
        "scheduler": {"name": "none"},
        "checkpoint": {"enabled": False},
        "auto_resume": {"enabled": False},
        "max_epochs": max_epochs,
        "devices": 1,
        "accelerator": "cpu",
        "num_nodes": 1,
        "seed": 0,
    }
    if base in MOMENTUM_BASES:
        cfg["momentum"] = {"base_tau": 0.5, "final_tau": 0.5}
    if method.startswith("infoaug_"):
        cfg["infoaug"] = {"batch_size": batch_size, **infoaug}
    return OmegaConf.create(cfg)


class RandomViews(Dataset):
    """solo-learn's pretraining sample ``(index, [view1, view2], label)`` from seeded noise."""

    def __init__(self, size: int = 16):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[int, list[torch.Tensor], int]:
        generator = torch.Generator().manual_seed(index)
        views = [torch.randn(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for _ in range(2)]
        return index, views, index % NUM_CLASSES


class StoreTwins(Dataset):
    """Twin samples ``(pair id, patch, twin)`` read straight from a twin store's patches."""

    def __init__(self, root: Path):
        self.store = open_store(root)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        pairs = self.store.pairs
        patch, twin = (self._image(int(p[index])) for p in (pairs.anchor, pairs.twin))
        return index, patch, twin

    def _image(self, patch: int) -> torch.Tensor:
        image = Image.open(io.BytesIO(self.store.read_patch(patch).tobytes())).convert("RGB")
        pixels = np.asarray(image, dtype=np.float32)
        return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0


def train_loaders(store: Path, batch_size: int = 4, shuffle: bool = True) -> dict[str, DataLoader]:
    """The ``{"main", "twin"}`` loaders of the plugin's entry point (deterministic unless shuffled)."""
    return {
        "main": DataLoader(RandomViews(), batch_size=batch_size, shuffle=shuffle, drop_last=True),
        "twin": DataLoader(
            StoreTwins(store), batch_size=batch_size, shuffle=shuffle, drop_last=True
        ),
    }


def cpu_trainer(**kwargs: Any) -> pl.Trainer:
    """A quiet single-process CPU trainer."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return pl.Trainer(**{**defaults, **kwargs})
