"""InfoAug on Barlow Twins: an independent projector and Barlow's loss on (patch, twin) pairs."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.barlow import barlow_loss_func
from solo.methods.barlow_twins import BarlowTwins

from infoaug_plugin.methods.mixin import InfoAugMixin, fresh_head


class InfoAugBarlowTwins(InfoAugMixin, BarlowTwins):
    """InfoAug (twin patches with high motion mutual information as extra positives) on Barlow
    Twins (https://arxiv.org/abs/2103.03230).

    The MI loss depends on twin-batch statistics (and all-reduces them under DDP), so
    ``infoaug.batch_size`` should not be tiny.

    Extra cfg settings (besides Barlow Twins' method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of ``mi_projector``. Defaults to Barlow's.
                proj_output_dim (int): output width of ``mi_projector``. Defaults to Barlow's.
    """

    base_method = "barlow_twins"
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
        """Barlow Twins' loss between patches and twins (see ``InfoAugMixin.mi_loss``)."""
        z_patch, z_twin = self.mi_projector(feats).chunk(2)
        return barlow_loss_func(z_patch, z_twin, lamb=self.lamb, scale_loss=self.scale_loss)
