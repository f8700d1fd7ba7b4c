"""InfoAug on SwAV: an independent projector, prototypes and queue on (patch, twin) pairs."""

from __future__ import annotations

from typing import Any

import omegaconf
import torch
import torch.nn as nn
import torch.nn.functional as F
from solo.losses.swav import swav_loss_func
from solo.methods.swav import SwAV

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head


def fresh_prototypes(in_dim: int, num_prototypes: int) -> nn.Module:
    """SwAV's prototypes: a weight-normalised linear map with its norm frozen at 1.

    Built fresh because weight-normalised modules cannot be deep-copied.
    """
    prototypes = nn.utils.weight_norm(nn.Linear(in_dim, num_prototypes, bias=False))
    prototypes.weight_g.data.fill_(1)
    prototypes.weight_g.requires_grad = False
    return prototypes


class ResumableSwAV(SwAV):
    """solo-learn's SwAV (https://arxiv.org/abs/2006.09882), resumable from its own checkpoints.

    SwAV registers its ``queue`` of past projections at train start, sized for the world size, so
    a module built for resuming has no ``queue`` to load the checkpoint's into (strict loading
    fails), and the queue would restart from zeros. Here the checkpoint's queue is loaded and kept
    when training starts with the same per-process size. Under DDP each process then starts from
    the queue of the process that saved the checkpoint (rank 0).
    """

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Gives ``queue`` the stored shape, so that the checkpoint's queue is loaded."""
        super().on_load_checkpoint(checkpoint)
        stored = checkpoint["state_dict"].get("queue")
        if stored is not None:
            self.register_buffer("queue", torch.zeros_like(stored, device=self.device))

    def on_train_start(self) -> None:
        """Registers SwAV's queue for this world size, with the restored rows if they fit."""
        restored = self._buffers.get("queue")
        super().on_train_start()
        if restored is not None and self.queue_size > 0 and restored.shape == self.queue.shape:
            # SwAV registered a new tensor: DDP broadcasts only the buffers it wrapped, and each
            # process's queue must stay its own.
            self.queue.copy_(restored)


class InfoAugSwAV(InfoAugMixin, ResumableSwAV):
    """InfoAug (twin patches with high motion mutual information as extra positives) on SwAV
    (https://arxiv.org/abs/2006.09882).

    The MI head has its own prototypes ``mi_prototypes`` (frozen for the same first
    ``freeze_prototypes_epochs`` epochs as SwAV's) and its own queue ``mi_queue`` of past patch and
    twin projections, used from ``epoch_queue_starts`` on; the Sinkhorn-Knopp solver is SwAV's.
    Both queues are restored on resume (:class:`ResumableSwAV`).

    Extra cfg settings (besides SwAV's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to SwAV's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to SwAV's.
                num_prototypes (int): number of MI prototypes. Defaults to SwAV's.
                queue_size (int): MI projections kept over all processes (0: no queue); per
                    process it must exceed infoaug.batch_size. Defaults to SwAV's queue_size.
    """

    base_method = "swav"
    mi_head_keys = ("proj_hidden_dim", "proj_output_dim", "num_prototypes", "queue_size")
    mi_modules = ("mi_projector", "mi_prototypes")

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        sizes = cfg.infoaug.mi_head
        self.mi_projector = fresh_head(
            self.projector, self.features_dim, sizes.proj_hidden_dim, sizes.proj_output_dim
        )
        self.mi_prototypes = fresh_prototypes(sizes.proj_output_dim, sizes.num_prototypes)
        self.mi_queue_size: int = sizes.queue_size
        self.mi_twin_batch_size: int = cfg.infoaug.batch_size
        # Rows per process depend on the world size, sized in on_train_start (or by a checkpoint).
        self.register_buffer("mi_queue", torch.zeros(2, 0, sizes.proj_output_dim))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Gives ``mi_queue`` (and SwAV's ``queue``) the stored shape."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        if "mi_queue" in state:
            self.mi_queue = torch.zeros(state["mi_queue"].shape, device=self.mi_queue.device)

    def on_train_start(self) -> None:
        """Sizes the MI queue for this world size, keeping a restored one of that size.

        Raises:
            ValueError: if the per-process MI queue would not exceed the twin batch.
        """
        super().on_train_start()
        if self.mi_queue_size == 0:
            return
        rows = self.mi_queue_size // self.trainer.world_size
        if rows <= self.mi_twin_batch_size:
            raise ValueError(
                f"infoaug.mi_head.queue_size ({self.mi_queue_size}) / world size "
                f"({self.trainer.world_size}) must exceed infoaug.batch_size "
                f"({self.mi_twin_batch_size})"
            )
        restored = self.mi_queue
        # Always a new tensor: DDP broadcasts rank 0's buffers as registered when it wrapped the
        # model, and each process's MI queue must stay its own, like SwAV's queue.
        self.mi_queue = (
            restored.clone()
            if restored.shape[1] == rows
            else torch.zeros(2, rows, restored.shape[2], device=self.device)
        )

    @torch.no_grad()
    def mi_assignments(self, preds: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sinkhorn-Knopp codes of the patch and twin logits, with the MI queue once it is used."""
        batch_size = preds[0].size(0)
        use_queue = self.mi_queue_size > 0 and self.current_epoch >= self.epoch_queue_starts
        return [
            self.sk(torch.cat((p, self.mi_prototypes(self.mi_queue[i]))) if use_queue else p)[
                :batch_size
            ]
            for i, p in enumerate(preds)
        ]

    def mi_loss(
        self, pair_ids: torch.Tensor, feats: torch.Tensor, momentum_feats: None
    ) -> torch.Tensor:
        """Each side predicts the other's code (see ``InfoAugMixin.mi_loss``)."""
        z = F.normalize(self.mi_projector(feats))
        preds = list(self.mi_prototypes(z).chunk(2))
        loss = swav_loss_func(preds, self.mi_assignments(preds), self.temperature)
        if self.mi_queue_size > 0:
            batch_size = preds[0].size(0)
            self.mi_queue[:, batch_size:] = self.mi_queue[:, :-batch_size].clone()
            self.mi_queue[:, :batch_size] = torch.stack(z.chunk(2)).detach()
        return loss

    def on_after_backward(self) -> None:
        """Drops the MI prototypes' gradients while SwAV's prototypes are frozen."""
        super().on_after_backward()
        if self.current_epoch < self.freeze_prototypes_epochs:
            for p in self.mi_prototypes.parameters():
                p.grad = None
