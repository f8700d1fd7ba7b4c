"""Which pairs a process loads in an epoch, in which order, with which twin.

Both loaders (torch and DALI) draw their epochs from :class:`EpochPlanner`, so for the same store,
seed, epoch and shard they load exactly the same pairs with the same twins, in the same order;
only the augmentations' random draws differ.

An epoch: one permutation of all rows (seeded by ``(seed, epoch)``, identical in every process) is
packed, in that order, into ``num_batches`` global batches of ``num_shards * batch_size`` rows;
process ``shard_id`` takes the ``shard_id``-th ``batch_size`` rows of each; the rows left over
are not loaded this epoch. With ``selection: random`` each pair's twin is redrawn every epoch among
the other patches of its crop frame, from one draw per row, so a pair gets the same random twin
whichever process loads it. Everything here is vectorised over the store's memory-mapped index.

Rows of one frame share crops (a patch is the anchor of its own row and the twin of others), so
two rows of one batch could show the same image, which contrastive MI losses would then push
apart as negatives. The packing keeps every image file (anchor or twin) out of two rows of one
global batch (all processes' rows of one step, which SimCLR and MoCo gather): a row that would
repeat an image waits for the next batch that has room for it. A batch that still repeats one
(the epoch's last batches, which have few rows left to choose from) swaps the row for one that is
not loaded this epoch, or for a row of another batch, where each fits. Only a store whose images
are shared by so many rows that no such swap exists gets batches that repeat an image, with a
warning.
"""

from __future__ import annotations

import warnings
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from twin_store import TwinStore, TwinStoreError

# A global batch is filled from at most this many times its size in candidate rows (waiting rows
# first, then fresh ones), which keeps the packing linear in the number of rows.
LOOKAHEAD = 4


