"""Registration of the ``infoaug_<base>`` methods, their config checks and their MI modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from method_helpers import BASES, MOMENTUM_BASES, build_cfg
from solo.methods import METHODS

from infoaug_plugin.methods import INFOAUG_METHODS, infoaug_method, register

EXPECTED_KEYS = sorted(f"infoaug_{base}" for base in BASES)


def _registered_keys_in_fresh_interpreter(code: str, cwd: Path) -> list[str]:
    listing = "print(sorted(k for k in METHODS if k.startswith('infoaug_')))"
    script = f"{code}\nfrom solo.methods import METHODS\n{listing}"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True
    )
    return eval(result.stdout.strip().splitlines()[-1])


def test_importing_the_package_registers_the_eight_methods(tmp_path: Path) -> None:
    assert _registered_keys_in_fresh_interpreter("import infoaug_plugin", tmp_path) == EXPECTED_KEYS


def test_hydra_plugin_scan_registers_the_eight_methods(tmp_path: Path) -> None:
    # What Hydra does before running solo-learn's main_pretrain.py / main_linear.py.
    code = "from hydra.core.plugins import Plugins\nPlugins.instance()"
    assert _registered_keys_in_fresh_interpreter(code, tmp_path) == EXPECTED_KEYS


def test_register_adds_the_eight_keys_to_a_given_registry() -> None:
    registry: dict = {"simclr": object}
    register(registry)
    assert sorted(registry) == sorted(EXPECTED_KEYS + ["simclr"])


def test_each_key_names_its_base_class() -> None:
    for key, cls in INFOAUG_METHODS.items():
        assert key == f"infoaug_{cls.base_method}"
        assert issubclass(cls, METHODS[cls.base_method])
        assert METHODS[key] is cls


def test_unknown_base_lists_the_supported_ones() -> None:
    with pytest.raises(
        ValueError,
        match="supported bases: simclr, byol, mocov2plus, mocov3, swav, vicreg, barlow_twins, dino",
    ):
        infoaug_method("simsiam")


def test_infoaug_method_finds_the_class_of_a_base() -> None:
    assert infoaug_method("dino") is INFOAUG_METHODS["infoaug_dino"]


@pytest.mark.parametrize("base", BASES)
def test_mi_state_keys_avoid_backbone_and_encoder(base: str) -> None:
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
    mi_keys = [key for key in model.state_dict() if "mi_" in key]
    assert mi_keys
    assert [key for key in mi_keys if "backbone" in key or "encoder" in key] == []


@pytest.mark.parametrize("base", BASES)
def test_every_mi_parameter_is_optimised(base: str) -> None:
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
    optimised = {id(p) for group in model.learnable_params for p in group["params"]}
    mi_params = [name for name, _ in model.named_parameters() if name.startswith("mi_")]
    assert mi_params
    assert [
        name
        for name, p in model.named_parameters()
        if name.startswith("mi_") and id(p) not in optimised
    ] == []


@pytest.mark.parametrize("base", MOMENTUM_BASES)
def test_every_momentum_mi_module_is_an_ema_target(base: str) -> None:
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
    targets = {id(momentum) for _, momentum in model.momentum_pairs}
    momentum_mi = [name for name, _ in model.named_children() if name.startswith("momentum_mi_")]
    assert momentum_mi
    assert all(id(getattr(model, name)) in targets for name in momentum_mi)
    assert all(
        not p.requires_grad for name in momentum_mi for p in getattr(model, name).parameters()
    )


@pytest.mark.parametrize("base", BASES)
def test_mi_head_has_the_base_head_sizes_by_default(base: str) -> None:
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
    base_head = "head" if base == "dino" else "projector"
    base_shapes = [p.shape for p in getattr(model, base_head).parameters()]
    assert [p.shape for p in getattr(model, f"mi_{base_head}").parameters()] == base_shapes
    assert all(
        not torch.equal(a, b)
        for a, b in zip(
            getattr(model, base_head).parameters(), getattr(model, f"mi_{base_head}").parameters()
        )
        if a.requires_grad and a.ndim > 1
    )


@pytest.mark.parametrize("base", ["simclr", "byol", "swav", "dino"])
def test_mi_head_sizes_can_be_overridden(base: str) -> None:
    sizes = {"proj_hidden_dim": 24, "proj_output_dim": 8}
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}", mi_head=sizes))
    mi_head, base_head = (
        (model.mi_head.mlp, model.head.mlp)
        if base == "dino"
        else (model.mi_projector, model.projector)
    )
    linears = [m for m in mi_head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [24] * (len(linears) - 1) + [8]
    assert base_head[-1].out_features == 16


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "heavy"])
def test_invalid_weight_is_refused(weight: object) -> None:
    with pytest.raises(ValueError, match="infoaug.weight"):
        METHODS["infoaug_simclr"](build_cfg("infoaug_simclr", weight=weight))


def test_unknown_mi_head_key_is_refused() -> None:
    with pytest.raises(ValueError, match="infoaug.mi_head: unknown key"):
        METHODS["infoaug_simclr"](build_cfg("infoaug_simclr", mi_head={"pred_hidden_dim": 8}))


def test_infoaug_defaults_follow_the_main_data() -> None:
    cfg = build_cfg("infoaug_simclr", batch_size=6)
    del cfg.infoaug.batch_size
    cfg.augmentations = [{"crop_size": 28, "num_crops": 2}]
    model = METHODS["infoaug_simclr"](cfg)
    assert (
        model.cfg.infoaug.weight,
        model.cfg.infoaug.batch_size,
        model.cfg.infoaug.image_size,
    ) == (1.0, 6, 28)


def test_misaligned_twin_batch_is_refused() -> None:
    model = METHODS["infoaug_simclr"](build_cfg("infoaug_simclr"))
    main = [torch.arange(4), [torch.randn(4, 3, 32, 32)] * 2, torch.zeros(4, dtype=torch.long)]
    twin = [torch.arange(3), torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    with pytest.raises(ValueError, match="twin batch must be"):
        model.training_step({"main": main, "twin": twin}, 0)


def test_mocov3_vit_is_built_as_mocov3_variant() -> None:
    cfg = build_cfg("infoaug_mocov3")
    cfg.backbone = {"name": "vit_tiny", "kwargs": {"img_size": 32, "patch_size": 8}}
    model = METHODS["infoaug_mocov3"](cfg)
    assert type(model.backbone).__name__ == "VisionTransformerMoCo"
    assert model.cfg.method == "infoaug_mocov3"
