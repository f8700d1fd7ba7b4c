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

import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import hydra
import solo.methods.linear
import torch
import torch.nn as nn
from lightning.pytorch import Trainer
from omegaconf import DictConfig, OmegaConf
from solo.args.linear import parse_cfg
from solo.data.classification_dataloader import prepare_data
from solo.methods.base import BaseMethod
from solo.methods.linear import LinearModel
from solo.utils.checkpointer import Checkpointer
from solo.utils.metrics import accuracy_at_k
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


def read_checkpoint_state(ckpt_path: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a pretraining checkpoint, read with ``weights_only=True``.

    Args:
        ckpt_path: a solo-learn / InfoAug checkpoint.

    Returns:
        The checkpoint's ``state_dict``.

    Raises:
        ConfigError: the path has no checkpoint suffix, cannot be read, is not a checkpoint of
            tensors and plain data, or has no ``state_dict``; the message names the file.
    """
    where = f"pretrained_feature_extractor: {ckpt_path}"
    if not str(ckpt_path).endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(f"{where} must end with one of {CHECKPOINT_SUFFIXES}")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it ({error.strerror or error})") from None
    except EOFError:
        raise ConfigError(f"{where}: the file is empty or cut short; not a checkpoint") from None
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run the file's code.
        raise ConfigError(
            f"{where}: not a PyTorch checkpoint of tensors and plain data (corrupt, or written "
            "by something other than solo-learn / InfoAug pretraining)"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(
            f"{where}: has no 'state_dict'; pass a checkpoint saved by infoaug-pretrain or "
            "solo-learn's main_pretrain.py"
        )
    return state


def load_backbone_weights(backbone: nn.Module, ckpt_path: str) -> None:
    """Loads the ``backbone.*`` weights of a pretraining checkpoint into ``backbone``.

    Args:
        backbone: the bare backbone.
        ckpt_path: a solo-learn / InfoAug checkpoint.

    Raises:
        ConfigError: the checkpoint cannot be read (see :func:`read_checkpoint_state`), holds no
            weight the backbone expects, or holds weights of another shape (another backbone).
    """
    state = read_checkpoint_state(ckpt_path)
    for key in list(state.keys()):
        if "encoder" in key:
            state[key.replace("encoder", "backbone")] = state[key]
            logging.warning(
                "You are using an older checkpoint. Use a new one as some issues might arrise."
            )
        if "backbone" in key:
            state[key.replace("backbone.", "")] = state[key]
        del state[key]
    expected = backbone.state_dict()
    mismatched = [
        f"{key}: {tuple(state[key].shape)} in the checkpoint, {tuple(expected[key].shape)} here"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if mismatched:
        raise ConfigError(
            f"pretrained_feature_extractor: {ckpt_path}: {len(mismatched)} backbone weights do "
            f"not fit the backbone being evaluated (first: {mismatched[0]}); set "
            "backbone.name to the backbone it was pretrained with"
        )
    missing, _ = backbone.load_state_dict(state, strict=False)
    if len(missing) == len(expected):
        raise ConfigError(
            f"pretrained_feature_extractor: {ckpt_path} has no weight of the {type(backbone).__name__} backbone"
        )
    if missing:
        logging.warning(f"{ckpt_path}: backbone weights missing from the checkpoint: {missing}")
    logging.info(f"Loaded {ckpt_path}")


class FewClassLinearModel(LinearModel):
    """solo-learn's ``LinearModel`` whose top-5 accuracy is top-min(5, classes).

    solo computes ``acc5`` with ``top_k=(1, 5)``, which fails on fewer than 5 classes ("selected
    index k out of range"). Here each k is capped at the number of classes while solo's step runs,
    so ``val_acc5`` of a 2-class folder is its top-2 accuracy; with 5 or more classes nothing
    changes.
    """

    def shared_step(self, batch: tuple, batch_idx: int) -> dict[str, Any]:
        """solo's step, with the top-k cap in force."""
        with _top_k_capped_at(self.classifier.out_features):
            return super().shared_step(batch, batch_idx)


@contextlib.contextmanager
def _top_k_capped_at(num_classes: int) -> Iterator[None]:
    """Caps the k of solo's linear-model accuracy at ``num_classes`` inside the block.

    Args:
        num_classes: the classifier's output size.

    Yields:
        Nothing; solo's ``shared_step`` runs inside the block.
    """

    def capped_accuracy_at_k(
        outputs: torch.Tensor, targets: torch.Tensor, top_k: Sequence[int] = (1, 5)
    ) -> Sequence[torch.Tensor]:
        return accuracy_at_k(outputs, targets, top_k=[min(k, num_classes) for k in top_k])

    solo.methods.linear.accuracy_at_k = capped_accuracy_at_k
    try:
        yield
    finally:
        solo.methods.linear.accuracy_at_k = accuracy_at_k


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
    model = FewClassLinearModel(backbone, loss_func=loss_func, mixup_func=mixup_func, cfg=cfg)
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
