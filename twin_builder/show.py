"""``twin-builder show``: twins drawn as linked boxes on window frames, beside the MI matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from twin_builder.report import load_analysis
from twin_store import TwinStoreError, open_store


def twin_links(twins: np.ndarray, mi: np.ndarray, max_links: int) -> list[tuple[int, int]]:
    """The anchor-twin links to draw: each unordered pair once, highest MI first.

    Args:
        twins: (P,) twin index per patch, -1 for none.
        mi: (P, P) MI matrix (NaN where unknown, e.g. random selection sorts last).
        max_links: most links returned.

    Returns:
        ``[(i, j), ...]`` with i < j.
    """
    pairs = {
        tuple(sorted((int(anchor), int(twin)))) for anchor, twin in enumerate(twins) if twin >= 0
    }
    scored = sorted(pairs, key=lambda pair: -np.nan_to_num(mi[pair], nan=-np.inf))
    return scored[:max_links]


def choose_windows(analysis: dict[str, np.ndarray], count: int) -> list[int]:
    """Indices of the ``count`` windows with the most twins (ties: earliest first), in time order."""
    twins_per_window = (analysis["twins"] >= 0).sum(axis=1)
    best = sorted(range(len(twins_per_window)), key=lambda w: (-twins_per_window[w], w))[:count]
    return sorted(best)


def _draw_mi_matrix(
    figure, axis, mi: np.ndarray, valid: np.ndarray, twins: np.ndarray, grid: int, estimator: str
) -> None:
    """Heatmap of the MI between the valid patches, each row's selected twin ringed in white."""
    kept = np.flatnonzero(valid)
    if len(kept) < 2:
        axis.text(0.5, 0.5, "fewer than 2 valid patches: no MI", ha="center", va="center")
        axis.axis("off")
        return
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    image = axis.imshow(
        np.ma.masked_invalid(mi[np.ix_(kept, kept)]), cmap=colours, interpolation="nearest"
    )
    position = {patch: index for index, patch in enumerate(kept)}
    for row, anchor in enumerate(kept):
        if twins[anchor] >= 0:
            axis.scatter(
                position[twins[anchor]],
                row,
                s=30,
                facecolors="none",
                edgecolors="white",
                linewidths=1.2,
            )
    labels = [f"r{patch // grid}c{patch % grid}" for patch in kept]
    step = max(1, len(kept) // 24)
    ticks = np.arange(0, len(kept), step)
    axis.set_xticks(ticks, [labels[t] for t in ticks], fontsize=7, rotation=90)
    axis.set_yticks(ticks, [labels[t] for t in ticks], fontsize=7)
    axis.set_title(
        f"MI between the {len(kept)} valid patches ({estimator}, nats)\nwhite ring: the row's twin",
        fontsize=10,
    )
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="MI (nats)")


def render_store(
    store: Path, out: Path, video_id: str | None = None, windows: int = 2, max_links: int = 12
) -> Path:
    """Draws a store's twins and MI matrices into a PNG.

    One row per window: its first frame with every patch centre (white: valid, grey: not valid)
    and up to ``max_links`` twin pairs as boxes of one colour joined by a line, labelled with the
    MI in nats; beside it, the window's MI matrix between its valid patches.

    Args:
        store: a complete twin store.
        out: the PNG to write.
        video_id: the video to draw; None picks the built video with the most pairs.
        windows: how many windows to draw (those with the most twins).
        max_links: most twin pairs drawn per window.

    Returns:
        ``out``.

    Raises:
        TwinStoreError: the store is invalid, has no built video, or has no video ``video_id``.
    """
    twin_store = open_store(store)
    manifest = twin_store.manifest
    built = [record for record in twin_store.videos if record["status"] == "built"]
    if video_id is not None:
        built = [record for record in built if record["id"] == video_id]
    if not built:
        raise TwinStoreError(
            twin_store.root, "no built video" + (f" with id {video_id!r}" if video_id else "")
        )
    record = max(built, key=lambda r: r["pairs"])
    analysis = load_analysis(twin_store, record["id"])
    grid = int(manifest["params"]["grid"])
    chosen = choose_windows(analysis, windows)
    processed_width, processed_height = analysis["processed_size"]
    patch_side = manifest["params"]["patch_size"] or min(processed_width, processed_height) // grid
    # A bare Figure renders with Agg and never touches pyplot's global state or a display.
    figure = Figure(figsize=(13, 5.8 * len(chosen)), layout="constrained")
    axes = figure.subplots(len(chosen), 2, gridspec_kw={"width_ratios": [1.5, 1]}, squeeze=False)
    colours = matplotlib.colormaps["tab20"]
    for row_axes, window in zip(axes, chosen):
        thumbnail = analysis["thumbnails"][window]
        zoom = thumbnail.shape[1] / processed_width
        centres = analysis["centres"][window] * zoom
        valid = analysis["valid"][window]
        mi = analysis["mi"][window]
        half = patch_side * zoom / 2
        frame_axis, matrix_axis = row_axes
        frame_axis.imshow(thumbnail)
        frame_axis.scatter(*centres[~valid].T, s=10, c="0.6", marker="x", linewidths=1)
        frame_axis.scatter(*centres[valid].T, s=10, c="white", edgecolors="black", linewidths=0.5)
        for number, (i, j) in enumerate(twin_links(analysis["twins"][window], mi, max_links)):
            colour = colours(number % 20)
            for patch in (i, j):
                x, y = centres[patch]
                frame_axis.add_patch(
                    Rectangle((x - half, y - half), 2 * half, 2 * half, fill=False, lw=2, ec=colour)
                )
            frame_axis.plot(*centres[[i, j]].T, color=colour, lw=1.5)
            if np.isfinite(mi[i, j]):
                middle = centres[[i, j]].mean(axis=0)
                frame_axis.text(
                    *middle,
                    f"{mi[i, j]:.2f}",
                    color="white",
                    fontsize=8,
                    ha="center",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "lw": 0},
                )
        start = int(analysis["window_start"][window])
        frame_axis.set_title(
            # Two lines: a narrow frame (a small or portrait video) would clip one long line.
            f"{record['name']}, window at frame {start}\n{int(valid.sum())}/{len(valid)} valid patches, "
            f"{int((analysis['twins'][window] >= 0).sum())} twins ({manifest['selection']} selection)"
        )
        frame_axis.axis("off")
        _draw_mi_matrix(
            figure,
            matrix_axis,
            mi,
            valid,
            analysis["twins"][window],
            grid,
            manifest["params"]["estimator"],
        )
    figure.suptitle(
        "boxes of one colour joined by a line: a patch and its twin (label: MI in nats); "
        "white dots: valid patches; grey x: patches lost by tracking or without enough motion",
        fontsize=9,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out
