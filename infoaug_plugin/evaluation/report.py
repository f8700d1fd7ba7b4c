"""Results of a comparison: the CSV (one row per run), the Markdown table and the PNG figures."""

from __future__ import annotations

import csv
import itertools
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from infoaug_plugin.data.torch_loader import decode_patch  # noqa: E402
from infoaug_plugin.evaluation.configs import VARIANT_LABELS, VARIANTS, method_name  # noqa: E402
from infoaug_plugin.evaluation.runs import CellResult  # noqa: E402
from twin_store import TwinStore, open_store  # noqa: E402

_COLOURS = {
    "untrained": "#bcbcbc",
    "pixels": "#8c564b",
    "base": "#7f7f7f",
    "mi": "#1f77b4",
    "random": "#ff7f0e",
    "mi_shared": "#17becf",
}
_HATCHES = {None: "", "clips": "", "scenes": "//"}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """One (base, variant, twin source) over its seeds.

    Attributes:
        base: base method.
        variant: one of ``configs.VARIANTS``.
        twin_source: the twin store's source (InfoAug variants), else ``None``.
        seeds: the seeds that finished.
        top1: their linear top-1 accuracies (percent), in seed order.
        mean: mean top-1.
        std: sample standard deviation of top-1 (0 for one seed).
        ci95: half-width of the 95% confidence interval of the mean (Student's t over the
            seeds; NaN for one seed).
        minutes: mean wall time of a run (pretraining + linear evaluation), in minutes.
        twin_purity: the twins' same-class share, where the source has ground truth, else None.
    """

    base: str
    variant: str
    twin_source: str | None
    seeds: tuple[int, ...]
    top1: tuple[float, ...]
    mean: float
    std: float
    ci95: float
    minutes: float
    twin_purity: float | None = None

    @property
    def method(self) -> str:
        """The solo-learn method name of the variant."""
        return method_name(self.base, self.variant)

    @property
    def label(self) -> str:
        """The variant's label, with the twin source where there is one."""
        source = f", {self.twin_source}" if self.twin_source else ""
        return f"{VARIANT_LABELS[self.variant]}{source}"


