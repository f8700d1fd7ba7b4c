"""The ``infoaug:`` config node: its keys, defaults and checks, in one typed place.

:class:`InfoAugConfig` declares every key with its type and default, :class:`TwinAugmentations`
the augmentation recipe of the twin crops. :func:`fill_infoaug_cfg` completes and checks the node
of a full solo-learn config (the methods, ``infoaug-pretrain``); :func:`fill_infoaug_node` does it
for the node alone (the twin loaders). Both refuse an unknown key, a value of the wrong type or out
of range with a :class:`ConfigError` that names the key.

The recipe is also registered in Hydra's ConfigStore as ``twin_augmentations/patches``, so the
shipped YAMLs compose it (``- twin_augmentations@infoaug.augmentations: patches``) and a single
key can be overridden on the command line (``infoaug.augmentations.gaussian_blur.prob=0``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

BN_STATS = ("main", "shared")
LOADERS = ("dali", "torch")
SELECTIONS = ("store", "random")
DALI_DEVICES = ("cpu", "gpu")


class ConfigError(ValueError):
    """A config value the run cannot use; the message names the key and what it expects."""


@dataclass
class RandomResizedCrop:
    """solo-learn's ``rrc`` node: a random crop of this share of the image, resized."""

    enabled: bool = True
    crop_min_scale: float = 0.2
    crop_max_scale: float = 1.0


@dataclass
class ColorJitter:
    """solo-learn's ``color_jitter`` node."""

    prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1


@dataclass
class Probability:
    """A solo-learn augmentation that is applied with probability ``prob``."""

    prob: float = 0.0


@dataclass
class TwinAugmentations:
    """The augmentations of the twin crops: one solo-learn pipeline (the keys of solo's
    ``augmentations/*.yaml`` entries less ``crop_size`` / ``num_crops``: twin crops are
    ``infoaug.image_size`` wide, one per image), drawn independently for a patch and its twin.

    ``mean`` / ``std`` default to ImageNet's, as in solo-learn's ``custom`` data sets.
    ``equalization`` must stay 0 with ``infoaug.loader: dali`` (solo's DALI pipeline has none).
    """

    rrc: RandomResizedCrop = field(default_factory=RandomResizedCrop)
    color_jitter: ColorJitter = field(default_factory=ColorJitter)
    grayscale: Probability = field(default_factory=lambda: Probability(0.2))
    gaussian_blur: Probability = field(default_factory=lambda: Probability(0.5))
    solarization: Probability = field(default_factory=Probability)
    equalization: Probability = field(default_factory=Probability)
    horizontal_flip: Probability = field(default_factory=lambda: Probability(0.5))
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class InfoAugConfig:
    """The ``infoaug:`` node.

    Attributes:
        twins: the twin store written by ``twin-builder`` (required to train).
        weight: weight of the MI loss in ``base loss + weight * MI loss``, finite and >= 0.
        bn_stats: ``main`` (the twin forward leaves the shared backbones' BatchNorm running
            statistics alone) or ``shared`` (it updates them too).
        batch_size: twin pairs per step and process. In a full config it defaults to
            ``optimizer.batch_size``; alone, to 64.
        image_size: side of the twin crops. In a full config it defaults to
            ``augmentations[0].crop_size``; alone, to 64.
        loader: twin loader, ``torch`` or ``dali``.
        dali_device: ``gpu`` (mixed decoding) or ``cpu``, for ``loader: dali``.
        num_workers: DataLoader workers / DALI threads of the twin loader.
        selection: ``store`` (the store's twins) or ``random`` (a random other patch of the
            anchor's frame, the paper's baseline).
        augmentations: the twin crops' augmentations; a partial node keeps the other defaults.
        mi_head: MI head sizes; the keys are the method's (``mi_head_keys``), each defaulting to
            the ``method_kwargs`` key of the same name.
        store_manifest_sha256: the twin store's identity, the SHA-256 of its ``manifest.json``;
            ``infoaug-pretrain`` records it (a given value must match the store), so runs on a
            rebuilt store never resume each other.
    """

    twins: str | None = None
    weight: float = 1.0
    bn_stats: str = "main"
    batch_size: int | None = None
    image_size: int | None = None
    loader: str = "torch"
    dali_device: str = "gpu"
    num_workers: int = 4
    selection: str = "store"
    augmentations: TwinAugmentations = field(default_factory=TwinAugmentations)
    mi_head: dict[str, int] = field(default_factory=dict)
    store_manifest_sha256: str | None = None


