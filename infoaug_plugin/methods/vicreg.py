"""InfoAug on VICReg: an independent projector and VICReg's loss on (patch, twin) pairs."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.vicreg import vicreg_loss_func
from solo.methods.vicreg import VICReg

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head


class InfoAugVICReg(InfoAugMixin, VICReg):
    """InfoAug (twin patches with high motion mutual information as extra positives) on VICReg
    (https://arxiv.org/abs/2105.04906).

    Extra cfg settings (besides VICReg's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to VICReg's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to VICReg's.
    """

    base_method = "vicreg"
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
        """VICReg's loss between patches and twins (see ``InfoAugMixin.mi_loss``)."""
        z_patch, z_twin = self.mi_projector(feats).chunk(2)
        return vicreg_loss_func(
            z_patch,
            z_twin,
            sim_loss_weight=self.sim_loss_weight,
            var_loss_weight=self.var_loss_weight,
            cov_loss_weight=self.cov_loss_weight,
        )
