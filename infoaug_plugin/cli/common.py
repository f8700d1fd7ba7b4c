# Copyright 2023 solo-learn development team.
# Adapted for InfoAug from solo-learn's main_pretrain.py / main_linear.py.

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

"""The parts ``infoaug-pretrain`` and ``infoaug-linear`` share: resuming, logging, Trainer arguments."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers.wandb import WandbLogger
from lightning.pytorch.strategies.ddp import DDPStrategy
from omegaconf import DictConfig, OmegaConf
from solo.utils.misc import omegaconf_select

from infoaug_plugin.config import ConfigError
from infoaug_plugin.resume import InfoAugAutoResumer

# solo-learn reads (and, missing, downloads) these data sets in torchvision's layout: the folder
# that torchvision unpacks below data.train_path / data.val_path.
TORCHVISION_FOLDERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "stl10": "stl10_binary",
}


def config_path_from_cwd(argv: list[str]) -> list[str]:
    """Makes a relative ``--config-path`` / ``-cp`` absolute from the working directory.

    Hydra resolves a relative config path against the file that declares ``@hydra.main``; for
    solo-learn's scripts that is the repository root, where users run them. An installed command
    lives elsewhere, so ``infoaug-pretrain --config-path solo_configs/pretrain/cifar`` is taken from
    the working directory here, like solo-learn's habit. ``pkg://`` and ``file://`` paths are kept.

    Args:
        argv: the command line (``sys.argv``).

    Returns:
        The command line with the config path made absolute.
    """
    resolved = list(argv)
    for index, arg in enumerate(resolved):
        name, equals, value = arg.partition("=")
        if name not in ("--config-path", "-cp"):
            continue
        if not equals:
            if index + 1 == len(resolved):
                break
            index, value = index + 1, resolved[index + 1]
        if "://" not in value and not os.path.isabs(value):
            value = os.path.abspath(value)
        resolved[index] = f"{name}={value}" if equals else value
    return resolved


def check_data_paths(cfg: DictConfig) -> None:
    """Refuses image-folder paths that hold nothing, before solo-learn reads (or scans) them.

    Torchvision data sets (CIFAR, STL-10) are left to :func:`data_errors`: solo-learn downloads a
    missing one.

    Args:
        cfg: the config (before or after solo-learn's ``parse_cfg``).

    Raises:
        ConfigError: naming the key, the path and what it should hold.
    """
    if cfg.data.dataset in TORCHVISION_FOLDERS:
        return
    no_labels = bool(cfg.data.get("no_labels", False))
    for key in ("train_path", "val_path"):
        path = cfg.data.get(key)
        if path is None or (key == "val_path" and no_labels):
            continue
        layout = (
            "the images themselves (data.no_labels)"
            if no_labels
            else "one sub-folder of images per class"
        )
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"data.{key}: {folder} is not a folder; it must hold {layout}")
        if not any(folder.iterdir()):
            raise ConfigError(f"data.{key}: {folder} is empty; it must hold {layout}")


@contextlib.contextmanager
def data_errors(cfg: DictConfig) -> Iterator[None]:
    """Turns the failure to read or download a missing torchvision data set into one line.

    Args:
        cfg: the parsed config.

    Yields:
        Nothing; the data loaders are built inside the block.

    Raises:
        ConfigError: a data set below ``data.train_path`` / ``data.val_path`` is missing and
            could not be read or downloaded; the message names the path and the ways to get it.
    """
    try:
        yield
    except (OSError, RuntimeError) as error:
        folder = TORCHVISION_FOLDERS.get(cfg.data.dataset)
        missing = [
            (key, Path(cfg.data[key]))
            for key in ("train_path", "val_path")
            if folder
            and cfg.data.get(key) is not None
            and not (Path(cfg.data[key]) / folder).is_dir()
        ]
        if not missing:
            raise
        key, path = missing[0]
        raise ConfigError(
            f"data.{key}: {cfg.data.dataset} is not in {path} ({folder}/) and could not be "
            f"downloaded there ({' '.join(str(error).split())}); unpack the official archive "
            f"into {path}, or run once with network access (solo-learn downloads it)"
        ) from None


def run_reporting_errors(command: str, task: Callable[[], Any], *errors: type[Exception]) -> None:
    """Runs ``task``; a refused input (``errors``) ends the command with one line on stderr.

    As Hydra does for its own errors, the full trace is kept for ``HYDRA_FULL_ERROR=1``.

    Args:
        command: the command's name, the line's prefix.
        task: the command's work.
        *errors: the exceptions that report a bad input (their message names it).

    Raises:
        SystemExit: with status 2 after a refused input.
    """
    try:
        task()
    except errors as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None


def check_knn_eval(cfg: DictConfig) -> None:
    """Refuses ``knn_eval.enabled`` where solo-learn's kNN metric cannot be built.

    solo's ``WeightedKNNClassifier`` passes ``compute_on_step``, which torchmetrics removed in 0.12.

    Args:
        cfg: the parsed config.

    Raises:
        ConfigError: kNN evaluation is on and torchmetrics is 0.12 or newer.
    """
    if not omegaconf_select(cfg, "knn_eval.enabled", False):
        return
    major, minor = (int(part) for part in version("torchmetrics").split(".")[:2])
    if (major, minor) >= (0, 12):
        raise ConfigError(
            f"knn_eval.enabled: solo-learn's kNN metric needs torchmetrics < 0.12 (installed: "
            f"{version('torchmetrics')}); set knn_eval.enabled=False or install solo-learn's pin"
        )


def find_resume_checkpoint(cfg: DictConfig, checkpoint_dir: str) -> tuple[str | None, str | None]:
    """The checkpoint to resume from: ``resume_from_checkpoint``, or the auto-resumer's match.

    With ``auto_resume.enabled`` (the shipped YAMLs' default, as solo-learn's) and no explicit
    checkpoint, :class:`~infoaug_plugin.resume.InfoAugAutoResumer` picks the newest complete
    checkpoint of a recent run with the same solo-learn keys and the same ``infoaug:`` node.

    Args:
        cfg: the parsed config (``resume_from_checkpoint`` is removed once read).
        checkpoint_dir: where the auto-resumer looks.

    Returns:
        ``(checkpoint path or None, wandb run id or None)``.
    """
    if cfg.auto_resume.enabled and cfg.resume_from_checkpoint is None:
        auto_resumer = InfoAugAutoResumer(
            checkpoint_dir=checkpoint_dir, max_hours=cfg.auto_resume.max_hours
        )
        resume_from_checkpoint, wandb_run_id = auto_resumer.find_checkpoint(cfg)
        if resume_from_checkpoint is None:
            return None, None
        print("Resuming from previous checkpoint that matches specifications:", end=" ")
        print(f"'{resume_from_checkpoint}'")
        return str(resume_from_checkpoint), wandb_run_id
    ckpt_path = cfg.resume_from_checkpoint
    del cfg.resume_from_checkpoint
    return ckpt_path, None


def build_wandb_logger(
    cfg: DictConfig, model: pl.LightningModule, wandb_run_id: str | None, callbacks: list[Callback]
) -> WandbLogger | None:
    """solo-learn's wandb logger (and an lr monitor) when ``wandb.enabled``, else ``None``.

    Args:
        cfg: the parsed config.
        model: the module whose gradients are watched.
        wandb_run_id: run to resume, if any.
        callbacks: the trainer's callbacks; the lr monitor is appended.

    Returns:
        The logger, or ``None`` (Lightning's default logger).
    """
    if not cfg.wandb.enabled:
        return None
    wandb_logger = WandbLogger(
        name=cfg.name,
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        offline=cfg.wandb.offline,
        resume="allow" if wandb_run_id else None,
        id=wandb_run_id,
    )
    wandb_logger.watch(model, log="gradients", log_freq=100)
    wandb_logger.log_hyperparams(OmegaConf.to_container(cfg))
    callbacks.append(LearningRateMonitor(logging_interval="step"))
    return wandb_logger


def build_trainer(cfg: DictConfig, logger: Any, callbacks: list[Callback]) -> Trainer:
    """A Trainer from every top-level key that names a ``Trainer`` argument, as solo-learn does.

    On ``accelerator: cpu`` a device list (``devices: [0]``, solo's GPU habit, which Lightning
    refuses on CPU) becomes its length.

    Args:
        cfg: the parsed config.
        logger: the logger, or ``None`` for Lightning's default.
        callbacks: the callbacks.

    Returns:
        The trainer.
    """
    kwargs = OmegaConf.to_container(cfg)
    valid = inspect.signature(Trainer.__init__).parameters
    kwargs = {name: kwargs[name] for name in valid if name in kwargs}
    if cfg.get("accelerator") == "cpu" and isinstance(kwargs.get("devices"), list):
        kwargs["devices"] = len(kwargs["devices"])
    kwargs.update(
        {
            "logger": logger,
            "callbacks": callbacks,
            "enable_checkpointing": False,
            "strategy": (
                DDPStrategy(find_unused_parameters=False)
                if cfg.strategy == "ddp"
                else cfg.strategy or "auto"
            ),
        }
    )
    return Trainer(**kwargs)
