"""Training-step time of each ``infoaug_<base>`` against its solo-learn base method.

Both models of a pair have the same backbone (resnet18, cifar stem), the heads of solo-learn's
cifar YAMLs and the same fixed main batch; the InfoAug model also gets a fixed twin batch. A step
is what Lightning's loop runs (``training_step``, backward, ``on_after_backward``, optimiser step,
``on_train_batch_end`` with the EMA update of momentum methods), minus logging. Steps of the two
models alternate so that load changes on a shared machine hit both; after a warm-up, the table
reports the median step times and the median ratio of neighbouring steps.

The expected ratio counts images through a backbone per step:
``(2 B_main + 2 B_twin) / (2 B_main)``, with the momentum backbone's images added on both sides
for momentum methods (BYOL, MoCo v2+, MoCo v3, DINO).

Usage::

    python benchmarks/step_overhead.py [--batch-size 32] [--twin-batch-size 32] [--warmup 2]
        [--repeats 7] [--methods simclr byol ...] [--device cpu] [--precision 32] [--threads N]

``--precision bf16-mixed`` runs each ``training_step`` under bfloat16 autocast, as Lightning's
``bf16-mixed`` does (on a GPU; CPUs without bf16 units run it many times slower than fp32).

On a CPU shared with other jobs, ``--threads 1`` gives steady numbers: torch threads that wait on
each other at every operator turn other processes' load into large, uneven delays.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from solo.methods import METHODS
from solo.methods.base import BaseMomentumMethod

import infoaug_plugin  # noqa: F401  (registers the methods)

# solo-learn's scripts/pretrain/cifar/*.yaml heads (queues sized for the benchmark's batches).
METHOD_KWARGS: dict[str, dict[str, Any]] = {
    "simclr": {"proj_hidden_dim": 2048, "proj_output_dim": 256, "temperature": 0.2},
    "byol": {"proj_hidden_dim": 4096, "proj_output_dim": 256, "pred_hidden_dim": 4096},
    "mocov2plus": {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 256,
        "temperature": 0.2,
        "queue_size": 32768,
    },
    "mocov3": {
        "proj_hidden_dim": 4096,
        "proj_output_dim": 256,
        "pred_hidden_dim": 4096,
        "temperature": 0.2,
    },
    "swav": {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "num_prototypes": 3000,
        "temperature": 0.1,
        "queue_size": 3840,
        "epoch_queue_starts": 0,
    },
    "vicreg": {"proj_hidden_dim": 2048, "proj_output_dim": 2048},
    "barlow_twins": {"proj_hidden_dim": 2048, "proj_output_dim": 2048, "scale_loss": 0.1},
    "dino": {"proj_hidden_dim": 2048, "proj_output_dim": 256, "num_prototypes": 4096},
}
IMAGE_SIZE = 32
# Lightning's precision flags that this loop reproduces: autocast dtype of ``training_step``.
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"32": None, "bf16-mixed": torch.bfloat16}


def build_cfg(method: str, batch_size: int, twin_batch_size: int) -> DictConfig:
    """A cifar10-stem resnet18 config for ``method`` (a base or ``infoaug_<base>``)."""
    base = method.removeprefix("infoaug_")
    cfg: dict[str, Any] = {
        "name": f"bench-{method}",
        "method": method,
        "backbone": {"name": "resnet18"},
        "method_kwargs": METHOD_KWARGS[base],
        "data": {
            "dataset": "cifar10",
            "num_large_crops": 2,
            "num_small_crops": 0,
            "num_classes": 10,
        },
        # solo-learn's CIFAR recipe. Plain SGD at lr 0.1 made VICReg NaN within six steps in any
        # precision, which the GPU suite's smoke fits (built here too) misread as a bf16 failure.
        "optimizer": {
            "name": "lars",
            "batch_size": batch_size,
            "lr": 0.3,
            "classifier_lr": 0.1,
            "weight_decay": 1e-4,
            "kwargs": {"clip_lr": True, "eta": 0.02, "exclude_bias_n_norm": True},
        },
        "scheduler": {"name": "none"},
        "max_epochs": 1,
        "momentum": {"base_tau": 0.99, "final_tau": 1.0},
    }
    if method.startswith("infoaug_"):
        cfg["infoaug"] = {"batch_size": twin_batch_size}
    return OmegaConf.create(cfg)


@dataclass
class LoopState:
    """The few trainer attributes solo-learn's hooks read during a training step."""

    world_size: int = 1
    current_epoch: int = 0
    global_step: int = 0
    estimated_stepping_batches: int = 10**6


