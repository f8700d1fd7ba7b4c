"""Which pairs a process loads in an epoch, in which order, with which twin.

Both loaders (torch and DALI) draw their epochs from :class:`EpochPlanner`, so for the same store,
seed, epoch and shard they load exactly the same pairs with the same twins, in the same order;
only the augmentations' random draws differ.

An epoch: one permutation of all rows (seeded by ``(seed, epoch)``, identical in every process) is
packed, in that order, into ``num_batches`` global batches of ``num_shards * batch_size`` rows;
process ``shard_id`` takes the ``shard_id``-th ``batch_size`` rows of each; the rows left over
are not loaded this epoch. With ``selection: random`` each pair's twin is redrawn every epoch among
the other patches of its window, from one draw per row, so a pair gets the same random twin
whichever process loads it.

Rows of one frame share crops (a patch is the anchor of its own row and the twin of others), so
two rows of one batch could show the same image, which contrastive MI losses would then push
apart as negatives. The packing keeps every image file (anchor or twin) out of two rows of one
global batch (all processes' rows of one step, which SimCLR and MoCo gather): a row that would
repeat an image waits for the next batch that has room for it. Only a store whose images are
shared by so many rows that a batch cannot be filled from ``LOOKAHEAD`` times its size in
candidates gets batches that repeat an image, with a warning.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infoaug_plugin.data.store import TwinStore, TwinStoreError

# A global batch is filled from at most this many times its size in candidate rows (waiting rows
# first, then fresh ones), which keeps the packing linear in the number of rows.
LOOKAHEAD = 4


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
        # Every image file as an integer, so that packing compares ints, not paths.
        file_ids: dict[Path, int] = {}

        def file_id(path: Path) -> int:
            return file_ids.setdefault(path, len(file_ids))

        self.anchor_ids = np.array([file_id(pair.anchor_file) for pair in store.pairs])
        self.store_twin_ids = np.array([file_id(pair.twin_file) for pair in store.pairs])
        if self.windows is not None:
            self.window_file_ids = [
                np.array([file_id(path) for path in files]) for files in self.windows.files
            ]
        self.files: list[Path] = list(file_ids)

    def samples(self, epoch: int) -> list[TwinSample]:
        """The samples of this shard for ``epoch``, in loading order, a whole number of batches.

        Args:
            epoch: epoch number (any non-negative integer).

        Returns:
            ``num_batches * batch_size`` samples; no image file is in two rows of one batch of
            any shard (unless the store cannot allow it, see the module docstring).
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.store))
        twin_ids = self._twin_ids(rng)
        global_batch = self.num_shards * self.batch_size
        batches = pack_without_repeats(
            order, self.anchor_ids, twin_ids, global_batch, self.num_batches
        ).reshape(self.num_batches, self.num_shards, self.batch_size)
        if repeats := _batches_with_repeats(batches, self.anchor_ids, twin_ids):
            warnings.warn(
                f"twin store {self.store.root}: its images are shared by so many rows that "
                f"{repeats} of {self.num_batches} batches of epoch {epoch} repeat an image",
                stacklevel=2,
            )
        rows = batches[:, self.shard_id].reshape(-1)
        pairs = self.store.pairs
        return [
            TwinSample(
                pair_id=int(row),
                anchor_file=pairs[row].anchor_file,
                twin_file=self.files[twin_ids[row]],
            )
            for row in rows
        ]

    def _twin_ids(self, rng: np.random.Generator) -> np.ndarray:
        """Every row's twin file id for this epoch: the store's, or a random one of its window."""
        if self.windows is None:
            return self.store_twin_ids
        draws = rng.random(len(self.store))
        windows = self.windows.window_of_pair
        sizes = np.array([len(files) for files in self.window_file_ids])[windows]
        # A slot among the window's other cells: draw in [0, size - 1) and skip the anchor's slot.
        slots = np.floor(draws * (sizes - 1)).astype(np.int64)
        slots += slots >= self.windows.anchor_slot
        return np.array(
            [self.window_file_ids[window][slot] for window, slot in zip(windows, slots)]
        )


def pack_without_repeats(
    order: np.ndarray,
    anchor_ids: np.ndarray,
    twin_ids: np.ndarray,
    batch_size: int,
    num_batches: int,
) -> np.ndarray:
    """Fills ``num_batches`` batches with rows in ``order``, never putting one image in two rows.

    A row whose anchor or twin is already in the batch being filled waits; each new batch first
    takes the waiting rows that fit (oldest first), then fresh rows. A batch that cannot be filled
    from ``LOOKAHEAD * batch_size`` candidates is completed with the oldest waiting rows anyway.

    Args:
        order: the rows in order of preference (a permutation of the rows).
        anchor_ids: per row, the id of its anchor image.
        twin_ids: per row, the id of its twin image.
        batch_size: rows per batch.
        num_batches: batches to fill; ``batch_size * num_batches <= len(order)``.

    Returns:
        The ``batch_size * num_batches`` rows, batch after batch.
    """
    images = list(zip(anchor_ids.tolist(), twin_ids.tolist()))
    fresh = iter(order.tolist())
    waiting: deque[int] = deque()
    packed: list[int] = []
    for _ in range(num_batches):
        batch: list[int] = []
        shown: set[int] = set()
        rejected: list[int] = []
        examined = 0
        while len(batch) < batch_size and examined < LOOKAHEAD * batch_size:
            row = waiting.popleft() if waiting else next(fresh, None)
            if row is None:
                break
            examined += 1
            if shown.isdisjoint(images[row]):
                batch.append(row)
                shown.update(images[row])
            else:
                rejected.append(row)
        # Waiting rows are offered before fresh ones, so the rejected keep their age order.
        waiting.extendleft(reversed(rejected))
        while len(batch) < batch_size:
            batch.append(waiting.popleft() if waiting else next(fresh))
        packed.extend(batch)
    return np.array(packed, dtype=np.int64)


def _batches_with_repeats(batches: np.ndarray, anchor_ids: np.ndarray, twin_ids: np.ndarray) -> int:
    """How many global batches (first axis of ``batches``) hold an image in two rows."""
    rows = batches.reshape(len(batches), -1)
    images = np.sort(np.concatenate((anchor_ids[rows], twin_ids[rows]), axis=1), axis=1)
    return int((images[:, 1:] == images[:, :-1]).any(axis=1).sum())
