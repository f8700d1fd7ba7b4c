# Copyright 2023 solo-learn development team.
# Adapted for InfoAug from solo-learn's main_pretrain.py.

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

"""``infoaug-pretrain``: pretrain an ``infoaug_<base>`` method (solo-learn's main_pretrain.py + twins).

Usage, as with solo-learn's scripts::

    infoaug-pretrain --config-path solo_configs/pretrain/cifar --config-name infoaug_simclr.yaml \
        data.train_path=./datasets infoaug.twins=./twins

The twin store is validated before the model or the trainer is built. Training then gets
``{"main": <solo-learn's pretrain loader>, "twin": <twin loader>}``; the twin loader is paced to
the main loader's epochs, so the lr and momentum schedules follow the main data.

A plain solo-learn method (``method: simclr``, ...) runs too, on the same code path without the
twins, so a baseline differs from its InfoAug run only by the MI branch.
"""

from __future__ import annotations

import math
import os
import sys

import hydra
import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from omegaconf import DictConfig, OmegaConf
from solo.args.pretrain import parse_cfg
from solo.data.classification_dataloader import prepare_data as prepare_data_classification
from solo.data.pretrain_dataloader import (
    FullTransformPipeline,
    NCropAugmentation,
    build_transform_pipeline,
    prepare_dataloader,
    prepare_datasets,
)
from solo.methods import METHODS
from solo.utils.checkpointer import Checkpointer
from solo.utils.misc import make_contiguous, omegaconf_select
from torch.utils.data import DataLoader

import infoaug_plugin  # noqa: F401  (registers the infoaug_<base> methods in solo's METHODS)
from infoaug_plugin.cli.common import (
    build_trainer,
    build_wandb_logger,
    check_data_paths,
    check_knn_eval,
    config_path_from_cwd,
    data_errors,
    find_resume_checkpoint,
    run_reporting_errors,
)
from infoaug_plugin.config import ConfigError
from infoaug_plugin.data import PacedTwinLoader, TwinLoader, build_twin_loader, fill_loader_defaults
from infoaug_plugin.data.sampling import check_random_twins
from infoaug_plugin.methods import INFOAUG_METHODS, method_class
from infoaug_plugin.resume import ResumeState, record_store_identity
from infoaug_plugin.twin_examples import TwinExamples
from twin_store import TwinStore, TwinStoreError, open_store

try:
    from nvidia.dali.plugin.pytorch import LastBatchPolicy
    from solo.data.dali_dataloader import (
        PretrainDALIDataModule,
        PretrainPipelineBuilder,
        PretrainWrapper,
        build_transform_pipeline_dali,
    )
except ImportError:
    _dali_available = False
else:
    _dali_available = True

try:
    from solo.utils.auto_umap import AutoUMAP
except ImportError:
    _umap_available = False
else:
    _umap_available = True


def check_method(cfg: DictConfig) -> None:
    """Refuses a method that solo's ``METHODS`` does not hold, or crops it cannot train on.

    Args:
        cfg: the parsed config.

    Raises:
        ConfigError: naming the method and the available ones, or the number of large crops.
    """
    if cfg.method not in METHODS:
        raise ConfigError(
            f"method: {cfg.method!r} is unknown; choose from {', '.join(sorted(METHODS))}"
        )
    # solo-learn's main_pretrain.py rule: only WMSE and MAE train on other than two large crops.
    if cfg.data.num_large_crops != 2 and cfg.method not in ("wmse", "mae"):
        raise ConfigError(
            f"augmentations: {cfg.method} needs 2 large crops, got {cfg.data.num_large_crops}"
        )


