"""Resuming ``infoaug-pretrain`` runs: a run killed after a checkpoint and relaunched with the same
command ends with the weights of a run never stopped; runs with another ``infoaug:`` node or
another twin store are never resumed; the twin loader continues where it stood.

The end-to-end runs use the shipped ``solo_configs/pretrain/custom`` YAMLs (``auto_resume`` on) on
a tiny image folder, with solo-learn's CPU overrides and ``num_workers: 0`` everywhere, so that
every random draw comes from the global random states that the checkpoint carries.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from infoaug_plugin.data import PacedTwinLoader, build_twin_loader
from infoaug_plugin.resume import InfoAugAutoResumer, store_manifest_sha256

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs" / "pretrain" / "custom"
PRETRAIN = Path(sys.executable).parent / "infoaug-pretrain"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
EPOCHS = 3
# Tiny heads; SwAV uses its queue from the first epoch so that the resumed queue matters.
METHOD_KWARGS = {
    "infoaug_mocov2plus": ["method_kwargs.queue_size=32"],
    "swav": [
        "method_kwargs.queue_size=32",
        "method_kwargs.num_prototypes=8",
        "method_kwargs.epoch_queue_starts=0",
        "method_kwargs.freeze_prototypes_epochs=0",
    ],
    "infoaug_swav": [
        "method_kwargs.queue_size=32",
        "method_kwargs.num_prototypes=8",
        "method_kwargs.epoch_queue_starts=0",
        "method_kwargs.freeze_prototypes_epochs=0",
    ],
}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/`` and ``val/`` with 5 classes of 6 random 32x32 PNG images each."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(5):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(6):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    folder / f"{index}.png"
                )
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, make_twin_store) -> Path:
    return make_twin_store(tmp_path_factory.mktemp("twins") / "store", n_pairs=20, size=32)


def _command(method: str, image_folder: Path, store: Path) -> list[str]:
    """One tiny CPU run: 7 main steps and 5 twin batches per epoch, so twin epochs end mid-epoch."""
    base = method.removeprefix("infoaug_")
    args = [
        str(PRETRAIN),
        "--config-path",
        str(CONFIGS),
        "--config-name",
        f"infoaug_{base}.yaml",
        f"method={method}",
        f"data.train_path={image_folder / 'train'}",
        f"data.val_path={image_folder / 'val'}",
        f"max_epochs={EPOCHS}",
        "augmentations.0.crop_size=32",
        "accelerator=cpu",
        'devices="1"',
        "strategy=auto",
        "precision=32",
        "sync_batchnorm=False",
        "data.num_workers=0",
        "optimizer.batch_size=4",
        "++limit_val_batches=1",
        "++log_every_n_steps=1",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
        *METHOD_KWARGS[method],
    ]
    if method.startswith("infoaug_"):
        return args + [
            f"infoaug.twins={store}",
            "infoaug.batch_size=4",
            "infoaug.num_workers=0",
            "infoaug.image_size=32",
            "infoaug.loader=torch",
        ]
    return args + ["~infoaug"]


def _complete_checkpoints(workdir: Path) -> list[Path]:
    return [path for path in workdir.glob("trained_models/*/*/*.ckpt") if zipfile.is_zipfile(path)]


def _run_killed_after_first_checkpoint(command: list[str], workdir: Path) -> Path:
    """Starts ``command``, SIGKILLs it once a checkpoint is complete, returns that checkpoint."""
    process = subprocess.Popen(
        command, cwd=workdir, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not (saved := _complete_checkpoints(workdir)) and time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-3000:])
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    (checkpoint,) = saved
    return checkpoint


def _run(command: list[str], workdir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        command,
        check=False,
        cwd=workdir,
        env=ONE_THREAD,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _final(workdir: Path) -> dict:
    (checkpoint,) = workdir.glob(f"trained_models/*/*/*-ep={EPOCHS - 1}.ckpt")
    return torch.load(checkpoint, map_location="cpu")


def _logged_steps(workdir: Path) -> list[list[int]]:
    """Per logger version, the steps at which the training loss was logged."""
    runs = []
    for metrics in sorted(workdir.glob("lightning_logs/version_*/metrics.csv")):
        with metrics.open() as handle:
            runs.append(
                [int(row["step"]) for row in csv.DictReader(handle) if row.get("train_acc1_step")]
            )
    return runs


@pytest.mark.parametrize("method", ["infoaug_mocov2plus", "swav", "infoaug_swav"])
def test_a_killed_run_relaunched_ends_as_if_never_stopped(
    method: str, tmp_path: Path, image_folder: Path, store: Path
) -> None:
    command = _command(method, image_folder, store)
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    uninterrupted.mkdir()
    interrupted.mkdir()
    _run(command, uninterrupted)

    checkpoint = _run_killed_after_first_checkpoint(command, interrupted)
    saved = torch.load(checkpoint, map_location="cpu")
    relaunched = _run(command, interrupted)

    assert (
        f"Resuming from previous checkpoint that matches specifications: '{checkpoint.relative_to(interrupted)}'"
        in relaunched.stdout
    )
    # The relaunch logs from the step after the checkpoint on, not from step 0.
    first_run, second_run = _logged_steps(interrupted)
    assert second_run[0] == saved["global_step"] == first_run[-1] + 1
    expected, resumed = _final(uninterrupted), _final(interrupted)
    assert resumed["global_step"] == expected["global_step"] == EPOCHS * 7
    assert resumed["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=0, msg=name)
    state = resumed["callbacks"]["ResumeState"]
    assert _equal(state, expected["callbacks"]["ResumeState"])
    if method.startswith("infoaug_"):
        # 3 epochs x 7 steps of a 5-batch twin epoch: twin epoch 4, its batch 1 served next.
        assert state["twin_loader"] == {"twin_epoch": 4, "position": 1}
    if "swav" in method:
        assert resumed["state_dict"]["queue"].abs().sum() > 0


def _equal(left: object, right: object) -> bool:
    """Equality of nested dicts, lists and tensors."""
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, torch.Tensor):
        return torch.equal(left, right)
    return left == right


def _args(store: Path, **infoaug: object) -> dict:
    """The resumer's view of a run's config: solo-learn's keys and a completed infoaug node."""
    return {
        "name": "run",
        "method": "infoaug_simclr",
        "backbone": {"name": "resnet18"},
        "data": {"dataset": "custom"},
        "max_epochs": 10,
        "optimizer": {"name": "lars", "batch_size": 4, "lr": 0.4, "weight_decay": 1e-5},
        "wandb": {"project": "p", "entity": None},
        "infoaug": {
            "twins": str(store),
            "weight": 1.0,
            "store_manifest_sha256": store_manifest_sha256(store),
            **infoaug,
        },
    }


