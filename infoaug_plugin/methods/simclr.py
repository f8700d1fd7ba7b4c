"""InfoAug on SimCLR: an independent projector and SimCLR's NT-Xent on (patch, twin) pairs."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.simclr import simclr_loss_func
from solo.methods.simclr import SimCLR

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head


class InfoAugSimCLR(InfoAugMixin, SimCLR):
    """InfoAug (twin patches with high motion mutual information as extra positives) on SimCLR
    (https://arxiv.org/abs/2002.05709).

    Extra cfg settings (besides SimCLR's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to SimCLR's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to SimCLR's.
    """

    base_method = "simclr"
    mi_head_keys = ("proj_hidden_dim", "proj_output_dim")
    mi_modules = ("mi_projector",)

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        sizes = cfg.infoaug.mi_head
        self.mi_projector = fresh_head(
            self.projector, self.features_dim, sizes.proj_hidden_dim, sizes.proj_output_dim
        )

    def mi_loss(
        self, pair_ids: torch.Tensor, feats: torch.Tensor, momentum_feats: None
    ) -> torch.Tensor:
        """NT-Xent where a patch and its twin are the positives (see ``InfoAugMixin.mi_loss``)."""
        z = self.mi_projector(feats)
        return simclr_loss_func(z, indexes=pair_ids.repeat(2), temperature=self.temperature)
