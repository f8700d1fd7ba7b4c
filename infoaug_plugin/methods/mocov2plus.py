"""InfoAug on MoCo v2+: an independent projector, momentum projector and key queue."""

from __future__ import annotations

import omegaconf
import torch
import torch.nn.functional as F
from solo.losses.mocov2plus import mocov2plus_loss_func
from solo.methods.mocov2plus import MoCoV2Plus
from solo.utils.misc import gather

from infoaug_plugin.methods.mixin import InfoAugMixin, momentum_mi_projectors


class InfoAugMoCoV2Plus(InfoAugMixin, MoCoV2Plus):
    """InfoAug (twin patches with high motion mutual information as extra positives) on MoCo v2+
    (https://arxiv.org/abs/2011.10566).

    The MI keys come from the shared momentum backbone followed by ``momentum_mi_projector``; the
    MI head has its own queue of past patch and twin keys (buffers ``mi_queue``, ``mi_queue_ptr``).

    Extra cfg settings (besides MoCo v2+'s method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to MoCo v2+'s.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to MoCo v2+'s.
                queue_size (int): keys in the MI queue; a multiple of world size x
                    infoaug.batch_size. Defaults to method_kwargs.queue_size.
    """

    base_method = "mocov2plus"
    mi_head_keys = ("proj_hidden_dim", "proj_output_dim", "queue_size")
    mi_modules = ("mi_projector",)
    mi_momentum_pairs = (("mi_projector", "momentum_mi_projector"),)

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        sizes = cfg.infoaug.mi_head
        self.mi_projector, self.momentum_mi_projector = momentum_mi_projectors(
            self.projector, self.features_dim, sizes
        )
        self.mi_queue_size: int = sizes.queue_size
        self.register_buffer(
            "mi_queue",
            F.normalize(torch.randn(2, sizes.proj_output_dim, self.mi_queue_size), dim=1),
        )
        self.register_buffer("mi_queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def mi_enqueue(self, keys: torch.Tensor) -> None:
        """Replaces the oldest MI keys by ``keys`` (2, N, D): patch keys, then twin keys.

        Raises:
            ValueError: if the MI queue size is not a multiple of N (world size x twin batch).
        """
        batch_size = keys.shape[1]
        if self.mi_queue_size % batch_size:
            raise ValueError(
                f"infoaug.mi_head.queue_size ({self.mi_queue_size}) must be a multiple of world "
                f"size x infoaug.batch_size ({batch_size})"
            )
        ptr = int(self.mi_queue_ptr)
        self.mi_queue[:, :, ptr : ptr + batch_size] = keys.permute(0, 2, 1)
        self.mi_queue_ptr[0] = (ptr + batch_size) % self.mi_queue_size

    def mi_loss(
        self, pair_ids: torch.Tensor, feats: torch.Tensor, momentum_feats: torch.Tensor
    ) -> torch.Tensor:
        """Each side's query against the other's key and queue (see ``InfoAugMixin.mi_loss``)."""
        q_patch, q_twin = F.normalize(self.mi_projector(feats), dim=-1).chunk(2)
        with torch.no_grad():
            k_patch, k_twin = F.normalize(self.momentum_mi_projector(momentum_feats), dim=-1).chunk(
                2
            )
        queue = self.mi_queue.clone().detach()
        loss = (
            mocov2plus_loss_func(q_patch, k_twin, queue[1], self.temperature)
            + mocov2plus_loss_func(q_twin, k_patch, queue[0], self.temperature)
        ) / 2
        self.mi_enqueue(torch.stack((gather(k_patch), gather(k_twin))))
        return loss
