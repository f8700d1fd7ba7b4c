"""The torch twin loader: a Dataset over one epoch's samples and a DataLoader per epoch."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from infoaug_plugin.data.sampling import EpochPlanner, EpochSamples
from twin_store import TwinStore, TwinStoreError


def decode_patch(store: TwinStore, patch: int, pair_id: int) -> Image.Image:
    """Decodes one patch of a store as an RGB image.

    Raises:
        TwinStoreError: the patch is not a readable image (names the pair and the patch).
    """
    try:
        with Image.open(io.BytesIO(store.read_patch(patch).tobytes())) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise TwinStoreError(
            store.root,
            f"pair {pair_id}: patch {store.patch_name(patch)} cannot be decoded ({error})",
        ) from None


class TwinPairDataset(Dataset):
    """Loads and augments the (patch, twin) images of one epoch's samples."""

    def __init__(
        self,
        store: TwinStore,
        samples: EpochSamples,
        transform: Callable[[Image.Image], torch.Tensor],
    ):
        """Stores the samples and the augmentation.

        Args:
            store: the twin store the patches are read from.
            samples: the pairs to load, in order.
            transform: solo-learn augmentation pipeline, applied independently to each image.
        """
        self.store = store
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        pair_id = int(self.samples.pair_ids[index])
        anchor, twin = int(self.samples.anchors[index]), int(self.samples.twins[index])
        return (
            pair_id,
            self.transform(decode_patch(self.store, anchor, pair_id)),
            self.transform(decode_patch(self.store, twin, pair_id)),
        )


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
            TwinPairDataset(self.planner.store, self.planner.samples(epoch), self.transform),
            batch_size=self.planner.batch_size,
            shuffle=False,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        for pair_ids, patches, twins in loader:
            yield [pair_ids, patches, twins]