def prepare_twin_store(cfg: DictConfig) -> TwinStore:
    """Completes ``cfg.infoaug`` and validates its twin store, before anything is built.

    The node is completed as the method completes it (the twin batch defaults to
    ``optimizer.batch_size``, the twin crop to the main crop size), so the twin loader, the
    resumer and the model read the same values.

    Args:
        cfg: the parsed config.

    Returns:
        The validated store.

    Raises:
        ConfigError: the ``infoaug`` node is missing or has a bad value.
        TwinStoreError: the store is unusable (the message names the store and the problem).
    """
    if not isinstance(omegaconf_select(cfg, "infoaug"), DictConfig):
        raise ConfigError(
            "infoaug: the config needs an 'infoaug:' node with at least 'twins' (the twin store)"
        )
    METHODS[cfg.method].add_and_assert_specific_cfg(cfg)
    fill_loader_defaults(cfg.infoaug)  # and the twin store is required
    store = open_store(cfg.infoaug.twins, min_pairs=cfg.infoaug.batch_size)
    if cfg.infoaug.selection == "random":
        check_random_twins(store)  # refuses a frame without a second patch now, not after the build
    return store


def build_val_loader(cfg: DictConfig) -> DataLoader | None:
    """solo-learn's validation loader, when the data set has one.

    Args:
        cfg: the parsed config.

    Returns:
        The loader, or ``None`` (custom data without labels or ``val_path``, ImageNet without
        ``val_path``).
    """
    if cfg.data.dataset == "custom" and (cfg.data.no_labels or cfg.data.val_path is None):
        return None
    if cfg.data.dataset in ["imagenet100", "imagenet"] and cfg.data.val_path is None:
        return None
    _, val_loader = prepare_data_classification(
        cfg.data.dataset,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format="image_folder" if cfg.data.format == "dali" else cfg.data.format,
        batch_size=cfg.optimizer.batch_size,
        num_workers=cfg.data.num_workers,
    )
    return val_loader


def build_train_loader(cfg: DictConfig) -> DataLoader:
    """solo-learn's pretrain loader (torchvision formats) with the N-crop views of ``augmentations``.

    Args:
        cfg: the parsed config.

    Returns:
        The loader of ``[indexes, [views], targets]`` batches.
    """
    pipelines = [
        NCropAugmentation(build_transform_pipeline(cfg.data.dataset, aug_cfg), aug_cfg.num_crops)
        for aug_cfg in cfg.augmentations
    ]
    transform = FullTransformPipeline(pipelines)
    if cfg.debug_augmentations:
        print("Transforms:")
        print(transform)
    train_dataset = prepare_datasets(
        cfg.data.dataset,
        transform,
        train_data_path=cfg.data.train_path,
        data_format=cfg.data.format,
        no_labels=cfg.data.no_labels,
        data_fraction=cfg.data.fraction,
    )
    return prepare_dataloader(
        train_dataset, batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers
    )