def _saved_run(folder: Path, args: dict, epochs: int = 1) -> list[Path]:
    """A run folder as solo-learn's Checkpointer writes it: args.json and checkpoints."""
    folder.mkdir(parents=True)
    (folder / "args.json").write_text(json.dumps({**args, "wandb_run_id": folder.name}))
    checkpoints = []
    for epoch in range(epochs):
        checkpoint = folder / f"run-ep={epoch}.ckpt"
        torch.save({"epoch": epoch}, checkpoint)
        os.utime(checkpoint, (time.time() + epoch, time.time() + epoch))
        checkpoints.append(checkpoint)
    return checkpoints


def test_the_resumer_finds_the_newest_complete_checkpoint_of_the_matching_run(
    tmp_path: Path, store: Path
) -> None:
    checkpoints = _saved_run(tmp_path / "runs" / "a", _args(store), epochs=3)
    # A kill while the last checkpoint was written leaves it cut short.
    checkpoints[-1].write_bytes(checkpoints[-1].read_bytes()[:100])
    found = InfoAugAutoResumer(tmp_path / "runs").find_checkpoint(OmegaConf.create(_args(store)))
    assert found == (checkpoints[1], "a")


@pytest.mark.parametrize(
    "change",
    [
        {"weight": 0.5},
        {"selection": "random"},
        {"bn_stats": "shared"},
        {"augmentations": {"grayscale": {"prob": 0.0}}},
    ],
)
def test_a_run_with_another_infoaug_node_is_never_resumed(
    tmp_path: Path, store: Path, change: dict
) -> None:
    _saved_run(tmp_path / "runs" / "a", _args(store))
    resumer = InfoAugAutoResumer(tmp_path / "runs")
    assert resumer.find_checkpoint(OmegaConf.create(_args(store, **change))) == (None, None)


def test_a_run_on_a_rebuilt_store_is_never_resumed(tmp_path: Path, store: Path) -> None:
    rebuilt = shutil.copytree(store, tmp_path / "store")
    _saved_run(tmp_path / "runs" / "a", _args(rebuilt))
    manifest = json.loads((rebuilt / "manifest.json").read_text())
    manifest["builder"]["version"] = "rebuilt"
    (rebuilt / "manifest.json").write_text(json.dumps(manifest))
    resumer = InfoAugAutoResumer(tmp_path / "runs")
    assert resumer.find_checkpoint(OmegaConf.create(_args(rebuilt))) == (None, None)


def test_the_paced_twin_loader_continues_from_its_state(store: Path) -> None:
    def paced() -> PacedTwinLoader:
        cfg = {"twins": str(store), "batch_size": 4, "num_workers": 0, "image_size": 16}
        return PacedTwinLoader(build_twin_loader(OmegaConf.create(cfg), seed=3), num_batches=3)

    def pair_ids(loader: PacedTwinLoader, passes: int) -> list[list[int]]:
        return [batch[0].tolist() for _ in range(passes) for batch in loader]

    original = paced()
    served = pair_ids(original, 4)  # 12 batches: twin epochs 0 and 1 (5 each), 2 of epoch 2
    assert original.state_dict() == {"twin_epoch": 2, "position": 2}
    resumed = paced()
    resumed.load_state_dict(original.state_dict())
    assert pair_ids(resumed, 2) == pair_ids(original, 2)
    assert served[:5] != served[5:10]  # each twin epoch is a new permutation
