"""What every ``infoaug_<base>`` method shares: the ``infoaug:`` config node, the twin batch, the
backbone forward of the MI branch and the weighted total loss."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import omegaconf
import torch
import torch.nn as nn
from solo.methods.base import BaseMomentumMethod
from solo.utils.misc import omegaconf_select
from solo.utils.momentum import initialize_momentum_params
from torch.nn.modules.batchnorm import _BatchNorm

from infoaug_plugin.config import fill_infoaug_cfg
from infoaug_plugin.twin_provider import TwinProvider

TwinBatch = Sequence[torch.Tensor]


def fresh_head(head: nn.Sequential, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Builds an independent, freshly initialised MLP with the same blocks as ``head``.

    Every ``Linear`` and ``BatchNorm1d`` is constructed anew (same bias / affine / eps settings),
    parameter-free blocks (activations) are copied. The first ``Linear`` reads ``in_dim``, the
    last one writes ``out_dim`` and every width in between is ``hidden_dim``, so the MI head can
    be resized while keeping the base method's head design.

    Args:
        head: the base method's projector or predictor.
        in_dim: input width of the new head.
        hidden_dim: width of its hidden layers.
        out_dim: output width of the new head.

    Returns:
        The new head, sharing no parameter or buffer with ``head``.
    """
    last_linear = max(i for i, block in enumerate(head) if isinstance(block, nn.Linear))
    blocks: list[nn.Module] = []
    width = in_dim
    for i, block in enumerate(head):
        if isinstance(block, nn.Linear):
            out = out_dim if i == last_linear else hidden_dim
            blocks.append(nn.Linear(width, out, bias=block.bias is not None))
            width = out
        elif isinstance(block, nn.BatchNorm1d):
            blocks.append(
                nn.BatchNorm1d(
                    width,
                    eps=block.eps,
                    momentum=block.momentum,
                    affine=block.affine,
                    track_running_stats=block.track_running_stats,
                )
            )
        elif any(True for _ in block.parameters()):
            raise TypeError(f"fresh_head: cannot rebuild block {block!r} with parameters")
        else:
            blocks.append(copy.deepcopy(block))
    return nn.Sequential(*blocks)


def momentum_mi_projectors(
    projector: nn.Sequential, in_dim: int, sizes: omegaconf.DictConfig
) -> tuple[nn.Sequential, nn.Sequential]:
    """An MI projector shaped like the base ``projector`` and its momentum copy, starting equal.

    Args:
        projector: the base method's projector.
        in_dim: backbone feature width.
        sizes: the ``infoaug.mi_head`` node (``proj_hidden_dim``, ``proj_output_dim``).

    Returns:
        ``(mi_projector, momentum_mi_projector)``; the second has no gradients and is meant for
        ``momentum_pairs``.
    """
    online, momentum = (
        fresh_head(projector, in_dim, sizes.proj_hidden_dim, sizes.proj_output_dim)
        for _ in range(2)
    )
    initialize_momentum_params(online, momentum)
    return online, momentum


@contextlib.contextmanager
def running_stats_frozen(*modules: nn.Module) -> Iterator[None]:
    """Makes the BatchNorm layers of ``modules`` normalise with batch statistics and update none of
    their running statistics, while the modules stay in training mode.

    Every ``_BatchNorm`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``) that tracks running statistics
    gets ``track_running_stats = False`` for the duration of the block and ``True`` again after it,
    even if the block raises. In training mode ``_BatchNorm.forward`` (and
    ``SyncBatchNorm.forward``) then normalises with the batch's statistics, passes ``None`` instead
    of ``running_mean`` / ``running_var`` to ``F.batch_norm`` and skips ``num_batches_tracked``
    (checked in torch 2.14's ``torch/nn/modules/batchnorm.py``, unchanged since torch 1.x), so
    the buffers keep their values exactly. Unlike ``eval()``, this leaves dropout and the
    normalisation by batch statistics as in training.

    Args:
        modules: the modules whose BatchNorm layers to freeze.

    Yields:
        Nothing; the layers are frozen inside the ``with`` block.
    """
    tracking = [
        layer
        for module in modules
        for layer in module.modules()
        if isinstance(layer, _BatchNorm) and layer.track_running_stats
    ]
    for layer in tracking:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in tracking:
            layer.track_running_stats = True


