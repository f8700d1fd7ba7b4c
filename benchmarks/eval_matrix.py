"""The committed CPU study: SimCLR x {untrained, pixels, base, InfoAug MI twins, InfoAug random
twins} x twin sources {clips, scenes} x 3 seeds, plus InfoAug MI twins with ``bn_stats: shared``
on scenes.

It runs ``infoaug-eval`` on Fashion-MNIST with the CPU budget below, then copies ``results.md``,
``results.csv`` and ``results.png`` into ``results/`` with the exact command. Runs are resumable:
run it again after an interruption and finished runs are skipped. Extra arguments go to
``infoaug-eval`` and override the budget, e.g. the GPU options for CIFAR scale (see
``infoaug_plugin.evaluation.harness``).

Usage, from the repository root::

    python benchmarks/eval_matrix.py [--out runs/eval-matrix] [infoaug-eval options]

The budget: 4096 training images seen once in 128 steps of 32 (each InfoAug step adds 16 twin
pairs), a logistic-regression probe trained on the same 4096 images and tested on 2000. It was
sized to fit the 24 cells into about two hours of 2 CPU cores (two cells at a time on one thread
each); results/README.md says how it compares with the budgets measured before it.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from infoaug_plugin.evaluation.harness import main as infoaug_eval

REPO = Path(__file__).resolve().parents[1]
STUDY = [
    "--dataset", "fashion-mnist",
    "--bases", "simclr",
    "--variants", "untrained", "pixels", "base", "mi", "random", "mi_shared",
    "--twin-source", "clips", "scenes",
    "--variant-sources", "mi_shared=scenes",
    "--seeds", "0", "1", "2",
    "--train-size", "4096", "--test-size", "2000",
    "--epochs", "1", "--batch-size", "32", "--twin-batch-size", "16",
    "--linear-eval", "probe", "--linear-batch-size", "200",
    "--jobs", "2", "--threads", "1",
]  # fmt: skip


def main(argv: list[str]) -> int:
    """Runs the study and publishes its results into ``results/``.

    Args:
        argv: extra ``infoaug-eval`` options (``--out`` defaults to ``runs/eval-matrix``).

    Returns:
        ``infoaug-eval``'s exit status.
    """
    command = shlex.join(["python", "benchmarks/eval_matrix.py", *argv])
    if "--out" not in argv:
        argv = ["--out", "runs/eval-matrix", *argv]
    out = Path(argv[argv.index("--out") + 1])
    status = infoaug_eval([*STUDY, *argv])
    if (out / "results.md").is_file():
        published = REPO / "results"
        published.mkdir(exist_ok=True)
        for name in ("results.md", "results.csv", "results.png"):
            shutil.copyfile(out / name, published / f"eval_matrix_{name}")
        (published / "eval_matrix_command.txt").write_text(f"{command}\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
