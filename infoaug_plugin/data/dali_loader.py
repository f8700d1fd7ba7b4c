"""The DALI twin loader: decoding and augmentation in a DALI pipeline.

One ``external_source`` feeds, per sample, the encoded bytes of the anchor patch, the encoded
bytes of its twin (slices of the store's memory-mapped shards) and the pair id, so the three travel together through the pipeline and can never
be misaligned. The source follows the same :class:`EpochPlanner` as the torch loader, as an
endless stream of epochs: the pipeline prefetches across epoch ends and never stalls on a reset.
Decoding is ``cpu`` or ``mixed`` (nvJPEG/GPU) and the augmentations are solo-learn's own DALI
pipeline, built once for the patches and once for the twins so their random draws are independent.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types
import torch
from nvidia.dali import pipeline_def
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator
from omegaconf import DictConfig
from solo.data.dali_dataloader import build_transform_pipeline_dali

from infoaug_plugin.data.sampling import EpochPlanner, EpochSamples
from infoaug_plugin.data.torch_loader import decode_patch
from twin_store import TwinStoreError

_OUTPUTS = ("patches", "twins", "pair_ids")


class EncodedPairSource:
    """Batches of ``(anchor bytes, twin bytes, pair id)`` for a DALI ``external_source``.

    Iteration ``i`` of the pipeline is batch ``i % num_batches`` of epoch
    ``first_epoch + i // num_batches``.
    """

    def __init__(self, planner: EpochPlanner, first_epoch: int):
        """Starts the stream at ``first_epoch``.

        Args:
            planner: gives each epoch's samples for this shard.
            first_epoch: the epoch of pipeline iteration 0.
        """
        self.planner = planner
        self.first_epoch = first_epoch
        self._epoch: int | None = None
        self._samples: EpochSamples | None = None

    def __call__(
        self, batch_info: types.BatchInfo
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        samples = self.batch(batch_info.iteration)
        store = self.planner.store
        return (
            [store.read_patch(patch) for patch in samples.anchors],
            [store.read_patch(patch) for patch in samples.twins],
            [np.array([pair_id], dtype=np.int64) for pair_id in samples.pair_ids],
        )

    def batch(self, iteration: int) -> EpochSamples:
        """The samples of pipeline iteration ``iteration``."""
        epoch_offset, batch = divmod(iteration, self.planner.num_batches)
        epoch = self.first_epoch + epoch_offset
        if epoch != self._epoch:
            self._epoch, self._samples = epoch, self.planner.samples(epoch)
        return self._samples.batch(batch, self.planner.batch_size)


@pipeline_def(enable_conditionals=True)
def twin_pipeline(source: EncodedPairSource, patch_augment, twin_augment, dali_device: str):
    """Decodes and augments anchor and twin of each sample; passes its pair id along.

    Args:
        source: the encoded pair stream.
        patch_augment: solo-learn DALI augmentation for the anchors.
        twin_augment: an independent copy of it for the twins.
        dali_device: ``cpu`` or ``gpu``.

    Returns:
        The augmented patches (NCHW float), twins (NCHW float) and pair ids (int64, shape (1,)).
    """
    anchors, twins, pair_ids = fn.external_source(
        source=source,
        num_outputs=3,
        batch=True,
        batch_info=True,
        dtype=[types.UINT8, types.UINT8, types.INT64],
    )
    decoder_device = "mixed" if dali_device == "gpu" else "cpu"
    anchors = fn.decoders.image(anchors, device=decoder_device, output_type=types.RGB)
    twins = fn.decoders.image(twins, device=decoder_device, output_type=types.RGB)
    if dali_device == "gpu":
        pair_ids = pair_ids.gpu()
    return patch_augment(anchors), twin_augment(twins), pair_ids


class DaliTwinLoader:
    """Twin batches from a DALI pipeline; each pass over it is one epoch of this shard."""

    def __init__(
        self,
        planner: EpochPlanner,
        augmentations: DictConfig,
        *,
        dataset: str,
        dali_device: str,
        device_id: int | None,
        num_threads: int,
        seed: int,
        prefetch_queue_depth: int = 2,
    ):
        """Builds the pipeline for epoch 0.

        Args:
            planner: gives each epoch's samples for this shard.
            augmentations: one solo-learn augmentation node (``crop_size`` set).
            dataset: data set name for solo's mean/std table (``custom`` uses the node's).
            dali_device: ``cpu`` (decode and augment on CPU) or ``gpu`` (``mixed`` decoding).
            device_id: CUDA device for ``gpu``; must be ``None`` for a CPU-only pipeline.
            num_threads: DALI CPU worker threads.
            seed: seed of DALI's random augmentations (offset by the shard id).
            prefetch_queue_depth: batches DALI prepares ahead.

        Raises:
            ValueError: ``gpu`` without a ``device_id``.
        """
        if dali_device == "gpu" and device_id is None:
            raise ValueError(
                "infoaug.dali_device: gpu needs a CUDA device_id (use dali_device: cpu without a GPU)"
            )
        self.planner = planner
        self.augmentations = augmentations
        self.dataset = dataset
        self.dali_device = dali_device
        self.device_id = device_id if dali_device == "gpu" else None
        self.num_threads = num_threads
        self.seed = seed + planner.shard_id
        self.prefetch_queue_depth = prefetch_queue_depth
        self.epoch = 0
        self._stream_epoch = 0
        self._stream_batch = 0
        self._iterator = self._start_stream(0)

    def __len__(self) -> int:
        return self.planner.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass load ``epoch`` (passes otherwise count up from 0)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        """Yields ``[pair_ids (B,), patches (B,3,S,S), twins (B,3,S,S)]`` for one epoch."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        if (self._stream_epoch, self._stream_batch) != (epoch, 0):
            # A pass was left unfinished or an epoch was skipped: restart the stream there.
            self._iterator = self._start_stream(epoch)
        for _ in range(len(self)):
            try:
                outputs = next(self._iterator)[0]
            except RuntimeError as error:
                raise self._decode_error(error) from None
            self._stream_batch += 1
            yield [outputs["pair_ids"].flatten().long(), outputs["patches"], outputs["twins"]]
        self._stream_epoch, self._stream_batch = epoch + 1, 0

    def _decode_error(self, error: RuntimeError) -> Exception:
        """Names the patch DALI failed on: the first one PIL cannot decode either, among the
        batches the pipeline was preparing (the current one and those prefetched after it)."""
        current = (self._stream_epoch - self._source.first_epoch) * len(self) + self._stream_batch
        for iteration in range(current, current + self.prefetch_queue_depth + 1):
            samples = self._source.batch(iteration)
            for pair_id, anchor, twin in zip(samples.pair_ids, samples.anchors, samples.twins):
                for patch in (anchor, twin):
                    try:
                        decode_patch(self.planner.store, int(patch), int(pair_id))
                    except TwinStoreError as named:
                        return named
        return error

    def _start_stream(self, epoch: int) -> DALIGenericIterator:
        self._iterator = None  # let the previous pipeline go before building the next one
        self._source = EncodedPairSource(self.planner, epoch)
        pipeline: Pipeline = twin_pipeline(
            self._source,
            build_transform_pipeline_dali(
                self.dataset, self.augmentations, dali_device=self.dali_device
            ),
            build_transform_pipeline_dali(
                self.dataset, self.augmentations, dali_device=self.dali_device
            ),
            self.dali_device,
            batch_size=self.planner.batch_size,
            num_threads=self.num_threads,
            device_id=self.device_id,
            seed=self.seed + 7919 * epoch,
            prefetch_queue_depth=self.prefetch_queue_depth,
        )
        pipeline.build()
        self._stream_epoch, self._stream_batch = epoch, 0
        try:  # the iterator runs the first batches at once
            return DALIGenericIterator(pipeline, list(_OUTPUTS), size=-1, auto_reset=False)
        except RuntimeError as error:
            raise self._decode_error(error) from None
