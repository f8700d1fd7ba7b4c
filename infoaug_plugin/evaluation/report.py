"""Results of a comparison: the CSV (one row per run), the Markdown table and the PNG figures."""

from __future__ import annotations

import csv
import textwrap
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from infoaug_plugin.evaluation.configs import VARIANT_LABELS, VARIANTS, method_name  # noqa: E402
from infoaug_plugin.evaluation.runs import CellResult  # noqa: E402
from twin_builder.store_format import PAIRS_NAME, read_pairs_csv  # noqa: E402

_COLOURS = {"base": "#7f7f7f", "mi": "#1f77b4", "random": "#ff7f0e"}


@dataclass(frozen=True)
class Summary:
    """One (base, variant) over its seeds.

    Attributes:
        base: base method.
        variant: ``base``, ``mi`` or ``random``.
        seeds: the seeds that finished.
        top1: their linear top-1 accuracies (percent), in seed order.
        mean: mean top-1.
        std: sample standard deviation of top-1 (0 for one seed).
        minutes: mean wall time of a run (pretraining + linear evaluation), in minutes.
    """

    base: str
    variant: str
    seeds: tuple[int, ...]
    top1: tuple[float, ...]
    mean: float
    std: float
    minutes: float

    @property
    def method(self) -> str:
        """The solo-learn method name of the variant."""
        return method_name(self.base, self.variant)


def write_csv(results: Sequence[CellResult], path: Path) -> None:
    """Writes one row per run, columns as :class:`CellResult` plus ``method``.

    Args:
        results: finished runs.
        path: destination CSV.
    """
    columns = ["base", "variant", "method", "seed"] + [
        f.name for f in fields(CellResult) if f.name not in ("base", "variant", "seed")
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result in results:
            writer.writerow({**asdict(result), "method": method_name(result.base, result.variant)})


def summarise(results: Sequence[CellResult]) -> list[Summary]:
    """Groups runs by (base, variant), bases in first-seen order and variants in ``VARIANTS`` order.

    Args:
        results: finished runs.

    Returns:
        One :class:`Summary` per (base, variant) that has at least one run.
    """
    bases = list(dict.fromkeys(result.base for result in results))
    summaries = []
    for base in bases:
        for variant in VARIANTS:
            runs = sorted(
                (r for r in results if r.base == base and r.variant == variant),
                key=lambda r: r.seed,
            )
            if not runs:
                continue
            top1 = np.array([r.top1 for r in runs])
            summaries.append(
                Summary(
                    base=base,
                    variant=variant,
                    seeds=tuple(r.seed for r in runs),
                    top1=tuple(float(v) for v in top1),
                    mean=float(top1.mean()),
                    std=float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
                    minutes=float(np.mean([r.pretrain_s + r.linear_s for r in runs]) / 60),
                )
            )
    return summaries


def markdown_table(summaries: Sequence[Summary]) -> str:
    """A Markdown table: method, variant, mean ± std of linear top-1, the per-seed values, time.

    Args:
        summaries: from :func:`summarise`.

    Returns:
        The table, ending with a newline.
    """
    lines = [
        "| method | variant | linear top-1 (%) mean ± std | per seed | seeds | min / run |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        per_seed = ", ".join(f"{v:.2f}" for v in s.top1)
        lines.append(
            f"| {s.method} | {VARIANT_LABELS[s.variant]} | {s.mean:.2f} ± {s.std:.2f} | "
            f"{per_seed} | {len(s.seeds)} | {s.minutes:.1f} |"
        )
    return "\n".join(lines) + "\n"


def demo_table(results: Sequence[CellResult]) -> str:
    """The demo's table: method, linear top-1 and time (pretraining + linear evaluation).

    Args:
        results: one run per method.

    Returns:
        A Markdown table, ending with a newline.
    """
    lines = [
        "| method | linear top-1 (%) | time (min) | pretrain (min) | linear eval (min) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {method_name(r.base, r.variant)} | {r.top1:.2f} | {(r.pretrain_s + r.linear_s) / 60:.1f} | "
            f"{r.pretrain_s / 60:.1f} | {r.linear_s / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_matrix(summaries: Sequence[Summary], path: Path, title: str) -> None:
    """Grouped bars of mean linear top-1 per base method and variant, with std and seed dots.

    Args:
        summaries: from :func:`summarise`.
        path: destination PNG.
        title: figure title (the budget, say).
    """
    bases = list(dict.fromkeys(s.base for s in summaries))
    width = 0.8 / len(VARIANTS)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.8 * len(bases) + 2), 3.8))
    low = min(min(s.top1) for s in summaries)
    labelled: set[str] = set()
    for s in summaries:
        offset = VARIANTS.index(s.variant) - (len(VARIANTS) - 1) / 2
        x = bases.index(s.base) + offset * width
        label = None if s.variant in labelled else VARIANT_LABELS[s.variant]
        labelled.add(s.variant)
        ax.bar(
            x, s.mean, width * 0.9, yerr=s.std, capsize=3, color=_COLOURS[s.variant], label=label
        )
        ax.scatter([x] * len(s.top1), s.top1, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(bases)), bases)
    ax.set_ylabel("linear top-1 (%)")
    ax.set_ylim(max(0.0, low - 10), min(100.0, max(s.mean + s.std for s in summaries) + 5))
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _example_pairs(store: Path, count: int) -> list[dict[str, str]]:
    """Up to ``count`` pairs of highest MI, one per window, taken from the videos in turn."""
    rows = read_pairs_csv(store / PAIRS_NAME)
    rows.sort(key=lambda row: float(row["mi"] or "-inf"), reverse=True)
    per_video: dict[str, list[dict[str, str]]] = {}
    windows: set[tuple[str, str]] = set()
    for row in rows:
        if (row["video"], row["window_start"]) not in windows:
            windows.add((row["video"], row["window_start"]))
            per_video.setdefault(row["video"], []).append(row)
    ranked = [pairs[i] for i in range(len(rows)) for pairs in per_video.values() if i < len(pairs)]
    return ranked[:count]