STANDALONE_SIZE = 64
_AUGMENTATION_NAMES = tuple(
    item.name for item in fields(TwinAugmentations) if item.name not in ("mean", "std")
)

ConfigStore.instance().store(group="twin_augmentations", name="patches", node=TwinAugmentations)


def fill_infoaug_cfg(cfg: DictConfig, mi_head_keys: Sequence[str] = ()) -> DictConfig:
    """Completes and checks the ``infoaug:`` node of a full solo-learn config, in place.

    The twin batch defaults to ``optimizer.batch_size``, the twin crop to
    ``augmentations[0].crop_size`` and each MI head size to ``method_kwargs``' value, so an
    ``infoaug_<base>`` run and its base differ only by the MI branch. Calling it again on the
    completed config changes nothing.

    Args:
        cfg: the solo-learn config; a missing ``infoaug`` node is created.
        mi_head_keys: the MI head sizes the method reads (``InfoAugMixin.mi_head_keys``).

    Returns:
        The same cfg.

    Raises:
        ConfigError: naming the ``infoaug`` key that is unknown or invalid.
    """
    if OmegaConf.select(cfg, "infoaug") is None:
        cfg.infoaug = {}
    mi_head = OmegaConf.select(cfg, "infoaug.mi_head") or {}
    unknown = sorted(set(mi_head) - set(mi_head_keys))
    if unknown:
        raise ConfigError(
            f"infoaug.mi_head: unknown key(s) {unknown} for method {cfg.method}; "
            f"expected some of {list(mi_head_keys)}"
        )
    defaults: dict[str, Any] = {
        "batch_size": cfg.optimizer.batch_size,
        "mi_head": {key: cfg.method_kwargs[key] for key in mi_head_keys},
    }
    if OmegaConf.select(cfg, "augmentations"):
        defaults["image_size"] = cfg.augmentations[0].crop_size
    fill_infoaug_node(cfg.infoaug, defaults=defaults)
    return cfg


def fill_infoaug_node(
    infoaug_cfg: DictConfig, *, defaults: dict[str, Any] | None = None, require_twins: bool = False
) -> DictConfig:
    """Completes and checks an ``infoaug:`` node in place.

    Missing keys get ``defaults``, then :class:`InfoAugConfig`'s; a partial ``augmentations``
    (or ``mi_head``) node is merged over its defaults, so overriding one value keeps the rest.

    Args:
        infoaug_cfg: the node (struct mode is lifted while filling).
        defaults: defaults that come from the rest of the config (``batch_size``, ``image_size``,
            ``mi_head``), in place of the standalone ones.
        require_twins: refuse a node without ``twins`` (the twin loaders).

    Returns:
        The same node, completed.

    Raises:
        ConfigError: a key is unknown, has a value of the wrong type or out of range, or
            ``twins`` is required and missing; the message names the key.
    """
    standalone = {"batch_size": STANDALONE_SIZE, "image_size": STANDALONE_SIZE}
    completed = _typed_merge(infoaug_cfg, {**standalone, **(defaults or {})})
    if require_twins and completed.twins in (None, "", "None"):
        raise ConfigError("infoaug.twins: the path of the twin store is required")
    _check(completed)
    struct = OmegaConf.is_struct(infoaug_cfg)
    OmegaConf.set_struct(infoaug_cfg, False)
    try:
        for key in completed:
            infoaug_cfg[key] = completed[key]
    finally:
        OmegaConf.set_struct(infoaug_cfg, struct)
    return infoaug_cfg


def augmentation_pipeline(infoaug_cfg: DictConfig, crop_size: int | list[int]) -> DictConfig:
    """The solo-learn augmentation node of the twin crops, with ``crop_size`` set.

    Args:
        infoaug_cfg: a node completed by :func:`fill_infoaug_node`.
        crop_size: solo's ``crop_size`` (an int, or ``[S, S]`` for torchvision so that
            non-square patches still give square crops).

    Returns:
        A new node for solo's ``build_transform_pipeline`` and ``build_transform_pipeline_dali``
        (an unset ``mean`` / ``std`` is left out, so solo applies its default).
    """
    pipeline = {
        key: value
        for key, value in OmegaConf.to_container(infoaug_cfg.augmentations, resolve=True).items()
        if value is not None
    }
    return OmegaConf.create({**pipeline, "crop_size": crop_size})


