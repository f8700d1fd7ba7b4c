"""The GPU suite: one command that checks and measures InfoAug on a lent GPU machine.

Usage::

    python benchmarks/gpu_suite.py --out DIR [--dry-run] [--budget-s 480] [--data-dir FASHION]
        [--work WORK] [--study-epochs E] [--study-seeds S]

It writes ``DIR/summary.json`` and ``DIR/summary.md`` (again after every part, so whatever stops it
leaves what was measured so far), ``DIR/study.csv`` (one row per finished run of the learning study,
``infoaug-eval``'s columns) and ``DIR/study.log`` (the study's output). Its parts, in order:

1. **device**: GPU name and memory, torch / CUDA / cuDNN versions, CPU count, the versions of the
   stack, and whether NVIDIA DALI imports.
2. **twin loader**: pairs/s of the torch twin loader and of DALI (``dali_device: gpu``; ``cpu`` in
   a dry run) on one store of real video patches (``benchmarks/twin_loader.py``). Where DALI does
   not import, its rows say "not available on this machine".
3. **step ratio**: step time of each of the eight ``infoaug_<base>`` over its base method, steps
   alternating, under bf16 autocast on the GPU (``benchmarks/step_overhead.py``).
4. **smoke**: each ``infoaug_<base>`` trained for a few steps by a Lightning ``Trainer`` with
   ``precision`` ``16-mixed`` and ``bf16-mixed``, its twin batches served by its own twin provider
   (the path of solo-learn's unchanged ``main_pretrain.py``) from the torch loader and, where DALI
   imports, from DALI's GPU pipeline: the losses are finite, every trainable MI parameter changed
   and the twin batches reached the model's device.
5. **learning study**: ``infoaug-eval`` on the full Fashion-MNIST (60,000 / 10,000) for SimCLR x
   {untrained, base, mi, random} x twin sources {clips, scenes}, every cell of a seed at once on
   the one GPU (``--jobs``), one seed per round: a further seed starts only if the time left covers
   the longest run of the last round. solo-learn's ``nnclr`` (learned cross-sample positives) runs
   beside the first round as a reference row (``configs.REFERENCE_BASES``). It runs
   while the smoke part does (the study is bound by data loading on the CPUs; the smoke steps are
   not timed).

The guard. The suite stops starting work at ``--budget-s`` (default 480 s on a GPU, 140 s in a dry
run), measured from its start: each part has a share of the budget and skips the items it cannot
start in time (their rows say so), the study's ``infoaug-eval`` processes are killed at the
deadline (their finished runs are still read back from each run's ``result.json``), and a watchdog
thread writes the summary and ends the process if anything overruns the budget by 20 s.

``--dry-run`` runs the same code on the CPU at a tiny budget (fp32 instead of the mixed precisions:
Lightning runs ``16-mixed`` as ``bf16-mixed`` on a CPU, and CPUs without bf16 units take minutes
per step; the DALI rows use ``dali_device: cpu``; a few methods in the ratio part; a 128-image
subset and one small round in the study).

On a lent GPU machine (the device tool), after ``bash benchmarks/prepare_gpu_carry.sh`` here (it
fills the ignored folder ``gpu_carry/``), the call is::

    run(command="bash benchmarks/gpu_suite.sh", carry=["gpu_carry"], timeout_s=590)

``gpu_suite.sh`` installs the carried wheels, points the study at the carried Fashion-MNIST and
writes everything into ``$OUT/gpu`` (five files, well inside what comes back).

Sizing (one H200, 16 cores, default budget 480 s; estimates until a run measures them). The budget's
clock starts after the imports (~10 s); the launcher's installs take ~20 s more, so the whole
command ends within ~8.5 minutes. Twin loader: 2,048 pairs of 64 px, 8 workers, 2 rounds of 2
epochs, ~20 s. Step ratio: resnet18 (CIFAR stem) at 32 px, 256 x 2 views + 128 twin pairs, bf16; a
step is ~10-20 ms, so 3 + 10 alternating steps per model and two model builds per method make ~30 s
for the eight. Smoke: 16 fits of 6 steps at batch 64, ~3 s each (Trainer set-up and loader workers
dominate), ~50 s, beside the study. So the study starts ~60 s in and has ~400 s. Its GPU work is
small (a SimCLR step of 256 x 2 images is ~15 ms, ~4 s per epoch of 234 steps); data loading is the
bottleneck: solo's augmentations cost ~1.5 ms of one core per image (two views) and the twin loader
~1.5 ms per pair, so an epoch of an InfoAug run is ~150 core-seconds and one of a base run ~90. The
five pretraining runs of a seed together need ~690 core-seconds per epoch, ~50 s on 14 busy cores (3
loader workers per loader and run, 2 threads per process). Preparing the data (the export, mining
the three clips with 4 builder workers, rendering and mining the scenes) takes ~60 s in the first
round; the probe extracts 70,000 features on the GPU and fits a logistic regression, ~30 s per run.
So 2 epochs per run make a round of ~140 s (~200 s with the preparation): seed 0 and most likely
seed 1 fit. ``--study-epochs`` and ``--study-seeds`` change this once a first run has measured the
real times (``summary.json`` records every run's pretraining and probe seconds, and each round's).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from solo.methods import METHODS
from step_overhead import METHOD_KWARGS, build_cfg, compute_ratio, measure
from tqdm import tqdm
from twin_loader import loader_rates, write_store

import infoaug_plugin  # noqa: F401  (registers the methods)
from infoaug_plugin.evaluation.configs import REFERENCE_BASES
from infoaug_plugin.evaluation.harness import twin_purities
from infoaug_plugin.evaluation.report import learning_verdict, markdown_table, summarise, write_csv
from infoaug_plugin.evaluation.runs import RESULT_NAME, CellResult

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
STUDY_CSV = "study.csv"
STUDY_LOG = "study.log"
# The watchdog ends the process this long after the budget if a part overruns it.
HARD_STOP_GRACE_S = 20.0
# Killed process groups get this long between SIGTERM and SIGKILL.
KILL_GRACE_S = 5.0
# Time a study round spends outside its runs (imports, cached export, store checks), seconds.
ROUND_OVERHEAD_S = 20.0
# The longest run of a round is scaled by this to estimate the next round.
ROUND_MARGIN = 1.15
# The study stops this long before the budget, leaving time to read back and write the summary.
STUDY_MARGIN_S = 10.0
NOT_AVAILABLE = "not available on this machine"
# torch.amp.GradScaler's default init_scale, which Lightning's 16-mixed starts from.
INITIAL_GRAD_SCALE = 2.0**16
STACK = ("torch", "torchvision", "lightning", "torchmetrics", "solo-learn", "timm", "numpy")


@dataclass(frozen=True)
class StudyPlan:
    """The learning study: what ``infoaug-eval`` runs in each round.

    Attributes:
        bases: base methods of the matrix.
        variants: ``infoaug-eval`` variants.
        twin_sources: ``--twin-source`` values.
        references: base methods run once (first seed, ``base`` variant) as reference rows.
        max_seeds: rounds at most (one seed each).
        options: ``infoaug-eval`` budget and hardware options (``--epochs`` among them).
    """

    bases: tuple[str, ...]
    variants: tuple[str, ...]
    twin_sources: tuple[str, ...]
    references: tuple[str, ...]
    max_seeds: int
    options: dict[str, str]


@dataclass(frozen=True)
class SuitePlan:
    """Sizes of every part for one kind of run (GPU or dry run).

    Attributes:
        accelerator: ``gpu`` or ``cpu``.
        budget_s: default wall-clock budget, seconds.
        shares: part name to its share of the budget (the parts before the study end when the
            sum of their shares is spent, each at most its own share after it starts).
        loader_pairs: pairs of the twin-loader store (also the smoke store).
        loader_threads: loader threads (DALI) and workers (torch).
        loader_batch: twin pairs per batch.
        loader_image: twin crop side, px.
        loader_epochs: timed passes per round.
        loader_repeats: rounds.
        ratio_bases: base methods of the step-ratio part.
        ratio_batch: main batch (per view) of the step-ratio part.
        ratio_twin_batch: twin pairs per step of the step-ratio part.
        ratio_warmup: untimed steps per model.
        ratio_repeats: timed steps per model.
        ratio_precision: ``32`` or ``bf16-mixed``.
        smoke_precisions: Lightning precisions of the smoke fits.
        smoke_steps: optimiser steps per smoke fit.
        smoke_batch: main batch per view and twin pairs per step of the smoke fits.
        smoke_workers: twin-loader workers (threads for DALI) of the smoke fits.
        dali_smoke_bases: base methods whose smoke fits also run with the DALI twin loader.
        dali_device: ``infoaug.dali_device`` of the DALI rows.
        study: the learning study.
    """

    accelerator: str
    budget_s: float
    shares: dict[str, float]
    loader_pairs: int
    loader_threads: int
    loader_batch: int
    loader_image: int
    loader_epochs: int
    loader_repeats: int
    ratio_bases: tuple[str, ...]
    ratio_batch: int
    ratio_twin_batch: int
    ratio_warmup: int
    ratio_repeats: int
    ratio_precision: str
    smoke_precisions: tuple[str, ...]
    smoke_steps: int
    smoke_batch: int
    smoke_workers: int
    dali_smoke_bases: tuple[str, ...]
    dali_device: str
    study: StudyPlan


def gpu_plan(cpus: int) -> SuitePlan:
    """The plan of a real run on one GPU with ``cpus`` cores (see the module docstring)."""
    cells_per_round = 5  # the pretrained cells of a seed: base, mi and random x 2 sources
    return SuitePlan(
        accelerator="gpu",
        budget_s=480.0,
        shares={"loader": 0.08, "ratio": 0.15, "smoke": 0.35},
        loader_pairs=2048,
        # Eight as in a run's loaders; more only adds worker start-up and shared memory.
        loader_threads=min(8, cpus),
        loader_batch=128,
        loader_image=64,
        loader_epochs=2,
        loader_repeats=2,
        ratio_bases=tuple(METHOD_KWARGS),
        ratio_batch=256,
        ratio_twin_batch=128,
        ratio_warmup=3,
        ratio_repeats=10,
        ratio_precision="bf16-mixed",
        smoke_precisions=("16-mixed", "bf16-mixed"),
        smoke_steps=6,
        smoke_batch=64,
        smoke_workers=2,
        dali_smoke_bases=tuple(METHOD_KWARGS),
        dali_device="gpu",
        study=StudyPlan(
            bases=("simclr",),
            variants=("untrained", "base", "mi", "random"),
            twin_sources=("clips", "scenes"),
            references=REFERENCE_BASES,
            max_seeds=3,
            options={
                "--train-size": "0",
                "--test-size": "0",
                "--epochs": "2",
                "--batch-size": "256",
                "--twin-batch-size": "128",
                "--proj-hidden-dim": "2048",
                "--proj-output-dim": "256",
                "--linear-batch-size": "1024",
                "--num-workers": str(max(2, cpus // cells_per_round)),
                "--accelerator": "gpu",
                "--devices": "1",
                "--precision": "bf16-mixed",
                "--loader": "torch",
                "--threads": "2",
                "--jobs": str(cells_per_round + 1),
                "--twin-workers": "4",
            },
        ),
    )


def dry_run_plan() -> SuitePlan:
    """The plan of a dry run: the same parts on the CPU, sized to finish in under 3 minutes."""
    return SuitePlan(
        accelerator="cpu",
        budget_s=140.0,
        shares={"loader": 0.1, "ratio": 0.15, "smoke": 0.5},
        loader_pairs=64,
        loader_threads=1,
        loader_batch=16,
        loader_image=32,
        loader_epochs=1,
        loader_repeats=1,
        ratio_bases=("simclr", "byol"),
        ratio_batch=4,
        ratio_twin_batch=4,
        ratio_warmup=0,
        ratio_repeats=1,
        ratio_precision="32",
        smoke_precisions=("32",),
        smoke_steps=1,
        smoke_batch=4,
        smoke_workers=0,
        dali_smoke_bases=("simclr", "byol"),
        dali_device="cpu",
        study=StudyPlan(
            bases=("simclr",),
            variants=("untrained", "mi"),
            twin_sources=("clips",),
            references=REFERENCE_BASES,
            max_seeds=2,
            options={
                "--train-size": "128",
                "--test-size": "100",
                "--epochs": "1",
                "--batch-size": "32",
                "--twin-batch-size": "16",
                "--proj-hidden-dim": "64",
                "--proj-output-dim": "32",
                "--linear-batch-size": "64",
                "--num-workers": "0",
                "--accelerator": "cpu",
                "--precision": "32",
                "--loader": "torch",
                "--threads": "1",
                "--jobs": "2",
                "--twin-workers": "1",
            },
        ),
    )


class Suite:
    """The summary being built, its files, the clock and the child processes to stop.

    Both the main thread (device, loader, ratio, smoke) and the study thread add to the summary;
    each write takes the lock and rewrites both files whole.
    """

    def __init__(self, out: Path, plan: SuitePlan, budget_s: float, mode: str):
        """Starts the clock.

        Args:
            out: output directory.
            plan: the sizes.
            budget_s: the wall-clock budget, seconds.
            mode: ``gpu`` or ``dry-run``.
        """
        self.out = out
        self.plan = plan
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.lock = threading.RLock()
        self.children: set[subprocess.Popen] = set()
        self.data: dict[str, Any] = {
            "suite": {
                "mode": mode,
                "budget_s": budget_s,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "command": shlex.join([sys.executable, *sys.argv]),
                "parts": {},
                "guard": [],
            },
            "device": {},
            "twin_loader": [],
            "step_ratio": [],
            "smoke": [],
            "study": {},
        }

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left before the budget is spent."""
        return self.deadline - time.monotonic()

    def part_deadline(self, shares: float) -> float:
        """The monotonic time by which the parts before the study with these shares must end."""
        return min(self.deadline, self.started + shares * self.budget_s)

    def set_part(self, name: str, status: str, seconds: float, note: str = "") -> None:
        """Records how a part ended and writes the summary."""
        with self.lock:
            self.data["suite"]["parts"][name] = {
                "status": status,
                "seconds": round(seconds, 1),
                "note": note,
            }
        self.write()

    def guard(self, event: str) -> None:
        """Records that the guard stopped or skipped work, and writes the summary."""
        with self.lock:
            self.data["suite"]["guard"].append(f"{self.elapsed():.0f} s: {event}")
        self.write()

    def add_row(self, part: str, row: dict[str, Any]) -> None:
        """Appends a row to a part's table and writes the summary."""
        with self.lock:
            self.data[part].append(row)
        self.write()

    def write(self) -> None:
        """Writes ``summary.json`` and ``summary.md`` (atomically each)."""
        with self.lock:
            self.data["suite"]["elapsed_s"] = round(self.elapsed(), 1)
            _write_atomic(self.out / SUMMARY_JSON, json.dumps(self.data, indent=2, default=str))
            _write_atomic(self.out / SUMMARY_MD, render_markdown(self.data))

    def stop_children(self) -> None:
        """Stops every registered child process group (SIGTERM, then SIGKILL)."""
        with self.lock:
            children = list(self.children)
        stop_process_groups(children)


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def stop_process_groups(processes: list[subprocess.Popen]) -> None:
    """Ends the process groups of ``processes`` (started with ``start_new_session``): SIGTERM, then
    SIGKILL for those still running after ``KILL_GRACE_S``.

    Args:
        processes: the group leaders.
    """
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    ends = time.monotonic() + KILL_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, ends - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # Children of a finished leader (loader workers) may still hold the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_until(
    commands: list[list[str]], log: Path, deadline: float, suite: Suite, cwd: Path
) -> tuple[list[int | None], bool]:
    """Runs ``commands`` at once, each in its own process group, until all end or the deadline.

    Args:
        commands: argument lists.
        log: file that receives every command line and the commands' output.
        deadline: monotonic time at which the commands still running are stopped.
        suite: registers the processes so the watchdog can stop them too.
        cwd: working directory of the commands (not the repository root, whose packages would
            shadow the installed ones for ``python -c``).

    Returns:
        ``(return codes, stopped)``: a code is ``None`` for a command stopped at the deadline.
    """
    with log.open("a") as handle:
        processes = []
        for command in commands:
            handle.write(f"$ {shlex.join(command)}\n")
            handle.flush()
            process = subprocess.Popen(
                command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
            processes.append(process)
            with suite.lock:
                suite.children.add(process)
        try:
            while any(process.poll() is None for process in processes):
                if time.monotonic() >= deadline:
                    running = [process for process in processes if process.poll() is None]
                    stop_process_groups(running)
                    return [None if p in running else p.returncode for p in processes], True
                time.sleep(0.5)
            # Loader workers of a finished command may outlive it; they belong to its group.
            stop_process_groups(processes)
            return [process.returncode for process in processes], False
        finally:
            with suite.lock:
                suite.children.difference_update(processes)


def dali_missing() -> str | None:
    """``None`` when NVIDIA DALI imports, else why it does not."""
    try:
        importlib.import_module("nvidia.dali")
    except Exception as error:  # noqa: BLE001 - any import failure means no DALI rows
        return f"{NOT_AVAILABLE} (nvidia.dali: {type(error).__name__}: {error})"
    return None


def device_info(accelerator: str) -> dict[str, Any]:
    """The machine: accelerator, GPU name and memory, versions of the stack, CPUs.

    Args:
        accelerator: ``gpu`` or ``cpu``.

    Returns:
        A flat dict.
    """
    info: dict[str, Any] = {
        "accelerator": accelerator,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        # DataLoader workers hand batches over through /dev/shm; a small one kills them.
        "dev_shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1),
    }
    if accelerator == "gpu":
        properties = torch.cuda.get_device_properties(0)
        info.update(
            gpu=properties.name,
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
            compute_capability=f"{properties.major}.{properties.minor}",
            multiprocessors=properties.multi_processor_count,
        )
        smi = shutil.which("nvidia-smi")
        if smi:
            query = [smi, "--query-gpu=driver_version", "--format=csv,noheader"]
            completed = subprocess.run(query, capture_output=True, text=True, check=False)
            info["driver"] = completed.stdout.strip() or completed.stderr.strip()
    for name in STACK:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    info["dali"] = dali_missing() or importlib.import_module("nvidia.dali").__version__
    return info


def run_loader_part(suite: Suite, store: Path, dali_device_present: bool) -> None:
    """Twin-loader pairs/s: torch, and DALI on the plan's device where DALI imports.

    Args:
        suite: the suite.
        store: the twin store.
        dali_device_present: whether DALI's device is present (a GPU for ``dali_device: gpu``).
    """
    plan = suite.plan
    started = time.monotonic()
    loaders = {"torch": ("torch", "cpu")}
    dali = f"dali ({plan.dali_device})"
    missing = dali_missing() or (None if dali_device_present else f"{NOT_AVAILABLE} (no GPU)")
    if missing is None:
        loaders[dali] = ("dali", plan.dali_device)
    rates = loader_rates(
        store,
        loaders,
        plan.loader_threads,
        plan.loader_batch,
        plan.loader_image,
        plan.loader_epochs,
        plan.loader_repeats,
    )
    settings = (
        f"{plan.loader_pairs} pairs of 64 px video patches, batch {plan.loader_batch}, "
        f"{plan.loader_image} px crops, {plan.loader_threads} threads/workers"
    )
    for name, rate in rates.items():
        suite.add_row(
            "twin_loader", {"loader": name, "pairs_per_s": round(rate, 1), "note": settings}
        )
    if missing is not None:
        suite.add_row("twin_loader", {"loader": dali, "pairs_per_s": None, "note": missing})
    else:
        ratio = rates[dali] / rates["torch"]
        suite.add_row(
            "twin_loader",
            {"loader": "ratio DALI / torch", "pairs_per_s": round(ratio, 2), "note": ""},
        )
    suite.set_part("twin_loader", "done", time.monotonic() - started)


def run_ratio_part(suite: Suite, device: torch.device, part_deadline: float) -> None:
    """Step time of ``infoaug_<base>`` over ``<base>`` for the plan's methods.

    Args:
        suite: the suite.
        device: where the models run.
        part_deadline: monotonic time after which no further method starts.
    """
    plan = suite.plan
    started = time.monotonic()
    skipped = []
    for base in tqdm(plan.ratio_bases, desc="step ratio", unit="method"):
        if time.monotonic() >= part_deadline:
            skipped.append(base)
            suite.add_row(
                "step_ratio", {"method": base, "note": "skipped: part's time share spent"}
            )
            continue
        row: dict[str, Any] = {"method": base, "precision": plan.ratio_precision}
        try:
            times = measure(
                base,
                plan.ratio_batch,
                plan.ratio_twin_batch,
                plan.ratio_warmup,
                plan.ratio_repeats,
                device,
                plan.ratio_precision,
            )
        except Exception as error:  # noqa: BLE001 - one method's failure is a row, not the end
            row["note"] = f"failed: {type(error).__name__}: {error}"
        else:
            expected = compute_ratio(base, plan.ratio_batch, plan.ratio_twin_batch)
            row.update(
                base_ms=round(times.base_s * 1e3, 2),
                infoaug_ms=round(times.infoaug_s * 1e3, 2),
                ratio=round(times.ratio, 3),
                expected_ratio=round(expected, 3),
                note=(
                    f"batch {plan.ratio_batch} x 2 views + {plan.ratio_twin_batch} twin pairs, "
                    f"medians of {plan.ratio_repeats} alternating steps"
                ),
            )
        suite.add_row("step_ratio", row)
        _free_gpu_memory(device)
    if skipped:
        suite.guard(
            f"step ratio: {', '.join(skipped)} not started (the part's time share was spent)"
        )
    suite.set_part("step_ratio", "done", time.monotonic() - started)


def _free_gpu_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def smoke_cfg(base: str, store: Path, loader: str, plan: SuitePlan) -> DictConfig:
    """The config of one smoke fit: ``step_overhead``'s heads, twins from ``store``.

    The first-epoch freezes of DINO's last layer and SwAV's prototypes are off, so that every MI
    parameter trains in the few steps of a smoke fit.
    """
    cfg = build_cfg(f"infoaug_{base}", plan.smoke_batch, plan.smoke_batch)
    if base == "dino":
        cfg.method_kwargs.freeze_last_layer = 0
    if base == "swav":
        cfg.method_kwargs.freeze_prototypes_epochs = 0
    cfg.infoaug.update(
        twins=str(store),
        loader=loader,
        dali_device=plan.dali_device,
        num_workers=plan.smoke_workers,
        image_size=32,
    )
    return cfg


def smoke_fit(base: str, precision: str, loader: str, store: Path, plan: SuitePlan) -> dict:
    """Trains ``infoaug_<base>`` for ``plan.smoke_steps`` steps and checks what changed.

    Args:
        base: a key of ``METHOD_KWARGS``.
        precision: Lightning precision flag.
        loader: ``torch`` or ``dali``.
        store: the twin store.
        plan: the sizes.

    Returns:
        The row: losses, whether they are finite, how many trainable MI parameters did not
        change, the devices the twin batches arrived on, and the fit's wall time.
    """
    pl.seed_everything(0, workers=True)
    model = METHODS[f"infoaug_{base}"](smoke_cfg(base, store, loader, plan))
    initial = {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if name.startswith("mi_") and p.requires_grad
    }
    twin_devices: set[str] = set()
    serve = model.twin_provider.next

    def recording_next(trainer: pl.Trainer, device: torch.device) -> list[torch.Tensor]:
        batch = serve(trainer, device)
        twin_devices.update(str(part.device) for part in batch[1:])
        return batch

    model.twin_provider.next = recording_next
    generator = torch.Generator().manual_seed(0)
    size = plan.smoke_batch * plan.smoke_steps
    samples = [
        (i, [torch.randn(3, 32, 32, generator=generator) for _ in range(2)], i % 10)
        for i in range(size)
    ]
    trainer = pl.Trainer(
        accelerator=plan.accelerator,
        devices=1,
        precision=precision,
        max_steps=plan.smoke_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    started = time.monotonic()
    trainer.fit(
        model, torch.utils.data.DataLoader(samples, batch_size=plan.smoke_batch, drop_last=True)
    )
    seconds = time.monotonic() - started
    metrics = {
        key: float(trainer.callback_metrics[key]) for key in ("train_base_loss", "train_mi_loss")
    }
    unchanged = [
        name
        for name, p in model.named_parameters()
        if name in initial and torch.equal(p.detach().to(initial[name].device), initial[name])
    ]
    finite = all(math.isfinite(value) for value in metrics.values())
    # The training device, not model.device: Lightning's teardown moves the model back to the
    # CPU after a CUDA fit, which made every GPU row fail this check.
    on_device = twin_devices == {str(trainer.strategy.root_device)}
    notes = [f"unchanged: {', '.join(unchanged[:4])}"] if unchanged else []
    # 16-mixed skips every step whose scaled gradients overflow and halves the scale: a fit
    # shorter than its warm-up may change nothing, which is AMP at work, not a broken MI head.
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None and scaler.is_enabled() and scaler.get_scale() < INITIAL_GRAD_SCALE:
        skipped = round(math.log2(INITIAL_GRAD_SCALE / scaler.get_scale()))
        notes.append(f"GradScaler skipped {skipped} of {trainer.global_step} steps (overflow)")
    return {
        "method": f"infoaug_{base}",
        "precision": precision,
        "trainer_precision": str(trainer.precision),
        "loader": f"{loader} ({plan.dali_device})" if loader == "dali" else loader,
        "steps": trainer.global_step,
        "base_loss": round(metrics["train_base_loss"], 4),
        "mi_loss": round(metrics["train_mi_loss"], 4),
        "finite": finite,
        "mi_params": len(initial),
        "mi_params_unchanged": len(unchanged),
        "twin_batch_device": ", ".join(sorted(twin_devices)),
        "seconds": round(seconds, 1),
        "ok": finite and bool(initial) and not unchanged and on_device,
        "note": "; ".join(notes),
    }


def run_smoke_part(
    suite: Suite, store: Path, dali_device_present: bool, part_deadline: float
) -> None:
    """Every ``infoaug_<base>`` x precision x twin loader for a few steps.

    Args:
        suite: the suite.
        store: the twin store.
        dali_device_present: whether DALI's device is present.
        part_deadline: monotonic time after which no further fit starts.
    """
    plan = suite.plan
    started = time.monotonic()
    missing_dali = dali_missing() or (None if dali_device_present else f"{NOT_AVAILABLE} (no GPU)")
    loaders = ("torch",) if missing_dali else ("torch", "dali")
    jobs = [
        (base, precision, loader)
        for loader in loaders
        for precision in plan.smoke_precisions
        for base in (METHOD_KWARGS if loader == "torch" else plan.dali_smoke_bases)
    ]
    skipped = 0
    for base, precision, loader in tqdm(jobs, desc="smoke", unit="fit"):
        if time.monotonic() >= part_deadline:
            skipped += 1
            suite.add_row(
                "smoke",
                {
                    "method": f"infoaug_{base}",
                    "precision": precision,
                    "loader": loader,
                    "ok": None,
                    "note": "skipped: part's time share spent",
                },
            )
            continue
        try:
            row = smoke_fit(base, precision, loader, store, plan)
        except Exception as error:  # noqa: BLE001 - one fit's failure is a row, not the end
            row = {
                "method": f"infoaug_{base}",
                "precision": precision,
                "loader": loader,
                "ok": False,
                "note": f"failed: {type(error).__name__}: {error}"[:500],
            }
        suite.add_row("smoke", row)
        _free_gpu_memory(torch.device("cuda" if plan.accelerator == "gpu" else "cpu"))
    if missing_dali:
        suite.add_row(
            "smoke", {"method": "all", "loader": f"dali ({plan.dali_device})", "note": missing_dali}
        )
    if skipped:
        suite.guard(f"smoke: {skipped} fits not started (the part's time share was spent)")
    failed = sum(1 for row in suite.data["smoke"] if row.get("ok") is False)
    suite.set_part(
        "smoke", "done", time.monotonic() - started, f"{failed} failed" if failed else ""
    )


def harness_command(
    out: Path,
    bases: tuple[str, ...],
    variants: tuple[str, ...],
    seeds: range,
    study: StudyPlan,
    data_dir: Path | None,
) -> list[str]:
    """The ``infoaug-eval`` command of one study round (run by this Python).

    Args:
        out: the harness's output directory.
        bases: ``--bases``.
        variants: ``--variants``.
        seeds: ``--seeds``.
        study: the plan (twin sources and options).
        data_dir: ``--data-dir`` (``None``: the harness's default, Debian's Fashion-MNIST).

    Returns:
        The argument list.
    """
    command = [
        sys.executable,
        "-c",
        "import sys; from infoaug_plugin.evaluation.harness import main; sys.exit(main())",
        "--out",
        str(out),
        "--bases",
        *bases,
        "--variants",
        *variants,
        "--twin-source",
        *study.twin_sources,
        "--seeds",
        *map(str, seeds),
    ]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    for option, value in study.options.items():
        command += [option, value]
    return command


def read_results(harness_out: Path) -> list[CellResult]:
    """The finished runs below a harness output directory (each run's ``result.json``)."""
    return [
        CellResult(**json.loads(path.read_text())["result"])
        for path in sorted(harness_out.glob(f"runs/*/{RESULT_NAME}"))
    ]


def run_study(suite: Suite, work: Path, data_dir: Path | None, epochs: int, seeds: int) -> None:
    """The learning study in rounds of one seed, each started only if it fits the time left.

    Args:
        suite: the suite.
        work: working directory (the harness's outputs go below it).
        data_dir: Fashion-MNIST folder for the harness, or ``None``.
        epochs: pretraining epochs per run.
        seeds: rounds at most.
    """
    study = suite.plan.study
    study = replace(study, options={**study.options, "--epochs": str(epochs)})
    deadline = suite.deadline - STUDY_MARGIN_S
    main_out, reference_out = work / "study", work / "reference"
    references = study.references
    log = suite.out / STUDY_LOG
    record: dict[str, Any] = {
        "matrix": {
            "bases": study.bases,
            "variants": study.variants,
            "twin_sources": study.twin_sources,
            "epochs": epochs,
            "options": study.options,
        },
        "references": list(references),
        "rounds": [],
        "note": "",
    }
    with suite.lock:
        suite.data["study"] = record
    started = time.monotonic()
    estimate = None
    for count in range(1, seeds + 1):
        left = deadline - time.monotonic()
        if estimate is not None and left < estimate:
            with suite.lock:
                record["rounds"].append(
                    {
                        "seed": count - 1,
                        "status": f"not started: {left:.0f} s left, a round ~{estimate:.0f} s",
                    }
                )
            break
        commands = [
            harness_command(main_out, study.bases, study.variants, range(count), study, data_dir)
        ]
        if count == 1 and references:
            commands.append(
                harness_command(reference_out, references, ("base",), range(1), study, data_dir)
            )
        round_started = time.monotonic()
        codes, stopped = run_until(commands, log, deadline, suite, work)
        seconds = time.monotonic() - round_started
        new_runs = [r for r in read_results(main_out) if r.seed == count - 1]
        with suite.lock:
            record["rounds"].append(
                {
                    "seed": count - 1,
                    "commands": [shlex.join(command) for command in commands],
                    "return_codes": codes,
                    "status": "stopped by the guard" if stopped else "done",
                    "seconds": round(seconds, 1),
                    "new_runs": len(new_runs),
                }
            )
        summarise_study(suite, work)
        if stopped:
            suite.guard(f"study: seed {count - 1}'s round stopped at the deadline")
            break
        if not new_runs:
            break
        longest = max(r.pretrain_s + r.linear_s for r in new_runs)
        estimate = ROUND_MARGIN * longest + ROUND_OVERHEAD_S
    suite.set_part("study", "done", time.monotonic() - started, record["note"])


def summarise_study(suite: Suite, work: Path) -> None:
    """Reads back every finished run, adds the twin purity, and writes ``study.csv`` and the
    study's table into the summary."""
    main_out = work / "study"
    stores = {
        source: main_out / name
        for source, name in (("clips", "twins"), ("scenes", "twins-scenes"))
        if (main_out / name / "manifest.json").is_file()
    }
    purity: dict[tuple[str, str], float] = {}
    note = ""
    try:
        purity = twin_purities(stores, main_out)
    except Exception as error:  # noqa: BLE001 - the table is still worth having
        note = f"twin purity not computed: {type(error).__name__}: {error}"
    results = [
        replace(r, twin_purity=purity.get((r.twin_source, r.variant)))
        for r in read_results(main_out) + read_results(work / "reference")
    ]
    with suite.lock:
        record = suite.data["study"]
        record["runs"] = [asdict(r) for r in results]
        if results:
            summaries = summarise(results)
            record["verdict"] = learning_verdict(summaries)
            record["table"] = markdown_table(summaries)
            write_csv(results, suite.out / STUDY_CSV)
        if note:
            record["purity_note"] = note
    suite.write()


class StudyThread(threading.Thread):
    """Runs :func:`run_study` beside the main thread; an error becomes the part's status."""

    def __init__(self, suite: Suite, work: Path, data_dir: Path | None, epochs: int, seeds: int):
        super().__init__(name="study", daemon=True)
        self.arguments = (suite, work, data_dir, epochs, seeds)

    def run(self) -> None:
        suite = self.arguments[0]
        started = time.monotonic()
        try:
            run_study(*self.arguments)
        except Exception as error:  # noqa: BLE001 - the rest of the suite still reports
            suite.set_part(
                "study", "failed", time.monotonic() - started, f"{type(error).__name__}: {error}"
            )


def start_watchdog(suite: Suite) -> threading.Timer:
    """Ends the process ``HARD_STOP_GRACE_S`` after the budget, with the summary written and the
    child processes stopped, if the suite has not finished by then."""

    def hard_stop() -> None:
        suite.guard(
            f"hard stop: a part overran the {suite.budget_s:.0f} s budget by "
            f"{HARD_STOP_GRACE_S:.0f} s; parts without a status did not finish"
        )
        suite.stop_children()
        os._exit(3)

    timer = threading.Timer(suite.budget_s + HARD_STOP_GRACE_S, hard_stop)
    timer.daemon = True
    timer.start()
    return timer


def run_part(suite: Suite, name: str, part: Callable[[], None]) -> None:
    """Runs one part; an exception becomes its ``failed`` status instead of ending the suite."""
    started = time.monotonic()
    try:
        part()
    except Exception as error:  # noqa: BLE001 - the rest of the suite still reports
        suite.set_part(
            name, "failed", time.monotonic() - started, f"{type(error).__name__}: {error}"
        )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (missing values as ``-``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["-" if row.get(column) is None else str(row[column]) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(data: dict[str, Any]) -> str:
    """``summary.md`` from the summary dict."""
    suite, device, study = data["suite"], data["device"], data["study"]
    parts = "\n".join(
        f"- {name}: {part['status']} in {part['seconds']} s"
        + (f" ({part['note']})" if part["note"] else "")
        for name, part in suite["parts"].items()
    )
    guard = "; ".join(suite["guard"]) or "not reached"
    sections = [
        "# InfoAug GPU suite\n",
        (
            f"Mode `{suite['mode']}`, budget {suite['budget_s']:.0f} s, "
            f"{suite.get('elapsed_s', 0)} s elapsed, started {suite['started']}. Guard: {guard}."
            f"\n\nCommand: `{suite['command']}`\n\n{parts}\n"
        ),
        "## Device\n",
        _table([{"key": key, "value": value} for key, value in device.items()], ["key", "value"]),
        "## Twin loader (pairs/s)\n",
        _table(data["twin_loader"], ["loader", "pairs_per_s", "note"]),
        "## Step time, infoaug_<base> / <base>\n",
        "Expected: images through a backbone per step (InfoAug / base).\n",
        _table(
            data["step_ratio"],
            ["method", "precision", "base_ms", "infoaug_ms", "ratio", "expected_ratio", "note"],
        ),
        "## Smoke: a few training steps per method, precision and twin loader\n",
        (
            "ok: both losses finite, every trainable MI parameter changed, twin batches on the "
            "model's device.\n"
        ),
        _table(
            data["smoke"],
            [
                "method",
                "precision",
                "trainer_precision",
                "loader",
                "steps",
                "base_loss",
                "mi_loss",
                "mi_params",
                "mi_params_unchanged",
                "twin_batch_device",
                "seconds",
                "ok",
                "note",
            ],
        ),
        "## Learning study (infoaug-eval)\n",
    ]
    if study:
        matrix = study["matrix"]
        sections.append(
            f"{', '.join(matrix['bases'])} x {', '.join(matrix['variants'])} x twin sources "
            f"{', '.join(matrix['twin_sources'])}, {matrix['epochs']} epochs; references: "
            f"{', '.join(study['references']) or 'none'}. {study.get('note', '')}\n"
        )
        if study.get("verdict"):
            sections.append(study["verdict"] + "\n")
        if study.get("table"):
            sections.append(study["table"])
        if study.get("purity_note"):
            sections.append(study["purity_note"] + "\n")
        rounds = [
            {**r, "return_codes": r.get("return_codes"), "commands": None} for r in study["rounds"]
        ]
        sections.append(_table(rounds, ["seed", "status", "seconds", "new_runs", "return_codes"]))
        commands = [c for r in study["rounds"] for c in r.get("commands", [])]
        if commands:
            sections.append("Commands:\n\n```\n" + "\n".join(commands) + "\n```\n")
    return "\n".join(sections)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The suite's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="summary directory")
    parser.add_argument("--dry-run", action="store_true", help="same parts on the CPU, tiny sizes")
    parser.add_argument(
        "--budget-s", type=float, help="wall-clock budget in seconds (default: 480; dry run 140)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="Fashion-MNIST IDX files (default: Debian's copy)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="working directory, empty or absent (default: a temporary one, removed at the end)",
    )
    parser.add_argument("--study-epochs", type=int, help="pretraining epochs per study run")
    parser.add_argument("--study-seeds", type=int, help="study rounds (seeds) at most")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the suite; returns 0 (the summary says what failed)."""
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device; use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        print(f"gpu_suite: --work {args.work} is not empty", file=sys.stderr)
        return 2
    plan = dry_run_plan() if args.dry_run else gpu_plan(os.cpu_count() or 1)
    study_epochs = args.study_epochs or int(plan.study.options["--epochs"])
    study_seeds = args.study_seeds or plan.study.max_seeds
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu-suite-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir.resolve() if args.data_dir else None
    suite = Suite(
        args.out.resolve(),
        plan,
        args.budget_s or plan.budget_s,
        "dry-run" if args.dry_run else "gpu",
    )
    watchdog = start_watchdog(suite)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    device = torch.device("cuda" if plan.accelerator == "gpu" else "cpu")
    dali_device_present = plan.accelerator == "gpu" or plan.dali_device == "cpu"

    run_part(suite, "device", lambda: _device_part(suite))
    store = work / "twin-store"
    run_part(suite, "twin_store", lambda: _store_part(suite, store))
    if store.is_dir():
        run_part(suite, "twin_loader", lambda: run_loader_part(suite, store, dali_device_present))
    run_part(
        suite,
        "step_ratio",
        lambda: run_ratio_part(
            suite, device, suite.part_deadline(sum(plan.shares[p] for p in ("loader", "ratio")))
        ),
    )
    study = StudyThread(suite, work, data_dir, study_epochs, study_seeds)
    study.start()
    if store.is_dir():
        smoke_deadline = suite.part_deadline(sum(plan.shares.values()))
        run_part(
            suite,
            "smoke",
            lambda: run_smoke_part(suite, store, dali_device_present, smoke_deadline),
        )
    study.join(timeout=max(0.0, suite.remaining() + HARD_STOP_GRACE_S))
    watchdog.cancel()
    # infoaug-eval runs in its own sessions, which would outlive this process.
    suite.stop_children()
    suite.write()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"wrote {suite.out / SUMMARY_MD} and {suite.out / SUMMARY_JSON} ({suite.elapsed():.0f} s)"
    )
    return 0


def _device_part(suite: Suite) -> None:
    started = time.monotonic()
    with suite.lock:
        suite.data["device"] = device_info(suite.plan.accelerator)
    suite.set_part("device", "done", time.monotonic() - started)


def _store_part(suite: Suite, store: Path) -> None:
    started = time.monotonic()
    write_store(store, suite.plan.loader_pairs)
    suite.set_part(
        "twin_store", "done", time.monotonic() - started, f"{suite.plan.loader_pairs} pairs"
    )


if __name__ == "__main__":
    raise SystemExit(main())