class Stepper:
    """Runs one model's training steps the way Lightning's loop does, minus the logging.

    Each step: ``training_step``, ``backward``, ``on_after_backward`` (solo-learn's freezes and
    clipping), the optimiser step and ``on_train_batch_end`` (the EMA update of momentum methods).
    """

    def __init__(
        self, model: pl.LightningModule, batch: Any, device: torch.device, precision: str = "32"
    ):
        """Moves ``model`` to ``device``, attaches a ``LoopState`` and runs the start hooks.

        Args:
            model: a solo-learn method.
            batch: the batch every step trains on, already on ``device``.
            device: where the model runs.
            precision: a key of ``AUTOCAST_DTYPES``.
        """
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(
                f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}"
            )
        self.model = model.to(device)
        self.batch = batch
        self.device = device
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        self.loop = LoopState()
        model.trainer = self.loop
        # Lightning's self.log needs a running loop; logging is not part of the measured step.
        model.log = model.log_dict = lambda *args, **kwargs: None
        self.optimizer = model.configure_optimizers()
        model.on_train_start()
        model.on_train_epoch_start()

    def step(self) -> float:
        """One training step; returns its wall time in seconds."""
        self._sync()
        start = time.perf_counter()
        # Like Lightning's MixedPrecision plugin: autocast around the forward only.
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        ):
            loss = self.model.training_step(self.batch, self.loop.global_step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.model.on_after_backward()
        self.optimizer.step()
        self.loop.global_step += 1
        self.model.on_train_batch_end(loss, self.batch, self.loop.global_step)
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def compute_ratio(base: str, batch_size: int, twin_batch_size: int) -> float:
    """Images through a backbone per InfoAug step over those per base step."""
    base_images = 2 * batch_size
    infoaug_images = base_images + 2 * twin_batch_size
    if issubclass(METHODS[base], BaseMomentumMethod):  # the momentum backbone sees them all again
        base_images, infoaug_images = 2 * base_images, 2 * infoaug_images
    return infoaug_images / base_images


@dataclass(frozen=True)
class StepTimes:
    """Median step times of a base method and its InfoAug method, and the measured ratio.

    Attributes:
        base_s: median step time of the base method, seconds.
        infoaug_s: median step time of ``infoaug_<base>``, seconds.
        ratio: median over steps of the ratio of neighbouring InfoAug and base steps.
    """

    base_s: float
    infoaug_s: float
    ratio: float


def measure(
    base: str,
    batch_size: int,
    twin_batch_size: int,
    warmup: int,
    repeats: int,
    device: torch.device,
    precision: str = "32",
) -> StepTimes:
    """Times alternating steps of ``base`` and ``infoaug_<base>`` on the same main batch.

    Args:
        base: a key of ``METHOD_KWARGS``.
        batch_size: main batch (per view).
        twin_batch_size: twin pairs per step.
        warmup: untimed steps per model.
        repeats: timed steps per model.
        device: where both models run.
        precision: a key of ``AUTOCAST_DTYPES``.

    Returns:
        The medians.
    """
    generator = torch.Generator().manual_seed(0)

    def images(count: int) -> torch.Tensor:
        return torch.randn(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator).to(device)

    main = [
        torch.arange(batch_size, device=device),
        [images(batch_size), images(batch_size)],
        torch.randint(0, 10, (batch_size,), generator=generator).to(device),
    ]
    twin = [
        torch.arange(twin_batch_size, device=device),
        images(twin_batch_size),
        images(twin_batch_size),
    ]
    steppers = [
        Stepper(
            METHODS[base](build_cfg(base, batch_size, twin_batch_size)), main, device, precision
        ),
        Stepper(
            METHODS[f"infoaug_{base}"](build_cfg(f"infoaug_{base}", batch_size, twin_batch_size)),
            {"main": main, "twin": twin},
            device,
            precision,
        ),
    ]
    for _ in range(warmup):
        for stepper in steppers:
            stepper.step()
    base_times, infoaug_times = [], []
    for _ in range(repeats):
        base_times.append(steppers[0].step())
        infoaug_times.append(steppers[1].step())
    ratios = [i / b for b, i in zip(base_times, infoaug_times)]
    return StepTimes(
        statistics.median(base_times), statistics.median(infoaug_times), statistics.median(ratios)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="main batch (per view)")
    parser.add_argument("--twin-batch-size", type=int, default=32, help="twin pairs per step")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per model")
    parser.add_argument(
        "--methods", nargs="+", default=list(METHOD_KWARGS), choices=list(METHOD_KWARGS)
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", default="32", choices=list(AUTOCAST_DTYPES))
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # solo-learn's per-model scheduler warnings

    print(
        f"resnet18 (cifar stem) on {IMAGE_SIZE}x{IMAGE_SIZE}, main batch {args.batch_size} x 2 views, "
        f"twin batch {args.twin_batch_size} pairs, {args.device}, precision {args.precision}, "
        f"torch threads {torch.get_num_threads()}, medians of {args.repeats} alternating steps"
    )
    header = (
        f"{'method':<14}{'base ms':>10}{'infoaug ms':>12}{'measured':>10}{'compute':>9}  within 10%"
    )
    print(header)
    print("-" * len(header))
    for base in args.methods:
        times = measure(
            base,
            args.batch_size,
            args.twin_batch_size,
            args.warmup,
            args.repeats,
            torch.device(args.device),
            args.precision,
        )
        expected = compute_ratio(base, args.batch_size, args.twin_batch_size)
        within = abs(times.ratio / expected - 1) <= 0.10
        print(
            f"{base:<14}{times.base_s * 1e3:>10.1f}{times.infoaug_s * 1e3:>12.1f}"
            f"{times.ratio:>10.2f}{expected:>9.2f}  "
            f"{'yes' if within else 'NO'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
