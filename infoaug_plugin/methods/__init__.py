"""The ``infoaug_<base>`` methods and their registration in solo-learn's ``METHODS``."""

from __future__ import annotations

from solo.methods import METHODS
from solo.methods.base import BaseMethod

from infoaug_plugin.methods.barlow_twins import InfoAugBarlowTwins
from infoaug_plugin.methods.byol import InfoAugBYOL
from infoaug_plugin.methods.dino import InfoAugDINO
from infoaug_plugin.methods.mixin import InfoAugMixin
from infoaug_plugin.methods.mocov2plus import InfoAugMoCoV2Plus
from infoaug_plugin.methods.mocov3 import InfoAugMoCoV3
from infoaug_plugin.methods.simclr import InfoAugSimCLR
from infoaug_plugin.methods.swav import InfoAugSwAV, ResumableSwAV
from infoaug_plugin.methods.vicreg import InfoAugVICReg

INFOAUG_METHODS: dict[str, type[BaseMethod]] = {
    "infoaug_simclr": InfoAugSimCLR,
    "infoaug_byol": InfoAugBYOL,
    "infoaug_mocov2plus": InfoAugMoCoV2Plus,
    "infoaug_mocov3": InfoAugMoCoV3,
    "infoaug_swav": InfoAugSwAV,
    "infoaug_vicreg": InfoAugVICReg,
    "infoaug_barlow_twins": InfoAugBarlowTwins,
    "infoaug_dino": InfoAugDINO,
}

# solo-learn methods that the plugin's commands build as a subclass that resumes correctly (the
# InfoAug class of the base derives from the same subclass), so a base run and its InfoAug run
# differ only by the MI branch.
RESUMABLE_BASES: dict[str, type[BaseMethod]] = {"swav": ResumableSwAV}


def method_class(name: str) -> type[BaseMethod]:
    """The class that ``infoaug-pretrain`` builds for a method name of solo's ``METHODS``.

    Args:
        name: an ``infoaug_<base>`` or solo-learn method name.

    Returns:
        The resumable subclass of a base that has one, else the registered class.
    """
    return RESUMABLE_BASES.get(name, METHODS[name])


def infoaug_method(base: str) -> type[BaseMethod]:
    """The InfoAug class for a solo-learn base method name.

    Args:
        base: solo-learn's method name, e.g. ``"simclr"``.

    Returns:
        The class registered as ``infoaug_<base>``.

    Raises:
        ValueError: listing the supported bases when ``base`` is not one of them.
    """
    try:
        return INFOAUG_METHODS[f"infoaug_{base}"]
    except KeyError:
        supported = ", ".join(name.removeprefix("infoaug_") for name in INFOAUG_METHODS)
        raise ValueError(
            f"InfoAug has no method for base {base!r}; supported bases: {supported}"
        ) from None


def register(methods: dict = METHODS) -> None:
    """Adds every ``infoaug_<base>`` key to a method registry.

    Args:
        methods: the registry, solo-learn's ``solo.methods.METHODS`` by default (the dict that
            ``main_pretrain.py`` looks methods up in).
    """
    methods.update(INFOAUG_METHODS)


__all__ = [
    "INFOAUG_METHODS",
    "InfoAugBarlowTwins",
    "InfoAugBYOL",
    "InfoAugDINO",
    "InfoAugMixin",
    "InfoAugMoCoV2Plus",
    "InfoAugMoCoV3",
    "InfoAugSimCLR",
    "InfoAugSwAV",
    "InfoAugVICReg",
    "RESUMABLE_BASES",
    "ResumableSwAV",
    "infoaug_method",
    "method_class",
    "register",
]
