"""The solo-learn YAMLs of one evaluation run: pretraining (base method or InfoAug) and linear eval.

One run is a cell of the comparison: a base method (``simclr``, ``byol``, ...) in one of the
``VARIANTS``, with one seed and one :class:`Budget` shared by every cell:

- ``untrained`` and ``pixels``, the calibration rows: the same backbone at its random
  initialisation, and the raw pixels, through the same linear probe (no pretraining);
- ``base``: the plain solo-learn method;
- ``mi``: InfoAug with the store's MI twins; ``random``: InfoAug with random twins of the same
  window (the paper's baseline); ``mi_shared``: ``mi`` with ``infoaug.bn_stats: shared`` (the twin
  batch updates the backbone's BatchNorm running statistics too).

Sizes are scaled down from solo-learn's CIFAR YAMLs (``scripts/pretrain/cifar/*.yaml``) so that
small budgets run on a CPU; the optimisers and method hyper-parameters are solo's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infoaug_plugin.evaluation.datasets import ExportedData

VARIANTS: tuple[str, ...] = ("untrained", "pixels", "base", "mi", "random", "mi_shared")
LINEAR_EVALS: tuple[str, ...] = ("probe", "solo")
VARIANT_LABELS = {
    "untrained": "untrained backbone",
    "pixels": "raw pixels",
    "base": "base",
    "mi": "InfoAug (MI twins)",
    "random": "InfoAug (random twins)",
    "mi_shared": "InfoAug (MI twins, bn_stats shared)",
}
# The variants without pretraining, and what the probe reads for them.
PROBE_ONLY_FEATURES = {"untrained": "untrained", "pixels": "pixels"}
# The InfoAug variants: (infoaug.selection, infoaug.bn_stats).
TWIN_VARIANTS: dict[str, tuple[str, str]] = {
    "mi": ("store", "main"),
    "random": ("random", "main"),
    "mi_shared": ("store", "shared"),
}

# solo-learn's CIFAR augmentation pipeline (``augmentations/symmetric.yaml``) for the views.
VIEW_AUGMENTATIONS: dict[str, Any] = {
    "rrc": {"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
    "color_jitter": {
        "prob": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
    },
    "grayscale": {"prob": 0.2},
    "gaussian_blur": {"prob": 0.0},
    "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.5},
}


@dataclass(frozen=True)
class BaseRecipe:
    """How solo-learn's CIFAR YAML trains one base method.

    Attributes:
        method_kwargs: ``method_kwargs`` other than the projector sizes.
        optimizer: ``lars`` or ``sgd``.
        lr: base learning rate (solo scales it by batch size / 256).
        momentum: ``(base_tau, final_tau)`` for momentum methods, else ``None``.
        predictor: whether the method has ``pred_hidden_dim``.
    """

    method_kwargs: dict[str, Any]
    optimizer: str
    lr: float
    momentum: tuple[float, float] | None = None
    predictor: bool = False


BASES: dict[str, BaseRecipe] = {
    "simclr": BaseRecipe({"temperature": 0.2}, "lars", 0.4),
    "byol": BaseRecipe({}, "lars", 1.0, (0.99, 1.0), predictor=True),
    "mocov2plus": BaseRecipe({"temperature": 0.2, "queue_size": 4096}, "sgd", 0.3, (0.99, 0.999)),
    "mocov3": BaseRecipe({"temperature": 0.2}, "lars", 0.3, (0.99, 1.0), predictor=True),
    "swav": BaseRecipe(
        {
            "temperature": 0.1,
            "num_prototypes": 300,
            "sk_iters": 3,
            "sk_epsilon": 0.05,
            "queue_size": 0,
            "epoch_queue_starts": 50,
            "freeze_prototypes_epochs": 0,
        },
        "lars",
        0.6,
    ),
    "vicreg": BaseRecipe(
        {"sim_loss_weight": 25.0, "var_loss_weight": 25.0, "cov_loss_weight": 1.0}, "lars", 0.3
    ),
    "barlow_twins": BaseRecipe({"lamb": 0.0051, "scale_loss": 0.1}, "lars", 0.3),
    "dino": BaseRecipe(
        {
            "num_prototypes": 1024,
            "norm_last_layer": False,
            "clip_grad": 0,
            "freeze_last_layer": 1,
            "student_temperature": 0.1,
            "teacher_temperature": 0.04,
            "warmup_teacher_temperature": 0.04,
            "warmup_teacher_temperature_epochs": 0,
        },
        "lars",
        0.3,
        (0.9995, 1.0),
    ),
    # A reference, not an InfoAug base: cross-sample positives learned from a support set.
    "nnclr": BaseRecipe({"temperature": 0.2, "queue_size": 65536}, "lars", 0.4, predictor=True),
}
# Bases with no infoaug_<base> method: compared as plain solo-learn methods (variant ``base``).
REFERENCE_BASES: tuple[str, ...] = ("nnclr",)
_LARS_KWARGS = {"clip_lr": True, "eta": 0.02, "exclude_bias_n_norm": True}


@dataclass(frozen=True)
class Budget:
    """The training budget shared by every run of a comparison (defaults: a small CPU budget).

    Attributes:
        train_size: training images (pretraining and linear training; 0: all).
        test_size: test images (linear evaluation; 0: all).
        epochs: pretraining epochs.
        batch_size: pretraining images per step.
        twin_batch_size: twin pairs per step (InfoAug variants).
        mi_weight: ``infoaug.weight``, the MI loss weight.
        linear_eval: ``probe`` (logistic regression on frozen features, :mod:`.probe`) or
            ``solo`` (solo-learn's SGD linear evaluation, ``infoaug-linear``).
        linear_epochs: epochs of ``solo`` linear evaluation.
        linear_batch_size: batch size of linear evaluation (images per forward pass for ``probe``).
        linear_lr: SGD learning rate of ``solo`` linear evaluation (before solo's batch scaling).
        proj_hidden_dim: projector (and predictor) hidden size.
        proj_output_dim: projector output size.
        backbone: solo-learn backbone name.
        num_workers: data-loading workers (main and twin loaders).
    """

    train_size: int = 192
    test_size: int = 500
    epochs: int = 1
    batch_size: int = 32
    twin_batch_size: int = 16
    mi_weight: float = 1.0
    linear_eval: str = "probe"
    linear_epochs: int = 100
    linear_batch_size: int = 100
    linear_lr: float = 0.1
    proj_hidden_dim: int = 512
    proj_output_dim: int = 128
    backbone: str = "resnet18"
    num_workers: int = 0


@dataclass(frozen=True)
class Hardware:
    """Where the runs execute.

    Attributes:
        accelerator: ``cpu`` or ``gpu``.
        devices: number of devices.
        precision: Lightning precision (``32``, ``16-mixed``, ``bf16-mixed``).
        loader: twin loader, ``torch`` or ``dali``.
        dali_device: device of DALI's twin pipeline (``cpu`` or ``gpu``).
        threads: CPU threads of each run's processes (``OMP_NUM_THREADS``); 0 keeps torch's
            default (one per core). On cores shared with other jobs, 1 can be several times faster.
    """

    accelerator: str = "cpu"
    devices: int = 1
    precision: str = "32"
    loader: str = "torch"
    dali_device: str = "cpu"
    threads: int = 0

    def trainer_keys(self) -> dict[str, Any]:
        """The top-level YAML keys solo-learn forwards to Lightning's ``Trainer``.

        On CPU ``devices`` is the string ``"1"``: Lightning wants an int > 0 there and solo's
        ``parse_cfg`` takes ``len(devices)``, which a string satisfies (and a list fails on CPU).
        """
        gpu = self.accelerator == "gpu"
        return {
            "accelerator": self.accelerator,
            "devices": list(range(self.devices)) if gpu else str(self.devices),
            "strategy": "ddp" if self.devices > 1 else "auto",
            "sync_batchnorm": self.devices > 1,
            "precision": self.precision,
        }


_HYDRA_HEADER = {
    "defaults": [
        "_self_",
        {"override hydra/hydra_logging": "disabled"},
        {"override hydra/job_logging": "disabled"},
    ],
    "hydra": {"output_subdir": None, "run": {"dir": "."}},
}


def method_name(base: str, variant: str) -> str:
    """solo-learn ``method`` of a run: ``infoaug_<base>`` for the InfoAug variants, else the base."""
    return f"infoaug_{base}" if variant in TWIN_VARIANTS else base


def _common(
    data: ExportedData, run_dir: Path, seed: int, hardware: Hardware, workers: int
) -> dict[str, Any]:
    """Keys both YAMLs share: data, checkpoints, logging off, seed and trainer keys."""
    return {
        "data": {
            "dataset": data.solo_dataset,
            "train_path": str(data.train_path),
            "val_path": str(data.val_path),
            "format": "image_folder",
            "num_workers": workers,
        },
        "checkpoint": {"enabled": True, "dir": str(run_dir / "checkpoints"), "frequency": 1},
        # AutoResumer does not compare the infoaug keys, so runs would resume each other.
        "auto_resume": {"enabled": False},
        "wandb": {"enabled": False},
        "seed": seed,
        **hardware.trainer_keys(),
    }


def pretrain_config(
    base: str,
    variant: str,
    data: ExportedData,
    twins: Path | None,
    budget: Budget,
    hardware: Hardware,
    seed: int,
    run_dir: Path,
) -> dict[str, Any]:
    """The pretraining YAML of one run, as a dict.

    Args:
        base: one of ``BASES``.
        variant: one of ``VARIANTS``.
        data: the exported data set.
        twins: the twin store (required unless ``variant`` is ``base``).
        budget: the shared budget.
        hardware: where it runs.
        seed: the run's seed.
        run_dir: the run's directory (checkpoints go below it).

    Returns:
        The config for ``infoaug-pretrain``.
    """
    if base not in BASES:
        raise ValueError(f"unknown base method {base!r}; choose from {', '.join(BASES)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant in PROBE_ONLY_FEATURES:
        raise ValueError(f"variant {variant!r} is not pretrained")
    if base in REFERENCE_BASES and variant != "base":
        raise ValueError(f"{base} is a reference method without InfoAug; only variant 'base' runs")
    recipe = BASES[base]
    method_kwargs = {
        "proj_hidden_dim": budget.proj_hidden_dim,
        "proj_output_dim": budget.proj_output_dim,
        **recipe.method_kwargs,
    }
    if recipe.predictor:
        method_kwargs["pred_hidden_dim"] = budget.proj_hidden_dim
    cfg: dict[str, Any] = {
        **_HYDRA_HEADER,
        "name": f"{method_name(base, variant)}-{variant}-seed{seed}",
        "method": method_name(base, variant),
        "backbone": {"name": budget.backbone},
        "method_kwargs": method_kwargs,
        **_common(data, run_dir, seed, hardware, budget.num_workers),
        "augmentations": [
            {**copy.deepcopy(VIEW_AUGMENTATIONS), "crop_size": data.crop_size, "num_crops": 2}
        ],
        "optimizer": {
            "name": recipe.optimizer,
            "batch_size": budget.batch_size,
            "lr": recipe.lr,
            "classifier_lr": 0.1,
            "weight_decay": 1e-5,
            "kwargs": _LARS_KWARGS if recipe.optimizer == "lars" else {"momentum": 0.9},
        },
        "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0.1 * budget.epochs},
        "max_epochs": budget.epochs,
        # The online classifier's validation pass is not part of the comparison; skip it.
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
    }
    if recipe.momentum is not None:
        cfg["momentum"] = {"base_tau": recipe.momentum[0], "final_tau": recipe.momentum[1]}
    if variant in TWIN_VARIANTS:
        if twins is None:
            raise ValueError(f"variant {variant!r} needs a twin store")
        selection, bn_stats = TWIN_VARIANTS[variant]
        cfg["infoaug"] = {
            "twins": str(twins),
            "weight": budget.mi_weight,
            "batch_size": budget.twin_batch_size,
            "loader": hardware.loader,
            "dali_device": hardware.dali_device,
            "num_workers": budget.num_workers,
            "image_size": data.crop_size,
            "selection": selection,
            "bn_stats": bn_stats,
            # The study augments twins exactly like the views (not with the twin recipe of
            # infoaug_plugin.config), so InfoAug differs from the base only by its pairs.
            "augmentations": copy.deepcopy(VIEW_AUGMENTATIONS),
        }
    return cfg


def linear_config(
    base: str,
    variant: str,
    data: ExportedData,
    checkpoint: Path | None,
    budget: Budget,
    hardware: Hardware,
    seed: int,
    run_dir: Path,
) -> dict[str, Any]:
    """The linear-evaluation YAML of one run, as a dict.

    Args:
        base: the base method (``pretrain_method``: the backbone factory takes the base name).
        variant: one of ``VARIANTS``; ``untrained`` and ``pixels`` set ``probe_features`` (what
            the probe reads instead of a checkpoint's backbone) and need ``budget.linear_eval``
            ``probe``.
        data: the exported data set.
        checkpoint: the pretraining checkpoint (``None`` for ``untrained`` and ``pixels``).
        budget: the shared budget.
        hardware: where it runs.
        seed: the run's seed (also the seed of the untrained backbone's initialisation).
        run_dir: the run's directory (linear checkpoints go below it).

    Returns:
        The config for ``infoaug-linear`` or the probe.

    Raises:
        ValueError: a calibration variant with solo-learn's linear evaluation, or a pretrained
            variant without a checkpoint.
    """
    probe_features = PROBE_ONLY_FEATURES.get(variant, "checkpoint")
    if probe_features != "checkpoint" and budget.linear_eval != "probe":
        raise ValueError(
            f"variant {variant!r} is evaluated by the probe only (--linear-eval probe)"
        )
    if (checkpoint is None) != (probe_features != "checkpoint"):
        raise ValueError(f"variant {variant!r}: checkpoint {checkpoint} does not fit the variant")
    return {
        **_HYDRA_HEADER,
        "name": f"linear-{method_name(base, variant)}-{variant}-seed{seed}",
        "pretrained_feature_extractor": None if checkpoint is None else str(checkpoint),
        "probe_features": probe_features,
        "pretrain_method": base,
        "backbone": {"name": budget.backbone},
        **_common(data, run_dir / "linear", seed, hardware, budget.num_workers),
        "optimizer": {
            "name": "sgd",
            "batch_size": budget.linear_batch_size,
            "lr": budget.linear_lr,
            "weight_decay": 0.0,
        },
        "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0},
        "max_epochs": budget.linear_epochs,
        "num_sanity_val_steps": 0,
    }
