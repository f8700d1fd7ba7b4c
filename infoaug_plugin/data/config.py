"""Defaults and checks for the ``infoaug:`` keys that the twin loaders read.

This is the one place where the loader side of the ``infoaug:`` node gets its defaults. The keys
``weight`` and ``mi_head`` belong to the methods and are left untouched here.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

LOADERS = ("dali", "torch")
SELECTIONS = ("store", "random")
DALI_DEVICES = ("cpu", "gpu")

# One solo-learn augmentation pipeline (same keys as solo's ``augmentations/*.yaml`` entries, less
# ``crop_size``/``num_crops``: the crop side is ``infoaug.image_size`` and there is one crop per
# image). Applied independently to the anchor patch and to its twin.
DEFAULT_AUGMENTATIONS: dict = {
    "rrc": {"enabled": True, "crop_min_scale": 0.2, "crop_max_scale": 1.0},
    "color_jitter": {
        "prob": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
    },
    "grayscale": {"prob": 0.2},
    "gaussian_blur": {"prob": 0.0},
    "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.5},
}

DEFAULTS: dict = {
    "batch_size": 64,
    "loader": "torch",
    "num_workers": 4,
    "image_size": 64,
    "selection": "store",
    "dali_device": "gpu",
    "augmentations": DEFAULT_AUGMENTATIONS,
}


def fill_loader_defaults(
    infoaug_cfg: DictConfig, *, batch_size: int | None = None, image_size: int | None = None
) -> DictConfig:
    """Fills the loader-side defaults of an ``infoaug:`` node in place and checks its values.

    Missing keys get ``DEFAULTS``; a partial ``augmentations`` node is merged over
    ``DEFAULT_AUGMENTATIONS``, so overriding one probability keeps the rest. Inside a full
    solo-learn config, pass the main data's values so the defaults match the methods' (twin batch
    = ``optimizer.batch_size``, twin crops = ``augmentations[0].crop_size``).

    Args:
        infoaug_cfg: the ``infoaug:`` node (struct mode is lifted while filling).
        batch_size: default of ``batch_size`` instead of ``DEFAULTS``'.
        image_size: default of ``image_size`` instead of ``DEFAULTS``'.

    Returns:
        The same node, completed.

    Raises:
        ValueError: ``twins`` is missing, or a key has a value outside its choices; the message
            names the key.
    """
    struct = OmegaConf.is_struct(infoaug_cfg)
    OmegaConf.set_struct(infoaug_cfg, False)
    try:
        if OmegaConf.select(infoaug_cfg, "twins") in (None, "", "None") or OmegaConf.is_missing(
            infoaug_cfg, "twins"
        ):
            raise ValueError("infoaug.twins: the path of the twin store is required")
        defaults = {**DEFAULTS, "batch_size": batch_size or DEFAULTS["batch_size"]}
        defaults["image_size"] = image_size or DEFAULTS["image_size"]
        for key, value in defaults.items():
            if key != "augmentations" and OmegaConf.select(infoaug_cfg, key) is None:
                infoaug_cfg[key] = value
        given = infoaug_cfg.get("augmentations") or {}
        infoaug_cfg.augmentations = OmegaConf.merge(DEFAULT_AUGMENTATIONS, given)
    finally:
        OmegaConf.set_struct(infoaug_cfg, struct)
    _check_choice(infoaug_cfg, "loader", LOADERS)
    _check_choice(infoaug_cfg, "selection", SELECTIONS)
    _check_choice(infoaug_cfg, "dali_device", DALI_DEVICES)
    _check_positive(infoaug_cfg, "batch_size")
    _check_positive(infoaug_cfg, "image_size")
    if int(infoaug_cfg.num_workers) < 0:
        raise ValueError(f"infoaug.num_workers must be >= 0, got {infoaug_cfg.num_workers!r}")
    _check_augmentations(infoaug_cfg)
    return infoaug_cfg


def augmentation_pipeline(infoaug_cfg: DictConfig, crop_size: int | list[int]) -> DictConfig:
    """The solo-learn augmentation node for the twin crops, with ``crop_size`` set.

    Args:
        infoaug_cfg: a node completed by :func:`fill_loader_defaults`.
        crop_size: the value for solo's ``crop_size`` (an int, or ``[S, S]`` for torchvision so
            that non-square patches still give square crops).

    Returns:
        A new node accepted by solo's ``build_transform_pipeline`` and
        ``build_transform_pipeline_dali``.
    """
    pipeline = OmegaConf.create(OmegaConf.to_container(infoaug_cfg.augmentations, resolve=True))
    pipeline.crop_size = crop_size
    return pipeline


def _check_choice(infoaug_cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    if infoaug_cfg[key] not in choices:
        raise ValueError(
            f"infoaug.{key} must be one of {', '.join(choices)}; got {infoaug_cfg[key]!r}"
        )


def _check_positive(infoaug_cfg: DictConfig, key: str) -> None:
    if not isinstance(infoaug_cfg[key], int) or infoaug_cfg[key] <= 0:
        raise ValueError(f"infoaug.{key} must be a positive integer, got {infoaug_cfg[key]!r}")


def _check_augmentations(infoaug_cfg: DictConfig) -> None:
    augmentations = infoaug_cfg.augmentations
    for key in ("crop_size", "num_crops"):
        if key in augmentations:
            raise ValueError(
                f"infoaug.augmentations.{key} is not used: twin crops are infoaug.image_size wide, "
                "one per image; remove the key"
            )
    if infoaug_cfg.loader == "dali" and augmentations.equalization.prob:
        raise ValueError(
            "infoaug.augmentations.equalization.prob must be 0 with infoaug.loader: dali "
            "(solo-learn's DALI pipeline has no equalization)"
        )
