"""Which pairs a process loads in an epoch, in which order, with which twin.

Both loaders (torch and DALI) draw their epochs from :class:`EpochPlanner`, so for the same store,
seed, epoch and shard they load exactly the same pairs with the same twins, in the same order;
only the augmentations' random draws differ.

An epoch: one permutation of all rows (seeded by ``(seed, epoch)``, identical in every process) is
cut into ``num_shards`` equal contiguous parts; process ``shard_id`` takes its part and drops the
tail that does not fill a batch. With ``selection: random`` each pair's twin is redrawn every
epoch among the other patches of its window, from one draw per row, so a pair gets the same
random twin whichever process loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infoaug_plugin.data.store import TwinStore, TwinStoreError


@dataclass(frozen=True)
class TwinSample:
    """One pair to load.

    Attributes:
        pair_id: row index of the pair in ``pairs.csv``.
        anchor_file: the anchor patch image.
        twin_file: the twin patch image (the store's, or a random one of the window).
    """

    pair_id: int
    anchor_file: Path
    twin_file: Path


class EpochPlanner:
    """Gives the samples of one process for any epoch."""

    def __init__(
        self,
        store: TwinStore,
        *,
        batch_size: int,
        selection: str,
        seed: int,
        shard_id: int = 0,
        num_shards: int = 1,
    ):
        """Checks that every shard gets at least one batch.

        Args:
            store: the validated twin store.
            batch_size: twin pairs per batch.
            selection: ``store`` (the store's twins) or ``random`` (a random other patch of the
                anchor's window).
            seed: base seed of the permutations and random twins.
            shard_id: index of this process among ``num_shards``.
            num_shards: number of processes sharing the store.

        Raises:
            ValueError: shard arguments out of range.
            TwinStoreError: too few pairs for one batch per shard, or a window with a single patch
                under ``selection: random``.
        """
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        self.store = store
        self.batch_size = batch_size
        self.seed = seed
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.shard_size = len(store) // num_shards
        self.num_batches = self.shard_size // batch_size
        if self.num_batches == 0:
            raise TwinStoreError(
                store.root,
                f"{len(store)} pairs cannot give each of {num_shards} process(es) one batch of "
                f"{batch_size} (infoaug.batch_size)",
            )
        self.windows = store.window_patches() if selection == "random" else None

    def samples(self, epoch: int) -> list[TwinSample]:
        """The samples of this shard for ``epoch``, in loading order, a whole number of batches.

        Args:
            epoch: epoch number (any non-negative integer).

        Returns:
            ``num_batches * batch_size`` samples.
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.store))
        start = self.shard_id * self.shard_size
        rows = order[start : start + self.num_batches * self.batch_size]
        twin_files = self._twin_files(rng, rows)
        pairs = self.store.pairs
        return [
            TwinSample(pair_id=int(row), anchor_file=pairs[row].anchor_file, twin_file=twin_file)
            for row, twin_file in zip(rows, twin_files)
        ]

    def _twin_files(self, rng: np.random.Generator, rows: np.ndarray) -> list[Path]:
        if self.windows is None:
            return [self.store.pairs[row].twin_file for row in rows]
        draws = rng.random(len(self.store))[rows]
        windows = self.windows.window_of_pair[rows]
        sizes = np.array([len(self.windows.files[window]) for window in windows])
        # A slot among the window's other cells: draw in [0, size - 1) and skip the anchor's slot.
        slots = np.floor(draws * (sizes - 1)).astype(np.int64)
        slots += slots >= self.windows.anchor_slot[rows]
        return [self.windows.files[window][slot] for window, slot in zip(windows, slots)]
