"""InfoAug on MoCo v3: an independent projector, predictor and momentum projector."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.mocov3 import mocov3_loss_func
from solo.methods.mocov3 import MoCoV3

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head, momentum_mi_projectors


class InfoAugMoCoV3(InfoAugMixin, MoCoV3):
    """InfoAug (twin patches with high motion mutual information as extra positives) on MoCo v3
    (https://arxiv.org/abs/2104.02057).

    The MI keys come from the shared momentum backbone followed by ``momentum_mi_projector``. The
    backbone is built under the name ``mocov3``, so a ViT is MoCo v3's variant; linear evaluation
    then needs ``pretrain_method: mocov3``.

    Extra cfg settings (besides MoCo v3's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to MoCo v3's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to MoCo v3's.
                pred_hidden_dim (int): hidden width of ``mi_predictor``. Defaults to MoCo v3's.
    """

    base_method = "mocov3"
    mi_head_keys = ("proj_hidden_dim", "proj_output_dim", "pred_hidden_dim")
    mi_modules = ("mi_projector", "mi_predictor")
    mi_momentum_pairs = (("mi_projector", "momentum_mi_projector"),)

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        sizes = cfg.infoaug.mi_head
        self.mi_projector, self.momentum_mi_projector = momentum_mi_projectors(
            self.projector, self.features_dim, sizes
        )
        self.mi_predictor = fresh_head(
            self.predictor, sizes.proj_output_dim, sizes.pred_hidden_dim, sizes.proj_output_dim
        )

    def mi_loss(
        self, pair_ids: torch.Tensor, feats: torch.Tensor, momentum_feats: torch.Tensor
    ) -> torch.Tensor:
        """Each side's query against the other's momentum key (see ``InfoAugMixin.mi_loss``)."""
        q_patch, q_twin = self.mi_predictor(self.mi_projector(feats)).chunk(2)
        with torch.no_grad():
            k_patch, k_twin = self.momentum_mi_projector(momentum_feats).chunk(2)
        return mocov3_loss_func(q_patch, k_twin, temperature=self.temperature) + mocov3_loss_func(
            q_twin, k_patch, temperature=self.temperature
        )
