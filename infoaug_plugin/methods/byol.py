"""InfoAug on BYOL: an independent projector, predictor and momentum projector on (patch, twin)."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.byol import byol_loss_func
from solo.methods.byol import BYOL

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head, momentum_mi_projectors


class InfoAugBYOL(InfoAugMixin, BYOL):
    """InfoAug (twin patches with high motion mutual information as extra positives) on BYOL
    (https://arxiv.org/abs/2006.07733).

    The MI targets come from the shared momentum backbone followed by ``momentum_mi_projector``,
    the EMA of ``mi_projector``.

    Extra cfg settings (besides BYOL's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to BYOL's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to BYOL's.
                pred_hidden_dim (int): hidden width of ``mi_predictor``. Defaults to BYOL's.
    """

    base_method = "byol"
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
        """Each side predicts the other's momentum projection (see ``InfoAugMixin.mi_loss``)."""
        p_patch, p_twin = self.mi_predictor(self.mi_projector(feats)).chunk(2)
        with torch.no_grad():
            z_patch, z_twin = self.momentum_mi_projector(momentum_feats).chunk(2)
        return byol_loss_func(p_patch, z_twin) + byol_loss_func(p_twin, z_patch)
