"""One evaluation run (a cell): pretraining, then linear evaluation of its checkpoint, resumable.

Pretraining runs ``infoaug-pretrain`` (InfoAug variants) or the same code path without twins
(the base method); linear evaluation runs the probe of :mod:`.probe` or ``infoaug-linear``, on one
linear YAML (see :mod:`.launch`). The calibration variants (``untrained``, ``pixels``) have no
pretraining: only the probe runs.

Each cell has its own directory ``OUT/runs/<cell key>/`` holding the two generated
YAMLs, the commands (``commands.sh``), the two logs, the checkpoints and, once both steps have
finished, ``result.json``. A cell with ``result.json`` is finished and is skipped on re-runs; a
cell without it, or whose ``result.json`` was made under another configuration (its pretraining
config, budget and hardware are recorded there), is run again from scratch.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from infoaug_plugin.evaluation.configs import (
    PROBE_ONLY_FEATURES,
    TWIN_VARIANTS,
    Budget,
    Hardware,
    linear_config,
    pretrain_config,
)
from infoaug_plugin.evaluation.datasets import ExportedData
from infoaug_plugin.evaluation.probe import PROBE_RESULT

RESULT_NAME = "result.json"
_LOG_TAIL_LINES = 25


class RunError(RuntimeError):
    """A step of a run failed; the message names the log file and quotes its end."""


class NotFinished(RunError):
    """The cell has no finished result and was asked not to run (``--report-only``)."""


@dataclass(frozen=True)
class Cell:
    """One cell of a comparison: a base method, a variant, a seed and, for the InfoAug variants,
    the twin source (the name of the store the harness built or was given)."""

    base: str
    variant: str
    seed: int
    twin_source: str | None = None

    def __post_init__(self) -> None:
        if (self.twin_source is None) == (self.variant in TWIN_VARIANTS):
            raise ValueError(
                f"cell {self.base}/{self.variant}: a twin source is needed by exactly the InfoAug "
                f"variants ({', '.join(TWIN_VARIANTS)}), got {self.twin_source!r}"
            )

    @property
    def key(self) -> str:
        """Directory name of the cell, ``<base>-<variant>[-<twin source>]-seed<S>``."""
        source = f"-{self.twin_source}" if self.twin_source else ""
        return f"{self.base}-{self.variant}{source}-seed{self.seed}"


@dataclass(frozen=True)
class CellResult:
    """What a finished cell measured.

    Attributes:
        base: base method.
        variant: one of ``configs.VARIANTS``.
        seed: seed of pretraining and linear evaluation.
        top1: linear top-1 accuracy on the test split, in percent (probe or solo-learn's linear
            evaluation, as the budget says).
        pretrain_s: wall time of pretraining (the whole command), in seconds (0 when the
            variant has none).
        linear_s: wall time of linear evaluation (the whole command), in seconds.
        twin_source: the twin store's source (InfoAug variants), else ``None``.
        twin_purity: the share of the run's twins that show the same class as their patch, where
            the source has ground truth (set by the harness, not recorded per run), else ``None``.
    """

    base: str
    variant: str
    seed: int
    top1: float
    pretrain_s: float
    linear_s: float
    twin_source: str | None = None
    twin_purity: float | None = None


def _write_yaml(path: Path, cfg: dict[str, Any]) -> None:
    """Writes a config dict as YAML."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def command_line(step: str, config: Path) -> list[str]:
    """The command that runs ``step`` on ``config`` through the export launcher.

    Args:
        step: ``pretrain`` (``infoaug-pretrain``, InfoAug and plain base methods), ``linear``
            (``infoaug-linear``) or ``probe``.
        config: the YAML file.

    Returns:
        The argument list.
    """
    return [
        sys.executable,
        "-m",
        "infoaug_plugin.evaluation.launch",
        step,
        "--config-path",
        str(config.parent.resolve()),
        "--config-name",
        config.stem,
    ]


