"""InfoAug on DINO: an independent student/teacher head and DINO loss on (patch, twin) pairs."""

from __future__ import annotations

import omegaconf
import torch
from solo.losses.dino import DINOLoss
from solo.methods.dino import DINO, DINOHead
from solo.utils.momentum import initialize_momentum_params

from infoaug_plugin.methods.mixin import InfoAugMixin


class InfoAugDINO(InfoAugMixin, DINO):
    """InfoAug (twin patches with high motion mutual information as extra positives) on DINO
    (https://arxiv.org/abs/2104.14294).

    The MI student is ``mi_head`` on the backbone, the MI teacher the shared momentum backbone
    followed by ``momentum_mi_head`` (EMA of ``mi_head``). ``mi_dino_loss_func`` has its own centre
    and teacher-temperature schedule, and ``mi_head``'s last layer is frozen for the same first
    ``freeze_last_layer`` epochs as DINO's.

    Extra cfg settings (besides DINO's method_kwargs and InfoAugMixin's ``infoaug`` keys):
        infoaug:
            mi_head:
                proj_hidden_dim (int): hidden width of the MI heads. Defaults to DINO's.
                proj_output_dim (int): bottleneck width of the MI heads. Defaults to DINO's.
                num_prototypes (int): number of MI prototypes. Defaults to DINO's.
    """

    base_method = "dino"
    mi_head_keys = ("proj_hidden_dim", "proj_output_dim", "num_prototypes")
    mi_modules = ("mi_head",)
    mi_momentum_pairs = (("mi_head", "momentum_mi_head"),)

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        sizes, kwargs = cfg.infoaug.mi_head, cfg.method_kwargs
        # Built fresh, twice: DINOHead's weight-normalised last layer cannot be deep-copied.
        self.mi_head, self.momentum_mi_head = (
            DINOHead(
                in_dim=self.features_dim,
                hidden_dim=sizes.proj_hidden_dim,
                use_bn=kwargs.use_bn_in_head,
                bottleneck_dim=sizes.proj_output_dim,
                num_prototypes=sizes.num_prototypes,
                norm_last_layer=kwargs.norm_last_layer,
            )
            for _ in range(2)
        )
        initialize_momentum_params(self.mi_head, self.momentum_mi_head)
        self.mi_dino_loss_func = DINOLoss(
            num_prototypes=sizes.num_prototypes,
            student_temp=kwargs.student_temperature,
            warmup_teacher_temp=kwargs.warmup_teacher_temperature,
            teacher_temp=kwargs.teacher_temperature,
            warmup_teacher_temp_epochs=kwargs.warmup_teacher_temperature_epochs,
            num_epochs=self.max_epochs,
        )

    def on_train_epoch_start(self) -> None:
        """Moves the MI loss's teacher-temperature schedule to the current epoch."""
        super().on_train_epoch_start()
        self.mi_dino_loss_func.epoch = self.current_epoch

    def mi_loss(
        self, pair_ids: torch.Tensor, feats: torch.Tensor, momentum_feats: torch.Tensor
    ) -> torch.Tensor:
        """The student on each side against the teacher on the other (see ``InfoAugMixin.mi_loss``)."""
        with torch.no_grad():
            teacher = self.momentum_mi_head(momentum_feats)
        return self.mi_dino_loss_func(self.mi_head(feats), teacher)

    def on_after_backward(self) -> None:
        """Drops the gradients of the MI head's last layer while DINO's is frozen."""
        super().on_after_backward()
        if self.current_epoch < self.freeze_last_layer:
            for p in self.mi_head.last_layer.parameters():
                p.grad = None
