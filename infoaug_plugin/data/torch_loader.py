"""The torch twin loader: a Dataset over one epoch's samples and a DataLoader per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from infoaug_plugin.data.sampling import EpochPlanner, TwinSample


class TwinPairDataset(Dataset):
    """Loads and augments the (patch, twin) images of a list of samples."""

    def __init__(
        self, samples: Sequence[TwinSample], transform: Callable[[Image.Image], torch.Tensor]
    ):
        """Stores the samples and the augmentation.

        Args:
            samples: the pairs to load, in order.
            transform: solo-learn augmentation pipeline, applied independently to each image.
        """
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        return sample.pair_id, self._load(sample.anchor_file), self._load(sample.twin_file)

    def _load(self, path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return self.transform(image.convert("RGB"))


class TorchTwinLoader:
    """Twin batches from a torch DataLoader; each pass over it is one epoch of this shard."""

    def __init__(
        self,
        planner: EpochPlanner,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        num_workers: int,
        pin_memory: bool = False,
    ):
        """Keeps what each epoch's DataLoader needs.

        Args:
            planner: gives each epoch's samples for this shard.
            transform: solo-learn augmentation pipeline for one image.
            num_workers: DataLoader worker processes.
            pin_memory: pin batches for faster host-to-GPU copies.
        """
        self.planner = planner
        self.transform = transform
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.epoch = 0

    def __len__(self) -> int:
        return self.planner.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass load ``epoch`` (passes otherwise count up from 0)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        """Yields ``[pair_ids (B,), patches (B,3,S,S), twins (B,3,S,S)]`` for one epoch."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        loader = DataLoader(
            TwinPairDataset(self.planner.samples(epoch), self.transform),
            batch_size=self.planner.batch_size,
            shuffle=False,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        for pair_ids, patches, twins in loader:
            yield [pair_ids, patches, twins]