@dataclass(frozen=True)
class EpochSamples:
    """The pairs one process loads in an epoch, in loading order (all (n,) int64).

    Attributes:
        pair_ids: pair ids (rows of the store's pair index).
        anchors: the anchor patch of each pair.
        twins: its twin patch (the store's, or a random one of its crop frame).
    """

    pair_ids: np.ndarray
    anchors: np.ndarray
    twins: np.ndarray

    def __len__(self) -> int:
        return len(self.pair_ids)

    def batch(self, index: int, size: int) -> EpochSamples:
        """Batch ``index`` of ``size`` samples."""
        rows = slice(index * size, (index + 1) * size)
        return EpochSamples(self.pair_ids[rows], self.anchors[rows], self.twins[rows])


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
                anchor's crop frame).
            seed: base seed of the permutations and random twins.
            shard_id: index of this process among ``num_shards``.
            num_shards: number of processes sharing the store.

        Raises:
            ValueError: shard arguments out of range.
            TwinStoreError: too few pairs for one batch per shard, or a crop frame with a single
                patch under ``selection: random``.
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
        self.random = selection == "random"
        if self.random:
            check_random_twins(store)

    def samples(self, epoch: int) -> EpochSamples:
        """The samples of this shard for ``epoch``, in loading order, a whole number of batches.

        Args:
            epoch: epoch number (any non-negative integer).

        Returns:
            ``num_batches * batch_size`` samples; no patch is in two rows of one batch of any
            shard (unless the store cannot allow it, see the module docstring).
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.store))
        anchors = np.asarray(self.store.pairs.anchor)
        twins = self._twins(rng, anchors)
        global_batch = self.num_shards * self.batch_size
        batches = pack_without_repeats(
            order, anchors, twins, global_batch, self.num_batches
        ).reshape(self.num_batches, self.num_shards, self.batch_size)
        if repeats := _batches_with_repeats(batches, anchors, twins):
            warnings.warn(
                f"twin store {self.store.root}: its patches are shared by so many rows that "
                f"{repeats} of {self.num_batches} batches of epoch {epoch} repeat an image",
                stacklevel=2,
            )
        rows = batches[:, self.shard_id].reshape(-1)
        return EpochSamples(rows, anchors[rows], twins[rows])

    def _twins(self, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
        """Every row's twin patch for this epoch: the store's, or a random one of its crop frame."""
        if not self.random:
            return np.asarray(self.store.pairs.twin)
        draws = rng.random(len(self.store))
        first, end = self.store.frame_patches(np.arange(len(self.store)))
        # A patch among the frame's others: draw in [first, end - 1) and skip the anchor.
        twins = first + np.floor(draws * (end - first - 1)).astype(np.int64)
        return twins + (twins >= anchors)


def check_random_twins(store: TwinStore) -> None:
    """Refuses a store where some pair's crop frame has no patch but its anchor (no random twin).

    Raises:
        TwinStoreError: naming the first such pair.
    """
    first, end = store.frame_patches(np.arange(len(store)))
    single = np.flatnonzero(end - first < 2)
    if len(single):
        pair = next(store.rows([int(single[0])]))
        raise TwinStoreError(
            store.root,
            f"pair {pair['pair_id']} (video {pair['video']!r}, window_start "
            f"{pair['window_start']}, frame {pair['frame']}) has a single patch in its crop "
            "frame; selection 'random' needs at least two",
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
    from ``LOOKAHEAD * batch_size`` candidates is completed with the oldest waiting rows anyway,
    and then mended by :func:`_swap_out_repeats`.

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
    batches: list[list[int]] = []
    completed: list[int] = []  # batches completed with waiting rows, which may repeat an image
    for index in range(num_batches):
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
        if len(batch) < batch_size:
            completed.append(index)
        while len(batch) < batch_size:
            batch.append(waiting.popleft() if waiting else next(fresh))
        batches.append(batch)
    _swap_out_repeats(batches, completed, [*waiting, *fresh], images)
    return np.array(batches, dtype=np.int64).reshape(-1)


def _swap_out_repeats(
    batches: list[list[int]],
    completed: list[int],
    unused: list[int],
    images: list[tuple[int, int]],
) -> None:
    """Swaps, in place, each row of the ``completed`` batches that repeats an image of its batch
    for a row where both fit.

    The replacement is the first unused row (not loaded this epoch) that shows no image of the
    rest of the batch, else the first row of another batch that fits here while the repeating
    row fits there. Rows without such a swap stay (the caller warns).
    """
    counts: dict[int, Counter[int]] = {}

    def shown(batch: int) -> Counter[int]:
        """How many rows of ``batch`` show each image (counted when first needed)."""
        if batch not in counts:
            counts[batch] = Counter(image for row in batches[batch] for image in images[row])
        return counts[batch]

    def fits(row: int, batch: int, position: int) -> bool:
        """Whether ``row`` shows no image of ``batch`` once its row at ``position`` leaves."""
        leaving = images[batches[batch][position]]
        return all(shown(batch)[image] == leaving.count(image) for image in images[row])

    def put(row: int, batch: int, position: int) -> int:
        """Puts ``row`` at ``position`` of ``batch``; returns the row it replaces."""
        replaced = batches[batch][position]
        shown(batch).subtract(images[replaced])
        shown(batch).update(images[row])
        batches[batch][position] = row
        return replaced

    for batch in completed:
        for position, row in enumerate(batches[batch]):
            if fits(row, batch, position):
                continue
            spare = next((i for i, r in enumerate(unused) if fits(r, batch, position)), None)
            if spare is not None:
                unused[spare] = put(unused[spare], batch, position)
                continue
            swap = next(
                (
                    (other, there)
                    for other in range(len(batches))
                    if other != batch
                    for there, candidate in enumerate(batches[other])
                    if fits(candidate, batch, position) and fits(row, other, there)
                ),
                None,
            )
            if swap is not None:
                put(put(batches[swap[0]][swap[1]], batch, position), *swap)


def _batches_with_repeats(batches: np.ndarray, anchor_ids: np.ndarray, twin_ids: np.ndarray) -> int:
    """How many global batches (first axis of ``batches``) hold an image in two rows."""
    rows = batches.reshape(len(batches), -1)
    images = np.sort(np.concatenate((anchor_ids[rows], twin_ids[rows]), axis=1), axis=1)
    return int((images[:, 1:] == images[:, :-1]).any(axis=1).sum())