def _typed_merge(infoaug_cfg: DictConfig, defaults: dict[str, Any]) -> DictConfig:
    """The node merged over the schema with ``defaults`` (key and type errors named)."""
    given = OmegaConf.to_container(infoaug_cfg, resolve=True) if infoaug_cfg is not None else {}
    if not isinstance(given, dict):
        raise ConfigError(f"infoaug: must be a mapping of keys, got {given!r}")
    _refuse_unknown(given, [item.name for item in fields(InfoAugConfig)], "infoaug")
    augmentations = given.get("augmentations")
    if isinstance(augmentations, dict):
        _refuse_unknown(
            augmentations,
            [item.name for item in fields(TwinAugmentations)],
            "infoaug.augmentations",
            hint=_CROP_HINT,
        )
    filled = {key: value for key, value in defaults.items() if given.get(key) is None}
    if "mi_head" in filled or isinstance(given.get("mi_head"), dict):
        filled["mi_head"] = {**defaults.get("mi_head", {}), **(given.get("mi_head") or {})}
    present = {key: value for key, value in given.items() if value is not None}
    try:
        return OmegaConf.merge(OmegaConf.structured(InfoAugConfig), present, filled)
    except OmegaConfBaseException as error:
        problem = str(error).splitlines()[0]
        raise ConfigError(f"infoaug.{error.full_key}: {problem}") from None


_CROP_HINT = {
    "crop_size": "twin crops are infoaug.image_size wide; remove the key",
    "num_crops": "there is one twin crop per image; remove the key",
}


def _refuse_unknown(
    given: dict, known: Sequence[str], where: str, hint: dict[str, str] | None = None
) -> None:
    for key in given:
        if key in known:
            continue
        if hint and key in hint:
            raise ConfigError(f"{where}.{key} is not used: {hint[key]}")
        close = difflib.get_close_matches(str(key), known, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}.{key}: unknown key{guess}; {where} takes {', '.join(sorted(known))}"
        )


def _check(node: DictConfig) -> None:
    """Refuses values out of range, naming the key."""
    if not math.isfinite(node.weight) or node.weight < 0:
        raise ConfigError(f"infoaug.weight must be a finite number >= 0, got {node.weight!r}")
    if node.bn_stats not in BN_STATS:
        raise ConfigError(f"infoaug.bn_stats must be 'main' or 'shared', got {node.bn_stats!r}")
    for key, choices in (
        ("loader", LOADERS),
        ("selection", SELECTIONS),
        ("dali_device", DALI_DEVICES),
    ):
        if node[key] not in choices:
            raise ConfigError(
                f"infoaug.{key} must be one of {', '.join(choices)}; got {node[key]!r}"
            )
    for key in ("batch_size", "image_size"):
        if node[key] < 1:
            raise ConfigError(f"infoaug.{key} must be a positive integer, got {node[key]!r}")
    if node.num_workers < 0:
        raise ConfigError(f"infoaug.num_workers must be >= 0, got {node.num_workers!r}")
    for key, size in node.mi_head.items():
        if size < 0:
            raise ConfigError(f"infoaug.mi_head.{key} must be >= 0, got {size!r}")
    _check_augmentations(node)


def _check_augmentations(node: DictConfig) -> None:
    augmentations = node.augmentations
    for name in _AUGMENTATION_NAMES:
        prob = augmentations[name].get("prob")
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise ConfigError(f"infoaug.augmentations.{name}.prob must be in [0, 1], got {prob!r}")
    rrc = augmentations.rrc
    if not 0.0 < rrc.crop_min_scale <= rrc.crop_max_scale <= 1.0:
        raise ConfigError(
            "infoaug.augmentations.rrc: need 0 < crop_min_scale <= crop_max_scale <= 1, got "
            f"{rrc.crop_min_scale!r} and {rrc.crop_max_scale!r}"
        )
    for key in ("mean", "std"):
        value = augmentations[key]
        if value is not None and len(value) != 3:
            raise ConfigError(
                f"infoaug.augmentations.{key} needs 3 values (RGB), got {list(value)}"
            )
    if node.loader == "dali" and augmentations.equalization.prob:
        raise ConfigError(
            "infoaug.augmentations.equalization.prob must be 0 with infoaug.loader: dali "
            "(solo-learn's DALI pipeline has no equalization)"
        )
