"""Training behaviour of every ``infoaug_<base>`` method on 32x32 images with a tiny twin store."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from method_helpers import BASES, MOMENTUM_BASES, RandomViews, build_cfg, cpu_trainer, train_loaders
from solo.methods import METHODS
from solo.methods.base import BaseMethod
from torch.utils.data import DataLoader

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 2


@dataclass
class Fitted:
    """A model trained for ``STEPS`` steps, its initial state, its trainer and its checkpoint."""

    model: BaseMethod
    initial: dict[str, torch.Tensor]
    trainer: pl.Trainer
    ckpt: Path


@pytest.fixture(scope="module")
def fitted(
    tmp_path_factory: pytest.TempPathFactory, twin_store: Path, one_torch_thread: None
) -> Callable[[str], Fitted]:
    """``fitted(base)``: ``infoaug_<base>`` trained once per module through the dict of loaders."""
    cache: dict[str, Fitted] = {}

    def fit(base: str) -> Fitted:
        if base not in cache:
            pl.seed_everything(0)
            model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
            initial = copy.deepcopy(model.state_dict())
            trainer = cpu_trainer(max_steps=STEPS)
            trainer.fit(model, train_loaders(twin_store))
            ckpt = tmp_path_factory.mktemp(base) / "last.ckpt"
            trainer.save_checkpoint(ckpt)
            cache[base] = Fitted(model, initial, trainer, ckpt)
        return cache[base]

    return fit


class FirstStepGradients(pl.Callback):
    """Keeps the backbone's gradients of the first optimiser step."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: BaseMethod, optimizer) -> None:
        if not self.grads:
            self.grads = {name: p.grad.clone() for name, p in module.backbone.named_parameters()}


def linear_eval_backbone(ckpt: Path, base: str) -> tuple[nn.Module, list[str]]:
    """Loads ``ckpt`` the way solo-learn's ``main_linear.py`` does (torch's default weights_only).

    Returns:
        The cifar-stem resnet18 and the missing keys of its non-strict load.
    """
    backbone = BaseMethod._BACKBONES["resnet18"](method=base)
    backbone.fc = nn.Identity()
    backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    backbone.maxpool = nn.Identity()
    state = torch.load(ckpt, map_location="cpu")["state_dict"]
    for key in list(state.keys()):
        if "encoder" in key:
            state[key.replace("encoder", "backbone")] = state[key]
        if "backbone" in key:
            state[key.replace("backbone.", "")] = state[key]
        del state[key]
    missing, _ = backbone.load_state_dict(state, strict=False)
    return backbone, missing


@pytest.mark.parametrize("base", BASES)
def test_fit_logs_finite_base_and_mi_losses(base: str, fitted: Callable[[str], Fitted]) -> None:
    metrics = fitted(base).trainer.callback_metrics
    assert math.isfinite(metrics["train_mi_loss"])
    assert math.isfinite(metrics["train_base_loss"])


@pytest.mark.parametrize("base", BASES)
def test_fit_trains_every_mi_parameter(base: str, fitted: Callable[[str], Fitted]) -> None:
    run = fitted(base)
    trained = {
        name: p
        for name, p in run.model.named_parameters()
        if name.startswith("mi_") and p.requires_grad
    }
    assert trained
    unchanged = [name for name, p in trained.items() if torch.equal(p, run.initial[name])]
    assert unchanged == []


@pytest.mark.parametrize("base", MOMENTUM_BASES)
def test_momentum_mi_head_moves_toward_online_head(
    base: str, fitted: Callable[[str], Fitted]
) -> None:
    run = fitted(base)
    params = dict(run.model.named_parameters())
    momentum = {
        name: p
        for name, p in params.items()
        if name.startswith("momentum_mi_") and p.dtype.is_floating_point
    }
    assert momentum
    for name, p in momentum.items():
        online = params[name.removeprefix("momentum_")]
        if torch.equal(
            online, run.initial[name]
        ):  # a frozen weight-norm gain stays put on both sides
            continue
        assert not torch.equal(p, run.initial[name]), name
        assert (p - online).norm() < (run.initial[name] - online).norm(), name


@pytest.mark.parametrize("base", BASES)
def test_checkpoint_loads_into_linear_eval_backbone(
    base: str, fitted: Callable[[str], Fitted]
) -> None:
    run = fitted(base)
    backbone, missing = linear_eval_backbone(run.ckpt, base)
    assert missing == []
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, run.model.backbone.state_dict()[name]), name


