"""Trains ``infoaug_<base>`` under 2-process CPU DDP and writes, per rank, what its MI branch saw.

Run by ``test_ddp.py`` (Lightning re-launches this script for rank 1). Usage:
``ddp_train.py BASE {dict,provider} TWIN_STORE OUT_DIR STEPS``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from method_helpers import RandomViews, build_cfg, train_loaders
from solo.methods import METHODS
from torch.utils.data import DataLoader

import infoaug_plugin  # noqa: F401  (registers the methods)


def main(base: str, path: str, store: Path, out: Path, steps: int) -> None:
    pl.seed_everything(0)
    model = METHODS[f"infoaug_{base}"](
        build_cfg(f"infoaug_{base}", twins=str(store), image_size=32, num_workers=0)
    )
    seen: list[list[int]] = []
    mi_loss = model.mi_loss

    def recording_mi_loss(pair_ids: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        seen.append(pair_ids.tolist())
        return mi_loss(pair_ids, *feats)

    model.mi_loss = recording_mi_loss
    data = (
        train_loaders(store)
        if path == "dict"
        else DataLoader(RandomViews(), batch_size=4, shuffle=True, drop_last=True)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, data)
    record = {
        "world_size": trainer.world_size,
        "pair_ids": seen,
        "mi_loss": float(trainer.callback_metrics["train_mi_loss"]),
        "mi_params": [
            p.detach().sum().item()
            for name, p in model.named_parameters()
            if name.startswith("mi_")
        ],
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
