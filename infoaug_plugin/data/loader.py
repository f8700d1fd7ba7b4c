"""``build_twin_loader``: the twin loader an ``infoaug:`` node asks for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from omegaconf import DictConfig
from solo.data.pretrain_dataloader import build_transform_pipeline

from infoaug_plugin.data.config import augmentation_pipeline, fill_loader_defaults
from infoaug_plugin.data.sampling import EpochPlanner
from infoaug_plugin.data.torch_loader import TorchTwinLoader
from twin_store import TwinStore, open_store

# Twin patches come from videos, not from a named data set: solo's pipelines then take
# ``mean``/``std`` from the augmentation node (ImageNet's by default).
TWIN_DATASET = "custom"


class TwinLoader(Protocol):
    """What both loaders offer: batches ``[pair_ids, patches, twins]``, a length and epochs."""

    def __iter__(self) -> Iterator[list[torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


def build_twin_loader(
    infoaug_cfg: DictConfig,
    *,
    shard_id: int = 0,
    num_shards: int = 1,
    device_id: int | None = None,
    seed: int = 0,
    store: TwinStore | None = None,
) -> TwinLoader:
    """Validates the twin store and builds the loader that ``infoaug.loader`` names.

    Each pass over the loader is one epoch of this shard (``len(loader)`` batches); passes count
    epochs up from 0 unless ``set_epoch`` says otherwise. A batch is
    ``[pair_ids LongTensor (B,), patches float (B,3,S,S), twins float (B,3,S,S)]`` with
    ``B = infoaug.batch_size``, ``S = infoaug.image_size`` and pair ids the rows of the store's pair index.

    Args:
        infoaug_cfg: the ``infoaug:`` node; loader defaults are filled in place.
        shard_id: this process's index (the trainer's global rank).
        num_shards: number of processes (the trainer's world size).
        device_id: CUDA device of a ``dali_device: gpu`` DALI pipeline; ``None`` on CPU.
        seed: seed of the epoch permutations, random twins and DALI's augmentations.
        store: the store of ``infoaug.twins`` when it was already opened (and so validated).

    Returns:
        The torch or DALI twin loader.

    Raises:
        TwinStoreError: the store is unusable, or too small for one batch per shard.
        ValueError: an ``infoaug`` key has an invalid value, or DALI is asked for and missing.
    """
    fill_loader_defaults(infoaug_cfg)
    if store is None:
        store = open_store(infoaug_cfg.twins, min_pairs=infoaug_cfg.batch_size * num_shards)
    planner = EpochPlanner(
        store,
        batch_size=infoaug_cfg.batch_size,
        selection=infoaug_cfg.selection,
        seed=seed,
        shard_id=shard_id,
        num_shards=num_shards,
    )
    size = infoaug_cfg.image_size
    if infoaug_cfg.loader == "torch":
        transform = build_transform_pipeline(
            TWIN_DATASET, augmentation_pipeline(infoaug_cfg, [size, size])
        )
        return TorchTwinLoader(
            planner,
            transform,
            num_workers=infoaug_cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
    try:
        from infoaug_plugin.data.dali_loader import DaliTwinLoader
    except ImportError as error:
        raise ValueError(
            "infoaug.loader: dali needs NVIDIA DALI (pip install 'infoaug[dali]'); "
            f"or set infoaug.loader=torch ({error})"
        ) from error

    return DaliTwinLoader(
        planner,
        augmentation_pipeline(infoaug_cfg, size),
        dataset=TWIN_DATASET,
        dali_device=infoaug_cfg.dali_device,
        device_id=device_id,
        num_threads=max(1, infoaug_cfg.num_workers),
        seed=seed,
    )


class PacedTwinLoader:
    """A twin loader paced to the main loader: ``num_batches`` twin batches per pass.

    The twin passes run back to back across the main epochs (twin epochs 0, 1, ...), so the main
    data sets the epoch length, and with it solo-learn's lr and momentum schedules, whatever the
    size of the store; no twin batch is skipped.

    Where it stands (the twin epoch and the batches served from it) is its ``state_dict``, which
    checkpoints carry, so a resumed run continues with the twin batch that would have come next.
    """

    def __init__(self, loader: TwinLoader, num_batches: int):
        """Wraps ``loader``; the first batch is batch 0 of twin epoch 0.

        Args:
            loader: the twin loader.
            num_batches: twin batches per pass (the main loader's batches per epoch).
        """
        self.loader = loader
        self.num_batches = num_batches
        self.twin_epoch = 0
        self.position = 0
        self._twin_pass: Iterator[list[torch.Tensor]] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        """Yields the next ``num_batches`` twin batches."""
        for _ in range(self.num_batches):
            if self._twin_pass is None:
                self._start_pass(self.twin_epoch, skip=self.position)
            batch = next(self._twin_pass, None)
            if batch is None:
                self._start_pass(self.twin_epoch + 1, skip=0)
                batch = next(self._twin_pass)
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Where the twin stream stands: ``twin_epoch`` and the batches served from it,
        ``position`` (batches handed out, whether or not the trainer used them all)."""
        return {"twin_epoch": self.twin_epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Moves the stream to batch ``position`` of ``twin_epoch``, at once.

        The loaders draw an epoch's batches in order, so the ``position`` batches before are
        loaded and dropped here; with a torch loader on ``num_workers: 0`` this consumes random
        draws that the caller may then restore.

        Args:
            state: a :meth:`state_dict`.
        """
        self._start_pass(int(state["twin_epoch"]), skip=int(state["position"]))

    def _start_pass(self, epoch: int, skip: int) -> None:
        self.loader.set_epoch(epoch)
        self._twin_pass = iter(self.loader)
        for _ in range(skip):
            next(self._twin_pass)
        self.twin_epoch, self.position = epoch, skip