@pytest.mark.parametrize("base", BASES)
def test_checkpoint_resumes_training(
    base: str, fitted: Callable[[str], Fitted], twin_store: Path
) -> None:
    run = fitted(base)
    model = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}"))
    trainer = cpu_trainer(max_steps=STEPS + 1)
    trainer.fit(model, train_loaders(twin_store), ckpt_path=str(run.ckpt))
    assert trainer.global_step == STEPS + 1
    assert math.isfinite(trainer.callback_metrics["train_mi_loss"])


def test_checkpoint_holds_no_hyperparameters(fitted: Callable[[str], Fitted]) -> None:
    assert "hyper_parameters" not in torch.load(fitted("simclr").ckpt, map_location="cpu")


@pytest.mark.parametrize("base", BASES)
def test_zero_weight_keeps_base_backbone_gradient(base: str, twin_store: Path) -> None:
    infoaug = METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}", weight=0.0))
    reference = METHODS[base](build_cfg(base))
    missing, _ = reference.load_state_dict(infoaug.state_dict(), strict=False)
    assert missing == []

    grads = []
    for model, data in (
        (infoaug, train_loaders(twin_store, shuffle=False)),
        (reference, train_loaders(twin_store, shuffle=False)["main"]),
    ):
        capture = FirstStepGradients()
        cpu_trainer(max_steps=1, callbacks=[capture]).fit(model, data)
        grads.append(capture.grads)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    ("base", "frozen", "freeze_key"),
    [
        ("swav", "mi_prototypes", "freeze_prototypes_epochs"),
        ("dino", "mi_head.last_layer", "freeze_last_layer"),
    ],
)
def test_mi_prototypes_frozen_like_base_in_first_epochs(
    base: str, frozen: str, freeze_key: str, twin_store: Path
) -> None:
    cfg = build_cfg(f"infoaug_{base}")
    cfg.method_kwargs[freeze_key] = 1
    model = METHODS[f"infoaug_{base}"](cfg)
    before = copy.deepcopy(model.get_submodule(frozen).state_dict())
    cpu_trainer(max_steps=2).fit(model, train_loaders(twin_store))
    for name, value in model.get_submodule(frozen).state_dict().items():
        assert torch.equal(value, before[name]), name


def test_mocov2plus_mi_queue_takes_gathered_twin_keys(fitted: Callable[[str], Fitted]) -> None:
    model = fitted("mocov2plus").model
    assert int(model.mi_queue_ptr) == (STEPS * 4) % model.mi_queue_size
    assert not torch.equal(model.mi_queue, fitted("mocov2plus").initial["mi_queue"])


def test_mocov2plus_mi_queue_size_must_divide_by_twin_batch(twin_store: Path) -> None:
    model = METHODS["infoaug_mocov2plus"](
        build_cfg("infoaug_mocov2plus", mi_head={"queue_size": 30})
    )
    with pytest.raises(ValueError, match="infoaug.mi_head.queue_size"):
        cpu_trainer(max_steps=1).fit(model, train_loaders(twin_store))


def test_swav_mi_queue_holds_recent_projections(fitted: Callable[[str], Fitted]) -> None:
    queue = fitted("swav").model.mi_queue
    assert queue.shape == (2, 32, 16)
    filled = queue.norm(dim=-1) > 0
    assert filled[:, : STEPS * 4].all() and not filled[:, STEPS * 4 :].any()


def test_dino_mi_teacher_temperature_follows_epoch(twin_store: Path) -> None:
    model = METHODS["infoaug_dino"](build_cfg("infoaug_dino"))
    cpu_trainer(max_epochs=2, limit_train_batches=1).fit(model, train_loaders(twin_store))
    assert model.mi_dino_loss_func.epoch == model.dino_loss_func.epoch == 1


def test_provider_serves_twins_when_trainer_gets_main_loader_only(twin_store: Path) -> None:
    model = METHODS["infoaug_simclr"](
        build_cfg("infoaug_simclr", twins=str(twin_store), image_size=32, num_workers=0)
    )
    trainer = cpu_trainer(max_steps=5)
    trainer.fit(model, DataLoader(RandomViews(), batch_size=4, shuffle=True, drop_last=True))
    assert trainer.global_step == 5
    assert math.isfinite(trainer.callback_metrics["train_mi_loss"])


def test_provider_requires_twin_store(twin_store: Path) -> None:
    model = METHODS["infoaug_simclr"](build_cfg("infoaug_simclr"))
    with pytest.raises(ValueError, match="infoaug.twins"):
        cpu_trainer(max_steps=1).fit(model, DataLoader(RandomViews(), batch_size=4, drop_last=True))