def write_csv(results: Sequence[CellResult], path: Path) -> None:
    """Writes one row per run, columns as :class:`CellResult` plus ``method``; ``None`` is empty.

    Args:
        results: finished runs.
        path: destination CSV.
    """
    columns = ["base", "variant", "method", "twin_source", "seed"] + [
        f.name
        for f in fields(CellResult)
        if f.name not in ("base", "variant", "twin_source", "seed")
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result in results:
            writer.writerow({**asdict(result), "method": method_name(result.base, result.variant)})


def confidence_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t confidence interval of the mean of ``values``.

    Args:
        values: (n,) samples, one per seed.
        confidence: coverage of the interval.

    Returns:
        ``t_{(1+confidence)/2, n-1} * std / sqrt(n)``; NaN when ``n < 2``.
    """
    if len(values) < 2:
        return float("nan")
    quantile = scipy.stats.t.ppf((1 + confidence) / 2, df=len(values) - 1)
    return float(quantile * values.std(ddof=1) / np.sqrt(len(values)))


def summarise(results: Sequence[CellResult]) -> list[Summary]:
    """Groups runs by (base, variant, twin source): bases and sources in first-seen order,
    variants in ``VARIANTS`` order.

    Args:
        results: finished runs.

    Returns:
        One :class:`Summary` per group that has at least one run.
    """
    bases = list(dict.fromkeys(result.base for result in results))
    sources = list(dict.fromkeys(result.twin_source for result in results))
    summaries = []
    for base, variant, source in itertools.product(bases, VARIANTS, sources):
        runs = sorted(
            (r for r in results if (r.base, r.variant, r.twin_source) == (base, variant, source)),
            key=lambda r: r.seed,
        )
        if not runs:
            continue
        top1 = np.array([r.top1 for r in runs])
        summaries.append(
            Summary(
                base=base,
                variant=variant,
                twin_source=source,
                seeds=tuple(r.seed for r in runs),
                top1=tuple(float(v) for v in top1),
                mean=float(top1.mean()),
                std=float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
                ci95=confidence_half_width(top1),
                minutes=float(np.mean([r.pretrain_s + r.linear_s for r in runs]) / 60),
                twin_purity=runs[0].twin_purity,
            )
        )
    return summaries


def difference_interval(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> float:
    """Half-width of Welch's confidence interval of ``a.mean - b.mean`` (unequal variances).

    Args:
        a: one row, two or more seeds.
        b: the other row, two or more seeds.
        confidence: coverage of the interval.

    Returns:
        The half-width; NaN when a row has fewer than two seeds.
    """
    if len(a.seeds) < 2 or len(b.seeds) < 2:
        return float("nan")
    var_a, var_b = a.std**2 / len(a.seeds), b.std**2 / len(b.seeds)
    if var_a + var_b == 0:
        return 0.0
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a.seeds) - 1) + var_b**2 / (len(b.seeds) - 1))
    return float(scipy.stats.t.ppf((1 + confidence) / 2, df=dof) * np.sqrt(var_a + var_b))


def learning_verdict(summaries: Sequence[Summary]) -> str:
    """One sentence per base method: did it beat the untrained backbone by more than the seed
    spread, i.e. does the 95% interval of the difference of their means lie above zero?

    Args:
        summaries: from :func:`summarise`.

    Returns:
        The sentences (empty when no base has both rows); a base that did not learn is labelled
        "the budget is too small to learn".
    """
    sentences = []
    for base in dict.fromkeys(s.base for s in summaries):
        rows = {s.variant: s for s in summaries if s.base == base and s.twin_source is None}
        if "base" not in rows or "untrained" not in rows:
            continue
        gap = rows["base"].mean - rows["untrained"].mean
        spread = difference_interval(rows["base"], rows["untrained"])
        interval = f"95% interval of the difference {gap - spread:+.2f} to {gap + spread:+.2f}"
        if gap - spread > 0:
            sentences.append(
                f"{base} beat the untrained backbone by {gap:.2f} points, more than the seed "
                f"spread ({interval}): the budget learns."
            )
        elif np.isnan(spread):
            sentences.append(
                f"**The budget is too small to learn** as far as can be told: {base} is "
                f"{gap:+.2f} points from the untrained backbone, with fewer than two seeds."
            )
        else:
            sentences.append(
                f"**The budget is too small to learn**: {base} is {gap:+.2f} points from the "
                f"untrained backbone, within the seed spread ({interval}), so differences "
                "between variants measure nothing here."
            )
    return "\n\n".join(sentences)


def _number(value: float | None, digits: int = 2) -> str:
    """A number for a table cell; ``-`` for a missing or undefined one."""
    return "-" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def markdown_table(summaries: Sequence[Summary]) -> str:
    """A Markdown table: method, variant, twin source, mean and 95% interval of linear top-1, std,
    the per-seed values, twin purity and time.

    Args:
        summaries: from :func:`summarise`.

    Returns:
        The table, ending with a newline.
    """
    lines = [
        "| method | variant | twin source | linear top-1 (%) mean ± 95% CI | std | per seed "
        "| seeds | twin purity | min / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        per_seed = ", ".join(f"{v:.2f}" for v in s.top1)
        lines.append(
            f"| {s.method} | {VARIANT_LABELS[s.variant]} | {s.twin_source or '-'} | "
            f"{s.mean:.2f} ± {_number(s.ci95)} | {s.std:.2f} | {per_seed} | {len(s.seeds)} | "
            f"{_number(s.twin_purity, 3)} | {s.minutes:.1f} |"
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
    """Bars of mean linear top-1 per base method and variant (hatched: scenes twins), with the
    95% interval and one dot per seed; twin purity is written above the bars that have one.

    Args:
        summaries: from :func:`summarise`.
        path: destination PNG.
        title: figure title (the budget, say).
    """
    bases = list(dict.fromkeys(s.base for s in summaries))
    columns = list(dict.fromkeys((s.variant, s.twin_source) for s in summaries))
    width = 0.8 / len(columns)
    width_in = max(5.0, 0.55 * len(columns) * len(bases) + 3)
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    low = min(min(min(s.top1), s.mean - np.nan_to_num(s.ci95)) for s in summaries)
    high = max(max(max(s.top1), s.mean + np.nan_to_num(s.ci95)) for s in summaries)
    bottom = max(0.0, low - 3)
    ax.set_ylim(bottom, min(100.0, high + 1))
    for s in summaries:
        offset = columns.index((s.variant, s.twin_source)) - (len(columns) - 1) / 2
        x = bases.index(s.base) + offset * width
        ax.bar(
            x,
            s.mean - bottom,
            width * 0.9,
            bottom=bottom,
            yerr=np.nan_to_num(s.ci95),
            capsize=3,
            color=_COLOURS[s.variant],
            hatch=_HATCHES.get(s.twin_source, ".."),
            edgecolor="white",
            label=s.label if bases.index(s.base) == 0 else None,
        )
        ax.scatter([x] * len(s.top1), s.top1, color="black", s=8, zorder=3)
        if s.twin_purity is not None:
            purity = f"purity\n{s.twin_purity:.2f}"
            ax.text(x, bottom + 0.3, purity, ha="center", va="bottom", fontsize=6, color="white")
    ax.set_xticks(range(len(bases)), bases)
    ax.set_ylabel("linear top-1 (%), mean ± 95% CI")
    # About 11 characters of 8-point text per inch of figure.
    ax.set_title("\n".join(textwrap.wrap(title, int(11 * width_in))), fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _example_pairs(store: TwinStore, count: int) -> list[dict[str, object]]:
    """Up to ``count`` pairs of highest MI, one per window, taken from the videos in turn.

    Returns:
        Per pair: ``pair`` (id), ``patches`` (anchor, twin patch ids), ``video`` and ``mi``.
    """
    pairs = store.pairs
    order = np.argsort(-np.nan_to_num(np.asarray(pairs.mi), nan=-np.inf), kind="stable")
    frames = store.frames
    per_video: dict[int, list[dict[str, object]]] = {}
    windows: set[tuple[int, int]] = set()
    for pair in order.tolist():
        frame = int(pairs.frame[pair])
        video, window = int(frames.video[frame]), int(frames.window_start[frame])
        if (video, window) not in windows:
            windows.add((video, window))
            per_video.setdefault(video, []).append(
                {
                    "pair": pair,
                    "patches": (int(pairs.anchor[pair]), int(pairs.twin[pair])),
                    "video": store.videos[video]["id"],
                    "mi": float(pairs.mi[pair]),
                }
            )
    longest = max((len(examples) for examples in per_video.values()), default=0)
    ranked = [
        examples[i] for i in range(longest) for examples in per_video.values() if i < len(examples)
    ]
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
    twin_store = open_store(store)
    examples = _example_pairs(twin_store, pairs)
    rows = max(len(examples), 1)
    fig = plt.figure(figsize=(10, 1.0 + 1.25 * rows))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 2.2], wspace=0.35)
    tiles = outer[0].subgridspec(rows, 2, wspace=0.05, hspace=0.25)
    for row, pair in enumerate(examples):
        for col, patch in enumerate(pair["patches"]):
            ax = fig.add_subplot(tiles[row, col])
            ax.imshow(decode_patch(twin_store, patch, pair["pair"]))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                video = pair["video"].rsplit("-", 1)[0]
                ax.set_ylabel(f"{video}\nMI {pair['mi']:.2f}", fontsize=7)
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
