"""Twin batches for a method whose trainer was given only the main loader.

solo-learn's unchanged ``main_pretrain.py`` passes one train loader to ``Trainer.fit``, so an
``infoaug_<base>`` model run by it pulls its twin batches from the ``TwinProvider`` it owns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import omegaconf
import torch

from infoaug_plugin.data import build_twin_loader


class TwinProvider:
    """An endless stream of twin batches built lazily from ``infoaug`` config keys.

    The loader is built on the first request, once the trainer knows the world size and ranks:
    shard ``global_rank`` of ``world_size``, and on GPU the local rank as the DALI device id. When
    one pass over the twins ends, the next starts after ``set_epoch`` so every pass reshuffles.
    """

    def __init__(self, infoaug_cfg: omegaconf.DictConfig, seed: int = 0):
        """Keeps the config; nothing is read or built yet.

        Args:
            infoaug_cfg: the ``infoaug`` config node; ``build_twin_loader`` checks it (``twins`` is
                required) when the first batch is asked for.
            seed: seed of the twin loader's shuffling and augmentations.
        """
        self.infoaug_cfg = infoaug_cfg
        self.seed = seed
        self._loader: Any | None = None
        self._iterator: Iterator[Any] | None = None
        self._pass = 0

    def next(self, trainer: Any, device: torch.device) -> list[torch.Tensor]:
        """Returns the next twin batch on ``device``, building the loader on the first call.

        Args:
            trainer: the running Lightning trainer (for world size, ranks and epoch).
            device: the model's device.

        Returns:
            ``[pair_ids (B,), patches (B,3,H,W), twins (B,3,H,W)]``.
        """
        if self._loader is None:
            self._loader = self._build_loader(trainer, device)
            self._start_pass(trainer.current_epoch)
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._start_pass(self._pass + 1)
            batch = next(self._iterator)
        return [part.to(device, non_blocking=True) for part in batch]

    def _start_pass(self, index: int) -> None:
        self._pass = index
        self._loader.set_epoch(index)
        self._iterator = iter(self._loader)

    def _build_loader(self, trainer: Any, device: torch.device) -> Any:
        return build_twin_loader(
            self.infoaug_cfg,
            shard_id=trainer.global_rank,
            num_shards=trainer.world_size,
            device_id=trainer.local_rank if device.type == "cuda" else None,
            seed=self.seed,
        )