def _run_step(
    step: str, config: Path, cwd: Path, threads: int, report: Callable[[str], None]
) -> float:
    """Runs one step with its output in ``cwd/<step>.log``, reporting its elapsed time each second.

    Args:
        step: see :func:`command_line`.
        config: the step's YAML.
        cwd: working directory (Lightning writes its logs below it).
        threads: ``OMP_NUM_THREADS`` of the step's process; 0 leaves the environment as it is.
        report: called with ``"<step> <seconds>s"`` while the step runs.

    Returns:
        The step's wall time in seconds.
    """
    log = cwd / f"{step}.log"
    started = time.perf_counter()
    with log.open("w") as handle:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
        process = subprocess.Popen(
            command_line(step, config), cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        while True:
            try:
                returncode = process.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                report(f"{step} {time.perf_counter() - started:.0f}s")
    elapsed = time.perf_counter() - started
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        raise RunError(f"{step} failed (exit {returncode}); see {log}:\n{tail}")
    return elapsed


def _newest_checkpoint(folder: Path) -> Path:
    """The newest ``*.ckpt`` below ``folder``."""
    checkpoints = sorted(folder.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if not checkpoints:
        raise RunError(f"{folder}: no checkpoint was written")
    return checkpoints[-1]


def read_linear_top1(folder: Path) -> float:
    """The last ``val_acc1`` that solo-learn's linear model logged below ``folder``.

    Args:
        folder: the linear step's working directory (Lightning's CSV logs are below it).

    Returns:
        Top-1 accuracy in percent.
    """
    values = []
    for metrics in sorted(folder.rglob("metrics.csv"), key=lambda path: path.stat().st_mtime):
        with metrics.open(newline="") as handle:
            values += [
                float(row["val_acc1"]) for row in csv.DictReader(handle) if row.get("val_acc1")
            ]
    if not values:
        raise RunError(f"{folder}: no val_acc1 in any metrics.csv of the linear evaluation")
    return values[-1]


def run_cell(
    cell: Cell,
    data: ExportedData,
    twins: Path | None,
    budget: Budget,
    hardware: Hardware,
    out_dir: Path,
    report: Callable[[str], None] = lambda text: None,
    run_missing: bool = True,
) -> tuple[CellResult, bool]:
    """Runs (or reads back) one cell: pretraining, then linear evaluation of its checkpoint.

    Args:
        cell: what to run.
        data: the exported data set.
        twins: the twin store of the cell's twin source (InfoAug variants), else ``None``.
        budget: the shared budget.
        hardware: where it runs.
        out_dir: output directory; the cell lives in ``out_dir/runs/<cell.key>``.
        report: progress callback, called each second with the running step and its time.
        run_missing: run the cell when it has no finished result (else raise ``NotFinished``).

    Returns:
        ``(result, ran)``: ``ran`` is false when the cell had finished before.

    Raises:
        RunError: a step failed or wrote no result.
        NotFinished: no finished result and ``run_missing`` is false.
    """
    run_dir = out_dir / "runs" / cell.key
    result_file = run_dir / RESULT_NAME
    pretrained = cell.variant not in PROBE_ONLY_FEATURES
    pretrain_cfg = (
        pretrain_config(cell.base, cell.variant, data, twins, budget, hardware, cell.seed, run_dir)
        if pretrained
        else None
    )
    # Thread counts change speed, not what is computed: a run may resume with other ones.
    hardware_keys = {k: v for k, v in asdict(hardware).items() if k != "threads"}
    fingerprint = json.loads(
        json.dumps({"pretrain": pretrain_cfg, "budget": asdict(budget), "hardware": hardware_keys})
    )
    if result_file.is_file():
        recorded = json.loads(result_file.read_text())
        if recorded.get("fingerprint") == fingerprint:
            return CellResult(**recorded["result"]), False
    if not run_missing:
        raise NotFinished(f"{run_dir}: no finished result under this configuration")
    shutil.rmtree(run_dir, ignore_errors=True)
    linear_dir = run_dir / "linear"
    linear_dir.mkdir(parents=True)
    pretrain_yaml, linear_yaml = run_dir / "pretrain.yaml", linear_dir / "linear.yaml"
    linear_step = "probe" if budget.linear_eval == "probe" else "linear"
    steps = [(linear_step, linear_yaml, linear_dir)]
    if pretrained:
        _write_yaml(pretrain_yaml, pretrain_cfg)
        steps.insert(0, ("pretrain", pretrain_yaml, run_dir))
    (run_dir / "commands.sh").write_text(
        "".join(
            f"(cd {shlex.quote(str(cwd.resolve()))} && {shlex.join(command_line(step, cfg))})\n"
            for step, cfg, cwd in steps
        )
    )
    pretrain_s, checkpoint = 0.0, None
    if pretrained:
        pretrain_s = _run_step("pretrain", pretrain_yaml, run_dir, hardware.threads, report)
        checkpoint = _newest_checkpoint(run_dir / "checkpoints")
    _write_yaml(
        linear_yaml,
        linear_config(
            cell.base, cell.variant, data, checkpoint, budget, hardware, cell.seed, run_dir
        ),
    )
    linear_s = _run_step(linear_step, linear_yaml, linear_dir, hardware.threads, report)
    if linear_step == "probe":
        top1 = json.loads((linear_dir / PROBE_RESULT).read_text())["top1"]
    else:
        top1 = read_linear_top1(linear_dir)
    result = CellResult(
        cell.base, cell.variant, cell.seed, top1, pretrain_s, linear_s, cell.twin_source
    )
    tmp = result_file.with_name(f".{RESULT_NAME}.tmp-{os.getpid()}")
    tmp.write_text(
        json.dumps({"result": asdict(result), "fingerprint": fingerprint}, indent=2) + "\n"
    )
    os.replace(tmp, result_file)
    return result, True
