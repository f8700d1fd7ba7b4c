"""A look at what the MI branch trains on: a grid of (patch | twin) pairs at the start of each epoch.

:class:`TwinExamples` takes the first twin batch of every epoch (the pairs the model is about to
train on, augmented) and logs it as one image: each row a patch and its twin, side by side. wandb
gets it through ``log_image``, TensorBoard through ``add_image``; any other logger with a log
directory (Lightning's default CSV logger) gets a PNG file, ``<log_dir>/twin_examples/epoch=N.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image

GRID_KEY = "twin_examples"


def twin_grid(patches: torch.Tensor, twins: torch.Tensor) -> torch.Tensor:
    """One image of pairs: row ``i`` is ``patches[i]`` then ``twins[i]``.

    Args:
        patches: (N, 3, H, W) augmented, normalised patches.
        twins: (N, 3, H, W) their twins.

    Returns:
        (3, H', W') float image in [0, 1]; each crop is rescaled to its own range, since the
        twin loader's normalisation is not undone here.
    """
    pairs = torch.stack((patches, twins), dim=1).flatten(0, 1).detach().float().cpu()
    return make_grid(pairs, nrow=2, padding=2, normalize=True, scale_each=True, pad_value=1.0)


class TwinExamples(Callback):
    """Logs a grid of the first ``num_pairs`` (patch | twin) pairs of each epoch's first twin batch,
    on the global-zero process, when the trainer has a logger."""

    def __init__(self, num_pairs: int = 8):
        """Keeps the grid's size.

        Args:
            num_pairs: rows of the grid (fewer if the twin batch is smaller).
        """
        super().__init__()
        self.num_pairs = num_pairs

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Logs the grid of the epoch's first batch (``{"main", "twin"}`` batches only)."""
        if batch_idx != 0 or not trainer.loggers or not trainer.is_global_zero:
            return
        twin = batch.get("twin") if isinstance(batch, Mapping) else None
        if twin is None:
            return
        _, patches, twins = twin
        grid = twin_grid(patches[: self.num_pairs], twins[: self.num_pairs])
        for logger in trainer.loggers:
            log_grid(logger, grid, trainer.current_epoch, trainer.global_step)


def log_grid(logger: Logger, grid: torch.Tensor, epoch: int, step: int) -> None:
    """Sends ``grid`` to ``logger`` in its own way (see the module docstring).

    Args:
        logger: a Lightning logger.
        grid: (3, H, W) image in [0, 1].
        epoch: the epoch it opens.
        step: the global step.
    """
    caption = f"epoch {epoch}: patch | twin"
    if isinstance(logger, WandbLogger):
        pixels = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # wandb's HWC bytes
        logger.log_image(key=GRID_KEY, images=[pixels], caption=[caption], step=step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(GRID_KEY, grid, global_step=step)
    elif getattr(logger, "log_dir", None):
        folder = Path(logger.log_dir) / GRID_KEY
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"epoch={epoch}.png")
