"""``benchmarks/gpu_suite.py``: its dry run end to end (the GPU run's parts, on the CPU) and the
guard that stops the study's processes."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from infoaug_plugin.evaluation.datasets import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
BASES = ("simclr", "byol", "mocov2plus", "mocov3", "swav", "vicreg", "barlow_twins", "dino")


@pytest.fixture
def gpu_suite(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The suite's module, imported as the script imports it (its siblings on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu_suite")


def _dali_imports() -> bool:
    try:
        importlib.import_module("nvidia.dali")
    except ImportError:
        return False
    return True


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for a reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_run_until_stops_the_whole_process_group_at_the_deadline(
    gpu_suite: ModuleType, tmp_path: Path
) -> None:
    # A command that starts a grandchild, as infoaug-eval starts its runs, then both sleep.
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "open('child.pid', 'w').write(str(child.pid)); time.sleep(60)"
    )
    suite = gpu_suite.Suite(tmp_path, gpu_suite.dry_run_plan(), 60.0, "dry-run")
    started = time.monotonic()
    codes, stopped = gpu_suite.run_until(
        [[sys.executable, "-c", script]], tmp_path / "log", started + 3.0, suite, tmp_path
    )
    assert (codes, stopped) == ([None], True)
    assert time.monotonic() - started < 3.0 + gpu_suite.KILL_GRACE_S + 2.0
    grandchild = int((tmp_path / "child.pid").read_text())
    ends = time.monotonic() + 5.0
    while not _gone(grandchild) and time.monotonic() < ends:
        time.sleep(0.1)
    assert _gone(grandchild)
    assert not suite.children
    assert (tmp_path / "log").read_text().startswith(f"$ {sys.executable} -c ")


@pytest.mark.slow
@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_FASHION_MNIST})",
)
def test_dry_run_fills_every_part_of_the_summary_within_three_minutes(tmp_path: Path) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--dry-run", "--out", "out"]
        + ["--work", "work"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    wall_s = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert wall_s < 180, f"the dry run took {wall_s:.0f} s"
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())

    parts = summary["suite"]["parts"]
    assert {name: part["status"] for name, part in parts.items()} == {
        name: "done"
        for name in ("device", "twin_store", "twin_loader", "step_ratio", "smoke", "study")
    }
    assert summary["device"]["accelerator"] == "cpu"
    assert summary["device"]["torch"]

    loaders = {row["loader"]: row for row in summary["twin_loader"]}
    assert loaders["torch"]["pairs_per_s"] > 0
    if _dali_imports():
        assert loaders["dali (cpu)"]["pairs_per_s"] > 0
        assert loaders["ratio DALI / torch"]["pairs_per_s"] > 0
    else:
        assert loaders["dali (cpu)"]["note"].startswith("not available on this machine")

    ratios = {row["method"]: row for row in summary["step_ratio"]}
    assert set(ratios) == {"simclr", "byol"}
    assert all(row["base_ms"] > 0 and row["ratio"] > 0 for row in ratios.values())
    assert all(row["expected_ratio"] == 2.0 for row in ratios.values())

    fits = [row for row in summary["smoke"] if row["method"] != "all"]
    torch_fits = {row["method"] for row in fits if row["loader"] == "torch"}
    assert torch_fits == {f"infoaug_{base}" for base in BASES}
    dali_fits = {row["method"] for row in fits if row["loader"] == "dali (cpu)"}
    assert dali_fits == ({"infoaug_simclr", "infoaug_byol"} if _dali_imports() else set())
    for row in fits:
        assert row["ok"], row
        assert row["finite"] and row["mi_params"] > 0 and row["mi_params_unchanged"] == 0
        assert row["twin_batch_device"] == "cpu"

    study = summary["study"]
    first = study["rounds"][0]
    assert first["seed"] == 0 and "--train-size 128" in first["commands"][0]
    assert first["status"] in ("done", "stopped by the guard")
    runs = study["runs"]
    assert runs and all(0.0 <= run["top1"] <= 100.0 for run in runs)
    # The matrix's cells, and solo-learn's nnclr as the reference row (variant base).
    assert {(run["base"], run["variant"]) for run in runs} <= {
        ("simclr", "untrained"),
        ("simclr", "mi"),
        ("nnclr", "base"),
    }
    with (out / "study.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["variant"], row["seed"]) for row in rows] == [
        (run["variant"], str(run["seed"])) for run in runs
    ]
    assert "twin_purity" in rows[0]

    markdown = (out / "summary.md").read_text()
    for heading in ("## Device", "## Twin loader", "## Step time", "## Smoke", "## Learning study"):
        assert heading in markdown
    assert (out / "study.log").read_text().startswith("$ ")


def test_vicreg_smoke_fit_stays_finite_for_six_steps(gpu_suite: ModuleType, tmp_path: Path) -> None:
    # The first GPU run's "bf16" infoaug_vicreg NaN, reproduced on the CPU: with the old plain
    # SGD at lr 0.1 six steps give NaN in fp32 too (and bf16 on a CPU is four times slower).
    plan = dataclasses.replace(gpu_suite.dry_run_plan(), smoke_steps=6, smoke_batch=16)
    store = tmp_path / "store"
    gpu_suite.write_store(store, 64)
    row = gpu_suite.smoke_fit("vicreg", "32", "torch", store, plan)
    assert row["steps"] == 6
    assert row["ok"], row