class InfoAugMixin:
    """Adds InfoAug's MI branch to a solo-learn method (mixed in before the base class).

    Each step, the base method runs unchanged on the main batch; the (patch, twin) pairs of the twin
    batch go through the shared backbone in one concatenated forward (and through the shared
    momentum backbone, without gradients, for momentum methods), then through the method's own MI
    head (``mi_loss``). The total loss is ``base loss + infoaug.weight * MI loss``.

    Twin batches ``[pair_ids (B,), patches (B,3,H,W), twins (B,3,H,W)]`` come from
    ``batch["twin"]`` when the trainer is given ``{"main": ..., "twin": ...}``, otherwise from
    ``self.twin_provider``, which reads ``infoaug.twins`` (solo-learn's own ``main_pretrain.py``).

    BatchNorm running statistics are what evaluation normalises with. With ``infoaug.bn_stats:
    main`` the twin forward normalises with the twin batch's own statistics but leaves every
    running statistic (and ``num_batches_tracked``) of the shared backbone and momentum backbone as
    the main batch left them, so they describe the main data only. With ``shared`` the twin batch
    updates them too, after the main batch, every step. The MI heads' own BatchNorm layers (and
    those of their momentum copies, whose EMA covers parameters only) see nothing but twins, so they
    always track the twin batches.

    Extra cfg settings: the ``infoaug`` node, declared with its defaults by
    :class:`~infoaug_plugin.config.InfoAugConfig` (``weight``, ``bn_stats`` and ``mi_head`` are
    read here, the other keys by the twin loader).

    Subclasses set ``base_method`` (solo-learn's name of the base) and ``mi_head_keys``, build their
    MI modules in ``__init__`` after ``super().__init__(cfg)``, name them in ``mi_modules`` (and
    EMA copies in ``mi_momentum_pairs``), which this mixin adds to ``learnable_params`` (and
    ``momentum_pairs``), and implement ``mi_loss``.
    """

    base_method: ClassVar[str]
    mi_head_keys: ClassVar[tuple[str, ...]]
    # Attribute names of the MI modules the optimiser trains, and of (online, EMA copy) pairs.
    mi_modules: ClassVar[tuple[str, ...]]
    mi_momentum_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, cfg: omegaconf.DictConfig):
        """Builds the base method with its own name, so backbone factories that pick a variant by
        method name (the MoCo v3 ViT) build the base method's backbone.

        Args:
            cfg: the full solo-learn config, with an optional ``infoaug`` node.
        """
        method = cfg.method
        cfg.method = self.base_method
        try:
            super().__init__(cfg)  # type: ignore[call-arg]
        finally:
            cfg.method = method
        self.infoaug_weight: float = cfg.infoaug.weight
        self.infoaug_bn_stats: str = cfg.infoaug.bn_stats
        self.twin_provider = TwinProvider(cfg.infoaug, seed=omegaconf_select(cfg, "seed", 0))

    @classmethod
    def add_and_assert_specific_cfg(cls, cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Adds the ``infoaug`` defaults to the base method's and checks them.

        Args:
            cfg: DictConfig object.

        Returns:
            The same cfg, its ``infoaug`` node completed by
            :func:`~infoaug_plugin.config.fill_infoaug_cfg` (every key of
            :class:`~infoaug_plugin.config.InfoAugConfig`, the MI head sizes of ``mi_head_keys``).

        Raises:
            ConfigError: naming the ``infoaug`` key that is unknown or invalid.
        """
        # A classmethod (solo-learn's are staticmethods) so this one definition chains to the
        # add_and_assert_specific_cfg of whichever base class follows the mixin.
        cfg = super().add_and_assert_specific_cfg(cfg)  # type: ignore[misc]
        return fill_infoaug_cfg(cfg, cls.mi_head_keys)

    @property
    def learnable_params(self) -> list[dict]:
        """Adds the ``mi_modules`` to the base method's learnable parameters."""
        return super().learnable_params + [  # type: ignore[misc]
            {"name": name, "params": getattr(self, name).parameters()} for name in self.mi_modules
        ]

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Adds the ``mi_momentum_pairs`` to the base method's (momentum methods only)."""
        return super().momentum_pairs + [  # type: ignore[misc]
            (getattr(self, online), getattr(self, momentum))
            for online, momentum in self.mi_momentum_pairs
        ]

    def mi_loss(
        self,
        pair_ids: torch.Tensor,
        feats: torch.Tensor,
        momentum_feats: torch.Tensor | None,
    ) -> torch.Tensor:
        """The base method's kind of loss on the MI head, symmetric in (patch, twin).

        Args:
            pair_ids: (B,) pair ids, unique across processes.
            feats: (2B, F) backbone features, the B patches first, then their B twins.
            momentum_feats: the same from the momentum backbone (momentum methods), else None.

        Returns:
            The scalar MI loss.
        """
        raise NotImplementedError

    def twin_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Runs the MI branch's images through the backbone (and the momentum backbone); with
        ``bn_stats: main`` their BatchNorm layers leave the running statistics alone.

        Args:
            images: (2B, 3, H, W) patches then twins, in one batch so the backbone runs once.

        Returns:
            The backbone features and, for momentum methods, the momentum backbone's (else None).
        """
        if not self.no_channel_last:
            images = images.to(memory_format=torch.channels_last)
        is_momentum = isinstance(self, BaseMomentumMethod)
        backbones = (self.backbone, self.momentum_backbone) if is_momentum else (self.backbone,)
        frozen = (
            running_stats_frozen(*backbones)
            if self.infoaug_bn_stats == "main"
            else contextlib.nullcontext()
        )
        with frozen:
            feats = self.backbone(images)
            if not is_momentum:
                return feats, None
            with torch.no_grad():
                return feats, self.momentum_backbone(images)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Runs the base method's step on the main batch and adds the weighted MI loss.

        Args:
            batch: the main batch ``[indexes, [X], targets]``, or ``{"main": ..., "twin": ...}``
                (then ``"twin"`` is optional: without it the twin provider serves one).
            batch_idx: index of the batch.

        Returns:
            ``base loss + infoaug.weight * MI loss``.
        """
        main, twin = (
            (batch.get("main"), batch.get("twin")) if isinstance(batch, Mapping) else (batch, None)
        )
        if twin is None:
            twin = self.twin_provider.next(self.trainer, self.device)
        pair_ids, patches, twins = _checked_twin_batch(twin)

        base_loss = super().training_step(main, batch_idx)  # type: ignore[misc]
        feats, momentum_feats = self.twin_features(torch.cat((patches, twins)))
        mi_loss = self.mi_loss(pair_ids, feats, momentum_feats)

        self.log_dict(
            {"train_base_loss": base_loss, "train_mi_loss": mi_loss}, on_epoch=True, sync_dist=True
        )
        return base_loss + self.infoaug_weight * mi_loss


def _checked_twin_batch(twin: TwinBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpacks a twin batch, refusing one whose parts do not line up."""
    pair_ids, patches, twins = twin
    if patches.ndim != 4 or patches.shape != twins.shape or pair_ids.shape != patches.shape[:1]:
        raise ValueError(
            "twin batch must be [pair_ids (B,), patches (B,3,H,W), twins (B,3,H,W)], got shapes "
            f"{tuple(pair_ids.shape)}, {tuple(patches.shape)}, {tuple(twins.shape)}"
        )
    return pair_ids, patches, twins