class InfoAugDALIDataModule(PretrainDALIDataModule if _dali_available else LightningDataModule):
    """solo-learn's DALI pretrain data module, on CPU too, serving ``{"main", "twin"}``
    (only the main loader for a plain solo-learn method).

    solo's module always gives DALI a CUDA device; here a ``dali.device: cpu`` pipeline gets
    ``device_id=None`` (DALI's CPU-only mode), and the dummy sample indexes are offset by the global
    rank so that they stay unique across nodes.
    """

    def __init__(self, *args, twin_loader_factory=None, **kwargs):
        """Takes solo's ``PretrainDALIDataModule`` arguments and the twin loader's factory.

        Args:
            *args: positional arguments of ``PretrainDALIDataModule``.
            twin_loader_factory: called with the trainer in ``setup`` to build the twin loader;
                None for a plain solo-learn method.
            **kwargs: keyword arguments of ``PretrainDALIDataModule``.
        """
        super().__init__(*args, **kwargs)
        self.twin_loader_factory = twin_loader_factory

    def setup(self, stage: str | None = None) -> None:
        """Builds the main DALI pipeline and the twin loader for this process's shard."""
        cuda = torch.cuda.is_available() and self.dali_device == "gpu"
        self.device = (
            torch.device(f"cuda:{torch.cuda.current_device()}") if cuda else torch.device("cpu")
        )
        builder = PretrainPipelineBuilder(
            self.train_data_path,
            batch_size=self.batch_size,
            transforms=self.transforms,
            device=self.dali_device,
            device_id=self.trainer.local_rank,
            shard_id=self.trainer.global_rank,
            num_shards=self.trainer.world_size,
            num_threads=max(1, self.num_workers),  # DALI needs a thread; data.num_workers may be 0
            no_labels=self.no_labels,
            encode_indexes_into_labels=self.encode_indexes_into_labels,
            data_fraction=self.data_fraction,
        )
        pipeline = builder.pipeline(
            batch_size=builder.batch_size,
            num_threads=builder.num_threads,
            device_id=self.device.index if cuda else None,
            seed=builder.seed,
        )
        pipeline.build()
        output_map = (
            [f"large{i}" for i in range(self.num_large_crops)]
            + [f"small{i}" for i in range(self.num_small_crops)]
            + ["label"]
        )
        self.train_loader = PretrainWrapper(
            model_batch_size=self.batch_size,
            model_rank=self.trainer.global_rank,
            model_device=self.device,
            dataset_size=pipeline.epoch_size("Reader"),
            conversion_map=builder.conversion_map if self.encode_indexes_into_labels else None,
            pipelines=pipeline,
            output_map=output_map,
            reader_name="Reader",
            last_batch_policy=LastBatchPolicy.DROP,
            auto_reset=True,
        )
        self.twin_loader = (
            None if self.twin_loader_factory is None else self.twin_loader_factory(self.trainer)
        )

    def train_dataloader(self):
        """The main DALI loader and the twin loader paced to it (the main loader alone without twins)."""
        if self.twin_loader is None:
            return self.train_loader
        return {
            "main": self.train_loader,
            "twin": PacedTwinLoader(self.twin_loader, len(self.train_loader)),
        }


def build_dali_datamodule(cfg: DictConfig, twin_loader_factory=None) -> InfoAugDALIDataModule:
    """The DALI pretrain data module (``data.format: dali``).

    Args:
        cfg: the parsed config.
        twin_loader_factory: builds the twin loader from the trainer; None for a plain method.

    Returns:
        The data module (its ``val_dataloader`` is set by the caller).
    """
    if not _dali_available:
        raise ConfigError(
            "data.format: dali needs NVIDIA DALI; install it with pip install 'infoaug[dali]'"
        )
    pipelines = [
        NCropAugmentation(
            build_transform_pipeline_dali(cfg.data.dataset, aug_cfg, dali_device=cfg.dali.device),
            aug_cfg.num_crops,
        )
        for aug_cfg in cfg.augmentations
    ]
    return InfoAugDALIDataModule(
        dataset=cfg.data.dataset,
        train_data_path=cfg.data.train_path,
        transforms=FullTransformPipeline(pipelines),
        num_large_crops=cfg.data.num_large_crops,
        num_small_crops=cfg.data.num_small_crops,
        num_workers=cfg.data.num_workers,
        batch_size=cfg.optimizer.batch_size,
        no_labels=cfg.data.no_labels,
        data_fraction=cfg.data.fraction,
        dali_device=cfg.dali.device,
        encode_indexes_into_labels=cfg.dali.encode_indexes_into_labels,
        twin_loader_factory=twin_loader_factory,
    )


def twin_loader_for(cfg: DictConfig, store: TwinStore, trainer: Trainer) -> TwinLoader:
    """The twin loader of this process: shard ``global_rank`` of ``world_size``.

    Args:
        cfg: the parsed config (``infoaug`` completed by :func:`prepare_twin_store`).
        store: the validated store.
        trainer: the trainer (ranks and device).

    Returns:
        The twin loader.
    """
    root_device = trainer.strategy.root_device
    on_gpu = cfg.infoaug.dali_device == "gpu" and root_device.type == "cuda"
    return build_twin_loader(
        cfg.infoaug,
        shard_id=trainer.global_rank,
        num_shards=trainer.world_size,
        device_id=root_device.index if on_gpu else None,
        seed=cfg.seed,
        store=store,
    )