def plot_demo(
    store: Path, summaries: Sequence[Summary], path: Path, title: str, pairs: int = 6
) -> None:
    """The demo figure: example twins of the store (left) and the accuracy bars (right).

    Args:
        store: the twin store.
        summaries: from :func:`summarise` (one per method of the demo).
        path: destination PNG.
        title: figure title (dataset and budget).
        pairs: number of twin pairs to show.
    """
    examples = _example_pairs(store, pairs)
    rows = max(len(examples), 1)
    fig = plt.figure(figsize=(10, 1.0 + 1.25 * rows))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 2.2], wspace=0.35)
    tiles = outer[0].subgridspec(rows, 2, wspace=0.05, hspace=0.25)
    for row, pair in enumerate(examples):
        for col, key in enumerate(("anchor_file", "twin_file")):
            ax = fig.add_subplot(tiles[row, col])
            ax.imshow(Image.open(store / pair[key]).convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                video = pair["video"].rsplit("-", 1)[0]
                ax.set_ylabel(f"{video}\nMI {float(pair['mi'] or 'nan'):.2f}", fontsize=7)
            if row == 0:
                ax.set_title("patch" if col == 0 else "its twin", fontsize=9)
    ax = fig.add_subplot(outer[1])
    names = [s.method for s in summaries]
    colours = [_COLOURS[s.variant] for s in summaries]
    bars = ax.barh(names, [s.mean for s in summaries], height=0.5, color=colours)
    for bar, s in zip(bars, summaries):
        ax.text(
            bar.get_width() - 1,
            bar.get_y() + bar.get_height() / 2,
            f"{s.mean:.2f}%  ({s.minutes:.1f} min)",
            ha="right",
            va="center",
            color="white",
            fontsize=9,
        )
    ax.set_xlim(0, 100)
    ax.set_xlabel("linear top-1 (%)")
    ax.invert_yaxis()
    ax.margins(y=0.5)
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
