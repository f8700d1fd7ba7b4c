"""The twin store format: the one contract between ``twin_builder`` (writer) and ``infoaug_plugin`` (reader).

A twin store is a directory::

    STORE/
      manifest.json          written last, atomically; a store without it is incomplete
      pairs.csv              one row per (anchor, twin) pair, columns ``PAIR_COLUMNS`` first
      patches/<video_id>/    the patch images (PNG) referenced by ``anchor_file`` / ``twin_file``
      videos/<video_id>/     per-video files written by ``twin_builder`` (optional for readers):
        video.json           the video's manifest record; its presence commits the video
        pairs.csv            the video's rows of the store's pairs.csv
        analysis.npz         per-window arrays for ``twin-builder inspect`` / ``show`` (below)
      build_params.json      the parameters the store is being built with (resume / mix check)

``pairs.csv`` columns (the first ten are fixed by ARCHITECTURE.md 2.2; more may follow):

- ``pair_id``: stable string id, unique within the store (and across merged stores);
- ``video``: the source video's id (``<stem>-<first 8 hex of its sha256>``);
- ``window_start``: frame index (in the decoded video) where the tracking window starts;
- ``anchor_row``, ``anchor_col``, ``twin_row``, ``twin_col``: grid cells, 0-based, row-major from
  the top-left;
- ``mi``: mutual information of the two patches' motion, in nats (empty for ``random`` selection);
- ``anchor_file``, ``twin_file``: patch images, paths relative to the store, ``/``-separated;
- ``frame``: frame index the two crops were taken at (a window can give crops at several frames);
- ``anchor_box``, ``twin_box``: crop boxes in that frame, ``"x0 y0 x1 y1"`` in pixels of the
  original (not downscaled) frame.

Rows are ordered by video id, then window, frame and anchor cell; ``pair_id`` is
``<video>:w<window_start>:f<frame>:r<anchor_row>c<anchor_col>``. Patch images are
``patches/<video>/w<start:06d>_f<frame:06d>_r<row>c<col>.png`` (one file per patch and frame, shared
by every row that uses it), cropped from the processed (downscaled) frame around the patch's tracked
point and resized to a square of ``params.crop_size`` pixels.

``manifest.json`` also holds: ``videos``: one record per source video (``id``, ``name``, ``size`` in
bytes, ``sha256``, ``status`` ``built`` or ``skipped``, ``skip_reason`` and ``detail`` for a skipped
one, ``windows``, ``patches``, ``tracked_patches``, ``valid_patches``, ``pairs``, ``patch_files``);
``counts``: the same counts summed plus ``videos``, ``videos_built``, ``videos_skipped``; ``run``:
how it was produced (``shards``, ``workers``, ``merged_from``).

``videos/<video_id>/analysis.npz`` arrays (W windows, P = G*G patches):

- ``window_start`` (W,) int64; ``centres`` (W, P, 2) float32 patch centres (x, y) on the window's
  first frame, processed pixels; ``textured`` (W, P) bool, False where no corner was found in
  the cell and its centre was tracked instead; ``tracked`` (W, P) bool, the track survived the window;
  ``valid`` (W, P) bool, tracked and with enough motion entropy; ``mi`` (W, P, P) float32 nats,
  NaN outside valid pairs; ``twins`` (W, P) int64 twin index or -1;
- ``thumbnails`` (W, h, w, 3) uint8 RGB first frame of every window, longest side 320 pixels;
- ``scale`` float64 processed pixels per original pixel; ``processed_size`` (2,) (width, height).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PAIRS_NAME = "pairs.csv"
PATCHES_DIR = "patches"
VIDEOS_DIR = "videos"
VIDEO_RECORD_NAME = "video.json"
ANALYSIS_NAME = "analysis.npz"

PAIR_COLUMNS: tuple[str, ...] = (
    "pair_id",
    "video",
    "window_start",
    "anchor_row",
    "anchor_col",
    "twin_row",
    "twin_col",
    "mi",
    "anchor_file",
    "twin_file",
)
EXTRA_COLUMNS: tuple[str, ...] = ("frame", "anchor_box", "twin_box")
ALL_COLUMNS: tuple[str, ...] = PAIR_COLUMNS + EXTRA_COLUMNS

# ``manifest.json`` keys. ``complete`` is true only once every listed video is finished and
# ``pairs.csv`` is final; readers refuse anything else.
MANIFEST_REQUIRED_KEYS: tuple[str, ...] = (
    "format_version",
    "complete",
    "builder",
    "params",
    "selection",
    "videos",
    "counts",
)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Writes ``payload`` as JSON so that ``path`` is either absent, the old file or the new one.

    Args:
        path: destination file.
        payload: JSON-serialisable dict.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_pairs_csv(path: Path, rows: Iterable[Mapping[str, object]]) -> int:
    """Writes pair rows to ``path`` atomically, columns ``ALL_COLUMNS`` in order.

    Args:
        path: destination ``pairs.csv``.
        rows: mappings holding at least every column of ``ALL_COLUMNS``.

    Returns:
        The number of rows written.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    os.replace(tmp, path)
    return count


def read_pairs_csv(path: Path) -> list[dict[str, str]]:
    """Reads ``pairs.csv`` as a list of ``{column: text}`` dicts (no validation here)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