def build_callbacks(cfg: DictConfig) -> list:
    """solo-learn's Checkpointer and AutoUMAP callbacks, as configured, the state that a resumed
    run needs besides Lightning's (:class:`~infoaug_plugin.resume.ResumeState`) and, with a logger,
    the grid of each epoch's first (patch | twin) pairs
    (:class:`~infoaug_plugin.twin_examples.TwinExamples`)."""
    callbacks: list = [ResumeState(), TwinExamples()]
    if cfg.checkpoint.enabled:
        callbacks.append(
            Checkpointer(
                cfg,
                logdir=os.path.join(cfg.checkpoint.dir, cfg.method),
                frequency=cfg.checkpoint.frequency,
                keep_prev=cfg.checkpoint.keep_prev,
            )
        )
    if omegaconf_select(cfg, "auto_umap.enabled", False):
        if not _umap_available:
            raise ConfigError(
                "auto_umap.enabled: UMAP is not available; install solo-learn's [umap] extra"
            )
        callbacks.append(
            AutoUMAP(
                cfg.name,
                logdir=os.path.join(cfg.auto_umap.dir, cfg.method),
                frequency=cfg.auto_umap.frequency,
            )
        )
    return callbacks


def pretrain(cfg: DictConfig) -> Trainer:
    """Runs InfoAug pretraining as configured.

    Args:
        cfg: the composed Hydra config (struct mode is lifted).

    Returns:
        The trainer after ``fit``.
    """
    OmegaConf.set_struct(cfg, False)
    check_data_paths(cfg)  # solo's parse_cfg already scans data.train_path
    cfg = parse_cfg(cfg)
    check_method(cfg)
    check_knn_eval(cfg)
    twin_store = prepare_twin_store(cfg) if cfg.method in INFOAUG_METHODS else None
    if twin_store is not None:
        record_store_identity(cfg)

    seed_everything(cfg.seed)
    model = method_class(cfg.method)(cfg)
    make_contiguous(model)
    # can provide up to ~20% speed up
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)

    with data_errors(cfg):
        val_loader = build_val_loader(cfg)
    if cfg.data.format == "dali":
        twin_loader_factory = (
            None
            if twin_store is None
            else lambda trainer: twin_loader_for(cfg, twin_store, trainer)
        )
        datamodule = build_dali_datamodule(cfg, twin_loader_factory)
        datamodule.val_dataloader = lambda: val_loader
    else:
        with data_errors(cfg):
            train_loader = build_train_loader(cfg)

    ckpt_path, wandb_run_id = find_resume_checkpoint(
        cfg, os.path.join(cfg.checkpoint.dir, cfg.method)
    )
    callbacks = build_callbacks(cfg)
    logger = build_wandb_logger(cfg, model, wandb_run_id, callbacks)
    trainer = build_trainer(cfg, logger, callbacks)

    if cfg.data.format == "dali":
        trainer.fit(model, ckpt_path=ckpt_path, datamodule=datamodule)
    elif twin_store is None:
        trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path)
    else:
        # Under DDP, Lightning gives the main loader a DistributedSampler: ceil(N / world) samples.
        steps = (
            math.ceil(len(train_loader.dataset) / trainer.world_size) // cfg.optimizer.batch_size
        )
        twin_loader = PacedTwinLoader(twin_loader_for(cfg, twin_store, trainer), steps)
        trainer.fit(
            model, {"main": train_loader, "twin": twin_loader}, val_loader, ckpt_path=ckpt_path
        )
    return trainer


@hydra.main(version_base="1.2", config_path=None)
def hydra_main(cfg: DictConfig) -> None:
    """Hydra task of ``infoaug-pretrain``: a refused input ends it with one line."""
    run_reporting_errors("infoaug-pretrain", lambda: pretrain(cfg), ConfigError, TwinStoreError)


def main() -> None:
    """Console entry point of ``infoaug-pretrain`` (``--config-path`` relative to the working directory)."""
    sys.argv = config_path_from_cwd(sys.argv)
    hydra_main()


if __name__ == "__main__":
    main()
