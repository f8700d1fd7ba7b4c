"""``infoaug.bn_stats``: whether the twin forward updates the shared BatchNorm running statistics."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from method_helpers import BASES, MOMENTUM_BASES, build_cfg, cpu_trainer, train_loaders
from solo.methods import METHODS
from torch.nn.modules.batchnorm import _BatchNorm

from infoaug_plugin.methods.mixin import running_stats_frozen

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm buffer (running mean/var, ``num_batches_tracked``) of ``model`` by name."""
    return {
        f"{name}.{buffer_name}": buffer.clone()
        for name, layer in model.named_modules()
        if isinstance(layer, _BatchNorm)
        for buffer_name, buffer in layer.named_buffers(recurse=False)
    }


def one_step_bn_buffers(
    base: str, bn_stats: str, twin_store: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One training step of ``infoaug_<base>`` and of solo-learn's ``<base>`` from the same weights
    on the same main batch.

    Returns:
        The BatchNorm buffers of the InfoAug model that the base model also has, and the base
        model's, both after the step.
    """
    pl.seed_everything(0)
    infoaug = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}", bn_stats=bn_stats))
    reference = METHODS[base](build_cfg(base))
    missing, _ = reference.load_state_dict(infoaug.state_dict(), strict=False)
    assert missing == []
    cpu_trainer(max_steps=1).fit(infoaug, train_loaders(twin_store, shuffle=False))
    cpu_trainer(max_steps=1).fit(reference, train_loaders(twin_store, shuffle=False)["main"])
    expected = bn_buffers(reference)
    got = bn_buffers(infoaug)
    return {name: got[name] for name in expected}, expected


@pytest.mark.parametrize("base", BASES)
def test_main_bn_stats_leave_running_statistics_as_the_base_step_does(
    base: str, twin_store: Path
) -> None:
    got, expected = one_step_bn_buffers(base, "main", twin_store)
    checked = ["backbone.bn1.running_mean"]
    if base in MOMENTUM_BASES:
        checked.append("momentum_backbone.bn1.running_mean")
    assert set(checked) <= expected.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


@pytest.mark.parametrize("base", ["simclr", "byol", "dino"])
def test_shared_bn_stats_let_the_twin_batch_update_running_statistics(
    base: str, twin_store: Path
) -> None:
    got, expected = one_step_bn_buffers(base, "shared", twin_store)
    changed = {name for name, value in expected.items() if not torch.equal(got[name], value)}
    backbones = ["backbone"] + (["momentum_backbone"] if base in MOMENTUM_BASES else [])
    for backbone in backbones:
        assert {f"{backbone}.bn1.running_mean", f"{backbone}.bn1.num_batches_tracked"} <= changed


@pytest.mark.parametrize("base", ["byol", "mocov3"])  # MI heads with BatchNorm, and EMA copies
def test_main_bn_stats_let_the_mi_heads_track_the_twin_batches(base: str, twin_store: Path) -> None:
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}", bn_stats="main"))
    cpu_trainer(max_steps=2).fit(model, train_loaders(twin_store))
    mi_counts = {
        name: int(value)
        for name, value in bn_buffers(model).items()
        if "mi_" in name and name.endswith("num_batches_tracked")
    }
    assert any(name.startswith("momentum_mi_") for name in mi_counts)
    assert set(mi_counts.values()) == {2}


def test_unknown_bn_stats_is_refused_by_key() -> None:
    with pytest.raises(ValueError, match="infoaug.bn_stats must be 'main' or 'shared', got 'twin'"):
        METHODS["infoaug_simclr"](build_cfg("infoaug_simclr", bn_stats="twin"))


def test_bn_stats_defaults_to_main() -> None:
    model = METHODS["infoaug_simclr"](build_cfg("infoaug_simclr"))
    assert model.infoaug_bn_stats == "main"


@pytest.mark.parametrize("norm", [nn.BatchNorm1d, nn.SyncBatchNorm])
def test_frozen_layers_normalise_with_batch_statistics_and_keep_their_buffers(
    norm: type[_BatchNorm],
) -> None:
    layer = norm(3).train()
    layer.running_mean.fill_(5.0)
    batch = torch.randn(8, 3) * 4 + 2
    before = bn_buffers(layer)
    with running_stats_frozen(layer):
        out = layer(batch)
    assert layer.training
    for name, value in bn_buffers(layer).items():
        assert torch.equal(value, before[name]), name
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_frozen_layers_track_again_after_an_exception() -> None:
    model = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(RuntimeError, match="inside"), running_stats_frozen(model):
        assert not model[0].track_running_stats
        raise RuntimeError("inside")
    assert model[0].track_running_stats and not model[1].track_running_stats
