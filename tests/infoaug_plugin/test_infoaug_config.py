"""The ``infoaug:`` node's one schema (``infoaug_plugin.config``): defaults, typed checks, the
twin augmentation recipe, and the same completion by the methods, the loaders and the YAMLs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from method_helpers import build_cfg
from omegaconf import OmegaConf
from solo.methods import METHODS

from infoaug_plugin.config import (
    ConfigError,
    InfoAugConfig,
    TwinAugmentations,
    augmentation_pipeline,
    fill_infoaug_cfg,
    fill_infoaug_node,
)
from infoaug_plugin.data import fill_loader_defaults

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs"


def test_a_bare_node_gets_every_default() -> None:
    node = fill_infoaug_node(OmegaConf.create({}))
    expected = asdict(InfoAugConfig(batch_size=64, image_size=64))
    assert OmegaConf.to_container(node) == expected


def test_a_full_config_sets_the_sizes_from_the_main_data_and_method() -> None:
    cfg = build_cfg("infoaug_swav", batch_size=6)
    del cfg.infoaug.batch_size
    cfg.augmentations = [{"crop_size": 28, "num_crops": 2}]
    fill_infoaug_cfg(cfg, ("proj_output_dim", "queue_size"))
    assert (cfg.infoaug.batch_size, cfg.infoaug.image_size) == (6, 28)
    assert dict(cfg.infoaug.mi_head) == {"proj_output_dim": 16, "queue_size": 32}


def test_filling_twice_changes_nothing() -> None:
    cfg = build_cfg("infoaug_simclr", weight=0.5, augmentations={"grayscale": {"prob": 0.0}})
    model_cfg = METHODS["infoaug_simclr"].add_and_assert_specific_cfg(cfg)
    once = OmegaConf.to_container(model_cfg.infoaug)
    fill_infoaug_cfg(model_cfg, METHODS["infoaug_simclr"].mi_head_keys)
    assert OmegaConf.to_container(model_cfg.infoaug) == once


def test_a_partial_augmentation_node_keeps_the_other_defaults() -> None:
    node = fill_infoaug_node(OmegaConf.create({"augmentations": {"rrc": {"crop_min_scale": 0.5}}}))
    recipe = asdict(TwinAugmentations())
    recipe["rrc"]["crop_min_scale"] = 0.5
    assert OmegaConf.to_container(node.augmentations) == recipe


def test_the_shipped_yamls_compose_the_one_recipe() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS / "pretrain" / "custom"), version_base="1.2"):
        cfg = compose(
            "infoaug_simclr.yaml", overrides=["infoaug.augmentations.gaussian_blur.prob=0.1"]
        )
    recipe = asdict(TwinAugmentations())
    recipe["gaussian_blur"]["prob"] = 0.1
    assert OmegaConf.to_container(cfg.infoaug.augmentations) == recipe


def test_the_pipeline_leaves_an_unset_mean_to_solo_learn() -> None:
    node = fill_infoaug_node(OmegaConf.create({"augmentations": {"std": [0.5, 0.5, 0.5]}}))
    pipeline = augmentation_pipeline(node, 16)
    assert "mean" not in pipeline and list(pipeline.std) == [0.5, 0.5, 0.5]
    assert pipeline.crop_size == 16


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"wieght": 2.0}, "infoaug.wieght: unknown key (did you mean 'weight'?)"),
        ({"weight": "heavy"}, "infoaug.weight: Value 'heavy' of type 'str' could not be converted"),
        ({"batch_size": 2.5}, "infoaug.batch_size: Value '2.5'"),
        ({"batch_size": 0}, "infoaug.batch_size must be a positive integer, got 0"),
        ({"num_workers": -1}, "infoaug.num_workers must be >= 0"),
        ({"selection": "best"}, "infoaug.selection must be one of store, random; got 'best'"),
        ({"augmentations": {"crop_size": 32}}, "infoaug.augmentations.crop_size is not used"),
        ({"augmentations": {"blur": {"prob": 0.5}}}, "infoaug.augmentations.blur: unknown key"),
        (
            {"augmentations": {"grayscale": {"prob": 1.5}}},
            "infoaug.augmentations.grayscale.prob must be in [0, 1], got 1.5",
        ),
        (
            {"augmentations": {"rrc": {"crop_min_scale": 0.0}}},
            "infoaug.augmentations.rrc: need 0 < crop_min_scale <= crop_max_scale <= 1",
        ),
        (
            {"loader": "dali", "augmentations": {"equalization": {"prob": 0.1}}},
            "infoaug.augmentations.equalization.prob must be 0 with infoaug.loader: dali",
        ),
        ({"mi_head": {"queue_size": "big"}}, "infoaug.mi_head.queue_size: Value 'big'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(node: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refusal:
        fill_infoaug_node(OmegaConf.create(node))
    assert str(refusal.value).startswith(message)
    assert "\n" not in str(refusal.value)


def test_the_loaders_require_the_twin_store() -> None:
    with pytest.raises(ConfigError, match="infoaug.twins: the path of the twin store is required"):
        fill_loader_defaults(OmegaConf.create({"batch_size": 4}))


def test_a_typo_added_on_the_command_line_is_refused_by_the_method() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS / "pretrain" / "custom"), version_base="1.2"):
        cfg = compose("infoaug_simclr.yaml", overrides=["+infoaug.wieght=2"])
    OmegaConf.set_struct(cfg, False)
    with pytest.raises(ConfigError, match=r"infoaug.wieght: unknown key \(did you mean 'weight'"):
        METHODS["infoaug_simclr"].add_and_assert_specific_cfg(cfg)
