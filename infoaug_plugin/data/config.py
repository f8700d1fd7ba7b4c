"""The ``infoaug:`` node as the twin loaders read it (its schema is :mod:`infoaug_plugin.config`)."""

from __future__ import annotations

from omegaconf import DictConfig

from infoaug_plugin.config import augmentation_pipeline, fill_infoaug_node

__all__ = ["augmentation_pipeline", "fill_loader_defaults"]


def fill_loader_defaults(infoaug_cfg: DictConfig) -> DictConfig:
    """Completes and checks an ``infoaug:`` node for a twin loader, which needs ``twins``.

    Args:
        infoaug_cfg: the node; completed in place (see
            :func:`~infoaug_plugin.config.fill_infoaug_node`).

    Returns:
        The same node.

    Raises:
        ConfigError: ``twins`` is missing, or a key is unknown or invalid (the message names it).
    """
    return fill_infoaug_node(infoaug_cfg, require_twins=True)
