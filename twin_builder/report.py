"""``twin-builder inspect``: a plain-text summary of a twin store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twin_store import TwinStore, TwinStoreError, open_store

HISTOGRAM_BINS = 12
HISTOGRAM_WIDTH = 40


def load_analysis(store: TwinStore, video_id: str) -> dict[str, np.ndarray]:
    """A built video's per-window arrays (see ``twin_builder.build``).

    Raises:
        TwinStoreError: the store kept no analysis for the video.
    """
    analysis = store.read_analysis(video_id)
    if analysis is None:
        raise TwinStoreError(store.root, f"video {video_id!r} has no analysis arrays")
    return analysis


def twin_and_pair_mi(analysis: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """MI values of a video's selected twins and of all its valid pairs.

    Args:
        analysis: the video's analysis arrays.

    Returns:
        ``(twin_mi, pair_mi)``: 1-D float arrays in nats (each unordered valid pair once).
    """
    twin_values, pair_values = [], []
    for mi, twins in zip(analysis["mi"], analysis["twins"]):
        anchors = np.flatnonzero(twins >= 0)
        twin_values.append(mi[anchors, twins[anchors]])
        upper = mi[np.triu_indices(len(mi), 1)]
        pair_values.append(upper[np.isfinite(upper)])
    return np.concatenate([[], *twin_values]), np.concatenate([[], *pair_values])


def text_histogram(
    values: np.ndarray, bins: int = HISTOGRAM_BINS, width: int = HISTOGRAM_WIDTH
) -> list[str]:
    """A histogram as lines of ``#`` bars.

    Args:
        values: 1-D values.
        bins: number of bins.
        width: characters of the longest bar.

    Returns:
        One line per bin: ``[low, high)  count  bar``.
    """
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return ["  (no values)"]
    counts, edges = np.histogram(finite, bins=bins)
    longest = max(counts.max(), 1)
    return [
        f"  [{low:+7.3f}, {high:+7.3f})  {count:6d}  {'#' * round(width * count / longest)}"
        for low, high, count in zip(edges[:-1], edges[1:], counts)
    ]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def inspect_store(store: Path) -> str:
    """Checks a store as training does, and its shards' checksums, then summarises it: counts,
    valid-patch ratio, MI histograms, per-video lines.

    Args:
        store: the store directory.

    Returns:
        The report text.

    Raises:
        TwinStoreError: the store is invalid (the first problem found).
    """
    twin_store = open_store(store, verify=True)
    manifest = twin_store.manifest
    counts = manifest["counts"]
    params = manifest["params"]
    lines = [
        f"store: {twin_store.root}",
        f"format {manifest['format_version']}, builder {manifest['builder']['version']}, "
        f"selection {manifest['selection']}, complete, checked",
        "params: " + " ".join(f"{key}={value}" for key, value in sorted(params.items())),
        f"videos: {counts['videos']} ({counts['videos_built']} built, {counts['videos_skipped']} skipped)",
        f"windows: {counts['windows']}   patches: {counts['patches']}   "
        f"tracked: {counts['tracked_patches']} ({_percent(counts['tracked_patches'], counts['patches'])})   "
        f"valid: {counts['valid_patches']} ({_percent(counts['valid_patches'], counts['patches'])})",
        f"pairs: {counts['pairs']}   patch files: {counts['patch_files']}",
    ]
    twin_mi, pair_mi, per_video = [], [], []
    for record in twin_store.videos:
        if record["status"] != "built":
            per_video.append(
                f"  {record['id']:<32} {record['name']:<28} "
                f"skipped: {record['skip_reason']} ({record['detail']})"
            )
            continue
        video_twin_mi, video_pair_mi = twin_and_pair_mi(load_analysis(twin_store, record["id"]))
        twin_mi.append(video_twin_mi)
        pair_mi.append(video_pair_mi)
        mean_twin = f"{video_twin_mi.mean():.3f}" if len(video_twin_mi) else "-"
        valid_share = _percent(record["valid_patches"], record["patches"])
        per_video.append(
            f"  {record['id']:<32} {record['name']:<28} windows {record['windows']:4d}  "
            f"valid {record['valid_patches']:5d}/{record['patches']:<5d} ({valid_share})  "
            f"pairs {record['pairs']:6d}  mean twin MI {mean_twin}"
        )
    all_twin_mi = np.concatenate([[], *twin_mi])
    all_pair_mi = np.concatenate([[], *pair_mi])
    lines.append(f"MI of the selected twins (nats), {len(all_twin_mi)} anchors:")
    lines += text_histogram(all_twin_mi)
    lines.append(f"MI of all valid patch pairs (nats), {len(all_pair_mi)} pairs:")
    lines += text_histogram(all_pair_mi)
    lines.append("per video:")
    lines += per_video
    return "\n".join(lines)
