# Copyright 2023 solo-learn development team.
# Adapted for InfoAug from solo-learn's main_linear.py.

# Permission is hereby granted, free of charge, to any person obtaining a copy of
# this software and associated documentation files (the "Software"), to deal in
# the Software without restriction, including without limitation the rights to use,
# copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the
# Software, and to permit persons to whom the Software is furnished to do so,
# subject to the following conditions:

# The above copyright notice and this permission notice shall be included in all copies
# or substantial portions of the Software.

# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
# INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
# PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
# FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
# OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
# DEALINGS IN THE SOFTWARE.

"""``infoaug-linear``: linear evaluation of a pretrained backbone (solo-learn's main_linear.py).

Usage, as with solo-learn's scripts (quote a checkpoint path that contains ``=``)::

    infoaug-linear --config-path solo_configs/linear/cifar --config-name infoaug_simclr.yaml \
        'pretrained_feature_extractor="trained_models/infoaug_simclr/RUN/NAME-ep=999.ckpt"'

Unlike solo's script, the checkpoint is read with ``torch.load(weights_only=True)`` (no code runs
while loading) and a checkpoint without any ``backbone.*`` weights is refused instead of silently
evaluating a random backbone.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
import torch
import torch.nn as nn
from lightning.pytorch import Trainer
from omegaconf import DictConfig, OmegaConf
from solo.args.linear import parse_cfg
from solo.data.classification_dataloader import prepare_data
from solo.methods.base import BaseMethod
from solo.methods.linear import LinearModel
from solo.utils.checkpointer import Checkpointer
from solo.utils.misc import make_contiguous
from timm.data.mixup import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from infoaug_plugin.cli.common import (
    build_trainer,
    build_wandb_logger,
    check_data_paths,
    config_path_from_cwd,
    data_errors,
    find_resume_checkpoint,
    run_reporting_errors,
)
from infoaug_plugin.config import ConfigError

try:
    from solo.data.dali_dataloader import ClassificationDALIDataModule
except ImportError:
    _dali_available = False
else:
    _dali_available = True

CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")


def build_backbone(cfg: DictConfig) -> nn.Module:
    """The bare backbone as solo-learn builds it for linear evaluation (CIFAR stem on CIFAR).

    Args:
        cfg: the parsed linear config.

    Returns:
        The backbone, randomly initialised.
    """
    backbone = BaseMethod._BACKBONES[cfg.backbone.name](
        method=cfg.pretrain_method, **cfg.backbone.kwargs
    )
    if cfg.backbone.name.startswith("resnet"):
        backbone.fc = nn.Identity()
        if cfg.data.dataset in ["cifar10", "cifar100"]:
            backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = nn.Identity()
    return backbone


def load_backbone_weights(backbone: nn.Module, ckpt_path: str) -> None:
    """Loads the ``backbone.*`` weights of a pretraining checkpoint into ``backbone``.

    Args:
        backbone: the bare backbone.
        ckpt_path: a solo-learn / InfoAug checkpoint.

    Raises:
        ConfigError: the path has no checkpoint suffix, or the checkpoint holds no weight the
            backbone expects.
    """
    if not str(ckpt_path).endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(
            f"pretrained_feature_extractor: {ckpt_path!r} must end with one of {CHECKPOINT_SUFFIXES}"
        )
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    for key in list(state.keys()):
        if "encoder" in key:
            state[key.replace("encoder", "backbone")] = state[key]
            logging.warning(
                "You are using an older checkpoint. Use a new one as some issues might arrise."
            )
        if "backbone" in key:
            state[key.replace("backbone.", "")] = state[key]
        del state[key]
    missing, _ = backbone.load_state_dict(state, strict=False)
    if len(missing) == len(backbone.state_dict()):
        raise ConfigError(
            f"pretrained_feature_extractor: {ckpt_path} has no weight of the {type(backbone).__name__} backbone"
        )
    if missing:
        logging.warning(f"{ckpt_path}: backbone weights missing from the checkpoint: {missing}")
    logging.info(f"Loaded {ckpt_path}")


def build_loss(cfg: DictConfig) -> tuple[nn.Module, Mixup | None]:
    """solo-learn's linear loss: mixup/cutmix soft targets, label smoothing or cross-entropy.

    Args:
        cfg: the parsed linear config.

    Returns:
        ``(loss function, mixup function or None)``.
    """
    if cfg.mixup > 0 or cfg.cutmix > 0:
        logging.info("Mixup activated")
        mixup_func = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            cutmix_minmax=None,
            prob=1.0,
            switch_prob=0.5,
            mode="batch",
            label_smoothing=cfg.label_smoothing,
            num_classes=cfg.data.num_classes,
        )
        # smoothing is handled with mixup label transform
        return SoftTargetCrossEntropy(), mixup_func
    if cfg.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing), None
    return torch.nn.CrossEntropyLoss(), None


def linear(cfg: DictConfig) -> Trainer:
    """Runs linear evaluation as configured.

    Args:
        cfg: the composed Hydra config (struct mode is lifted).

    Returns:
        The trainer after ``fit``.
    """
    OmegaConf.set_struct(cfg, False)
    check_data_paths(cfg)  # solo's parse_cfg already scans data.train_path
    cfg = parse_cfg(cfg)

    backbone = build_backbone(cfg)
    load_backbone_weights(backbone, cfg.pretrained_feature_extractor)
    loss_func, mixup_func = build_loss(cfg)
    model = LinearModel(backbone, loss_func=loss_func, mixup_func=mixup_func, cfg=cfg)
    make_contiguous(model)
    # can provide up to ~20% speed up
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)

    with data_errors(cfg):
        train_loader, val_loader = prepare_data(
            cfg.data.dataset,
            train_data_path=cfg.data.train_path,
            val_data_path=cfg.data.val_path,
            data_format="image_folder" if cfg.data.format == "dali" else cfg.data.format,
            batch_size=cfg.optimizer.batch_size,
            num_workers=cfg.data.num_workers,
            auto_augment=cfg.auto_augment,
        )
    if cfg.data.format == "dali":
        if not _dali_available:
            raise ConfigError(
                "data.format: dali needs NVIDIA DALI; install it with pip install 'infoaug[dali]'"
            )
        if cfg.auto_augment:
            raise ConfigError("auto_augment: not supported with data.format: dali")
        dali_datamodule = ClassificationDALIDataModule(
            dataset=cfg.data.dataset,
            train_data_path=cfg.data.train_path,
            val_data_path=cfg.data.val_path,
            num_workers=cfg.data.num_workers,
            batch_size=cfg.optimizer.batch_size,
            data_fraction=cfg.data.fraction,
            dali_device=cfg.dali.device,
        )
        # use normal torchvision dataloader for validation to save memory
        dali_datamodule.val_dataloader = lambda: val_loader

    ckpt_path, wandb_run_id = find_resume_checkpoint(
        cfg, os.path.join(cfg.checkpoint.dir, "linear")
    )
    callbacks = []
    if cfg.checkpoint.enabled:
        callbacks.append(
            Checkpointer(
                cfg,
                logdir=os.path.join(cfg.checkpoint.dir, "linear"),
                frequency=cfg.checkpoint.frequency,
                keep_prev=cfg.checkpoint.keep_prev,
            )
        )
    logger = build_wandb_logger(cfg, model, wandb_run_id, callbacks)
    trainer = build_trainer(cfg, logger, callbacks)

    if cfg.data.format == "dali":
        trainer.fit(model, ckpt_path=ckpt_path, datamodule=dali_datamodule)
    else:
        trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path)
    return trainer


@hydra.main(version_base="1.2", config_path=None)
def hydra_main(cfg: DictConfig) -> None:
    """Hydra task of ``infoaug-linear``: a refused input ends it with one line."""
    run_reporting_errors("infoaug-linear", lambda: linear(cfg), ConfigError)


def main() -> None:
    """Console entry point of ``infoaug-linear`` (``--config-path`` relative to the working directory)."""
    sys.argv = config_path_from_cwd(sys.argv)
    hydra_main()


if __name__ == "__main__":
    main()
