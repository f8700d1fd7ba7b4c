"""Resuming a pretraining run where it stopped, InfoAug included.

:class:`InfoAugAutoResumer` is solo-learn's ``AutoResumer`` (the same search of
``checkpoint.dir/<method>`` for a recent run whose ``args.json`` matches solo-learn's keys) that
also requires the whole ``infoaug:`` node to match, the twin store's identity included
(``infoaug.store_manifest_sha256``, the SHA-256 of its ``manifest.json``), and that picks the
newest complete checkpoint of a run.

:class:`ResumeState` carries in the checkpoint what Lightning's own leaves out, so that a resumed
run continues as the uninterrupted one would: the global random states (they drive the data order
and the augmentations), the EMA coefficient of momentum methods, and the twin loader's epoch and
position (:class:`~infoaug_plugin.data.PacedTwinLoader`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from solo.utils.auto_resumer import AutoResumer

from infoaug_plugin.config import ConfigError
from infoaug_plugin.data import PacedTwinLoader
from twin_store import MANIFEST_NAME


def store_manifest_sha256(twins: str | Path) -> str:
    """The identity of a twin store: the SHA-256 of its ``manifest.json`` bytes.

    A store's manifest is written last and lists its videos, parameters and counts, so a store
    that is rebuilt, extended or replaced gets another identity.

    Args:
        twins: the store's directory.

    Returns:
        The hex digest.
    """
    return hashlib.sha256((Path(twins) / MANIFEST_NAME).read_bytes()).hexdigest()


def record_store_identity(cfg: DictConfig) -> None:
    """Sets ``infoaug.store_manifest_sha256`` to the store's identity, so that ``args.json``,
    the logger and the resumer see which store a run trained on.

    Args:
        cfg: the config, its ``infoaug`` node completed and its store validated.

    Raises:
        ConfigError: the config names another identity than the store has.
    """
    digest = store_manifest_sha256(cfg.infoaug.twins)
    given = cfg.infoaug.store_manifest_sha256
    if given is not None and given != digest:
        raise ConfigError(
            f"infoaug.store_manifest_sha256: the store {cfg.infoaug.twins} has manifest "
            f"SHA-256 {digest}, not {given} (was it rebuilt?); remove the key to train on it"
        )
    cfg.infoaug.store_manifest_sha256 = digest


class InfoAugAutoResumer(AutoResumer):
    """solo-learn's AutoResumer, matching the ``infoaug:`` node too."""

    SHOULD_MATCH: ClassVar[tuple[str, ...]] = (*AutoResumer.SHOULD_MATCH, "infoaug")

    def find_checkpoint(self, cfg: DictConfig) -> tuple[Path | None, str | None]:
        """The newest complete checkpoint of the most recent matching run, as solo-learn's.

        A run matches when every key of ``SHOULD_MATCH`` is equal in its ``args.json`` and in
        ``cfg`` (both absent counts as equal); runs older than ``max_hours`` are ignored. A
        checkpoint cut short by a kill during its write is passed over.

        Args:
            cfg: the completed config of the new run.

        Returns:
            ``(checkpoint, wandb run id)``, or ``(None, None)``.
        """
        now = datetime.now()
        runs = []
        for folder, _, files in os.walk(self.checkpoint_dir):
            args = Path(folder) / "args.json"
            checkpoints = [Path(folder) / name for name in files if name.endswith(".ckpt")]
            checkpoints = [path for path in checkpoints if zipfile.is_zipfile(path)]
            if not args.is_file() or not checkpoints:
                continue
            newest = max(checkpoints, key=os.path.getmtime)
            created = datetime.fromtimestamp(os.path.getmtime(newest))
            if now - created < self.max_hours:
                runs.append((created, args, newest))
        for _, args, checkpoint in sorted(runs, reverse=True):
            try:
                candidate = json.loads(args.read_text())
            except (OSError, ValueError):
                continue
            if all(_select(candidate, key) == _select(cfg, key) for key in self.SHOULD_MATCH):
                return checkpoint, candidate.get("wandb_run_id")
        return None, None


def _select(cfg: DictConfig | dict, key: str) -> Any:
    """``cfg``'s value at the dotted ``key`` as plain containers, ``None`` when absent."""
    value = OmegaConf.select(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg, key)
    if value == "None":  # solo-learn's omegaconf_select habit
        return None
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class ResumeState(Callback):
    """Carries the random states, the EMA coefficient and the twin loader's position in the
    checkpoint, and puts them back when a run resumes from it.

    The random states are those at the checkpoint (solo-learn's ``Checkpointer`` saves at the end
    of an epoch) and are restored at the start of the next epoch, after Lightning's sanity check,
    so the resumed run draws the same data order and augmentations as the uninterrupted one. This
    is exact where every random draw comes from these states: loaders with ``num_workers: 0``
    (with workers, each DataLoader pass seeds them from the restored state; DALI pipelines keep
    their own seeds, so DALI augmentations differ after a resume).
    """

    def __init__(self) -> None:
        super().__init__()
        self._restored: dict[str, Any] | None = None
        self._module: pl.LightningModule | None = None
        self._twin_loader: PacedTwinLoader | None = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (only tensors, numbers and lists: ``weights_only``-safe)."""
        state: dict[str, Any] = {"rng": _rng_states()}
        module = self._module
        if module is not None and hasattr(module, "momentum_updater"):
            state["momentum_tau"] = float(module.momentum_updater.cur_tau)
        if self._twin_loader is not None:
            state["twin_loader"] = self._twin_loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keeps the checkpoint's state until training starts."""
        self._restored = state_dict

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Keeps the module, whose EMA coefficient the checkpoint carries."""
        self._module = pl_module

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Finds the twin loader and moves it, and the EMA coefficient, to the checkpoint's."""
        loaders = trainer.train_dataloader
        twin = loaders.get("twin") if isinstance(loaders, dict) else None
        self._twin_loader = twin if isinstance(twin, PacedTwinLoader) else None
        if self._restored is None:
            return
        if "momentum_tau" in self._restored:
            pl_module.momentum_updater.cur_tau = self._restored["momentum_tau"]
        if self._twin_loader is not None and "twin_loader" in self._restored:
            self._twin_loader.load_state_dict(self._restored["twin_loader"])

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restores the checkpoint's random states once, before the epoch draws any."""
        if self._restored is not None:
            _set_rng_states(self._restored["rng"])
            self._restored = None


def _rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            position,
            has_gauss,
            cached_gaussian,
        ],
        "python": [version, list(python_state), gauss_next],
    }
    if torch.cuda.is_available():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    )
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
