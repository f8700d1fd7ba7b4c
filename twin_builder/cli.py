"""``twin-builder``: build, inspect, show, merge, export and convert twin stores.

Examples::

    twin-builder build clips/ extra.mp4 --out twins --grid 8 --window 60 --workers 2
    twin-builder build clips/ --out twins-part0 --shard 0/2      # on machine A
    twin-builder build clips/ --out twins-part1 --shard 1/2      # on machine B
    twin-builder merge twins-part0 twins-part1 --out twins
    twin-builder inspect twins
    twin-builder show twins --out twins.png
    twin-builder export twins --out pairs.csv               # the pairs, for people and scripts
    twin-builder convert old-twins --out twins              # format 1 (PNG files) to shards
    twin-builder convert twins --out loose --to 1           # and back to one PNG per patch

Exit status: 0 on success; 1 when nothing could be built or a store is refused; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

from twin_builder.build import Shard, build_store
from twin_builder.camera import CameraModel
from twin_builder.depth import DepthProviderError, load_depth_provider
from twin_builder.pipeline import ESTIMATORS, FEATURES, SELECTIONS, BuildParams
from twin_builder.report import inspect_store
from twin_builder.video import DEFAULT_CUT_THRESHOLD, InputDiscoveryError
from twin_store import (
    FORMAT_VERSION,
    TwinStoreError,
    export_pairs_csv,
    merge_stores,
    open_store,
    write_format_1,
)
from twin_store.format import DEFAULT_SHARD_BYTES

DEFAULTS = BuildParams()
# Model variants of ``--depth midas`` (the entry points of MiDaS's torch.hub repository).
MIDAS_MODELS = ("MiDaS_small", "DPT_Hybrid", "DPT_Large")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _add_build_parser(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser(
        "build",
        help="mine twin patches from videos into a store",
        description="Mine twin patches from videos (files, folders of videos, folders of frames) "
        "into a twin store. "
        "Re-running with the same parameters resumes; unusable videos are reported and skipped.",
    )
    build.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="video file, folder of videos or of frames",
    )
    build.add_argument(
        "--out", required=True, type=Path, help="store directory (new, or a store to resume)"
    )
    build.add_argument(
        "--grid", type=int, default=DEFAULTS.grid, help="patches per side, G (default %(default)s)"
    )
    build.add_argument(
        "--window",
        type=int,
        default=DEFAULTS.window,
        help="frames per window, T (default %(default)s)",
    )
    build.add_argument(
        "--stride", type=_positive_int, help="frames between window starts (default: --window)"
    )
    build.add_argument(
        "--points-per-cell",
        type=_positive_int,
        default=DEFAULTS.points_per_cell,
        help="tracked points per patch (default %(default)s)",
    )
    build.add_argument(
        "--fb-threshold",
        type=_positive_float,
        default=DEFAULTS.fb_threshold,
        help="forward-backward tracking error limit, px (default %(default)s)",
    )
    build.add_argument(
        "--camera",
        choices=[m.value for m in CameraModel],
        default=DEFAULTS.camera,
        help="camera-motion model removed from the tracks (default %(default)s)",
    )
    build.add_argument(
        "--features",
        choices=FEATURES,
        default=DEFAULTS.features,
        help="MI samples: per-frame displacement or position along the window (default %(default)s)",
    )
    build.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default=DEFAULTS.estimator,
        help="MI estimator (default %(default)s)",
    )
    build.add_argument(
        "--k", type=_positive_int, default=DEFAULTS.k, help="k-th neighbour (default %(default)s)"
    )
    build.add_argument(
        "--theiler",
        type=int,
        default=DEFAULTS.theiler,
        help="Theiler window, frames (default %(default)s)",
    )
    build.add_argument(
        "--selection",
        choices=SELECTIONS,
        default=DEFAULTS.selection,
        help="mi: twin = patch of highest MI; random: the random-patch baseline (default %(default)s)",
    )
    build.add_argument(
        "--mi-floor",
        type=_finite_float,
        help="with --selection mi, keep twins above this MI (nats)",
    )
    build.add_argument(
        "--max-side",
        type=int,
        default=DEFAULTS.max_side,
        help="downscale frames to this longest side, px; 0 keeps the original (default %(default)s)",
    )
    build.add_argument(
        "--cut-threshold",
        type=_positive_float,
        default=DEFAULT_CUT_THRESHOLD,
        help="shot cut: mean absolute grey-level change between frames (default %(default)s)",
    )
    build.add_argument(
        "--crops-per-window",
        type=_positive_int,
        default=DEFAULTS.crops_per_window,
        help="frames per window at which patch crops are taken (default %(default)s)",
    )
    build.add_argument(
        "--patch-size", type=int, help="crop side in processed px (default: grid cell side)"
    )
    build.add_argument(
        "--crop-size",
        type=int,
        default=DEFAULTS.crop_size,
        help="side of the written patch images, px (default %(default)s)",
    )
    build.add_argument(
        "--depth-provider",
        metavar="MODULE:FACTORY",
        help="depth provider giving a third motion coordinate (default: 2-D)",
    )
    build.add_argument(
        "--depth",
        choices=["midas"],
        help="built-in depth provider: MiDaS through torch.hub (see --midas-*)",
    )
    build.add_argument(
        "--midas-model",
        choices=MIDAS_MODELS,
        help="MiDaS variant, a torch.hub entry point (default MiDaS_small)",
    )
    build.add_argument(
        "--midas-hub",
        type=Path,
        metavar="DIR",
        help="local MiDaS: a clone of isl-org/MiDaS, or a copied torch hub cache holding one "
        "(default: github intel-isl/MiDaS through torch's hub cache)",
    )
    build.add_argument(
        "--midas-weights",
        type=Path,
        metavar="FILE",
        help="MiDaS weights (state dict) to use instead of the hub's pretrained ones",
    )
    build.add_argument(
        "--depth-device",
        help="torch device MiDaS runs on, e.g. cpu, cuda, cuda:1 (default: a GPU if any)",
    )
    build.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes over videos (default %(default)s)",
    )
    build.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULTS.seed,
        help="random seed (default %(default)s)",
    )
    build.add_argument(
        "--shard", default="0/1", help="build only share i of n of the videos, i/n with 0 <= i < n"
    )
    build.add_argument(
        "--shard-mb",
        type=_positive_int,
        default=DEFAULT_SHARD_BYTES // 2**20,
        help="close a patch shard file at about this many MiB (default %(default)s)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")


def _depth_provider_spec(args: argparse.Namespace) -> str | None:
    """The ``module:factory`` of ``--depth`` or ``--depth-provider``.

    Raises:
        ValueError: both given, or MiDaS options without ``--depth midas``.
    """
    midas_options = {
        "--midas-model": args.midas_model,
        "--midas-hub": args.midas_hub,
        "--midas-weights": args.midas_weights,
        "--depth-device": args.depth_device,
    }
    if args.depth is None:
        given = [flag for flag, value in midas_options.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --depth midas")
        return args.depth_provider
    if args.depth_provider:
        raise ValueError("give --depth or --depth-provider, not both")
    for flag in ("--midas-hub", "--midas-weights"):
        path = midas_options[flag]
        if path is not None and not path.exists():
            raise ValueError(f"{flag} {path}: no such file or folder")
    # Imported only here: it imports torch, which no other command needs.
    from twin_builder.midas import depth_provider_spec

    return depth_provider_spec(args.midas_model or MIDAS_MODELS[0])


def _build_params(args: argparse.Namespace) -> BuildParams:
    return BuildParams(
        grid=args.grid,
        window=args.window,
        stride=args.stride,
        points_per_cell=args.points_per_cell,
        fb_threshold=args.fb_threshold,
        camera=args.camera,
        features=args.features,
        estimator=args.estimator,
        k=args.k,
        theiler=args.theiler,
        selection=args.selection,
        mi_floor=args.mi_floor,
        max_side=args.max_side or None,
        cut_threshold=args.cut_threshold,
        crops_per_window=args.crops_per_window,
        patch_size=args.patch_size,
        crop_size=args.crop_size,
        depth_provider=_depth_provider_spec(args),
        seed=args.seed,
    )


def _run_build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        params = _build_params(args)
        shard = Shard.parse(args.shard)
    except ValueError as error:
        parser.error(str(error))
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} is a file, not a store folder", file=sys.stderr)
        return 1
    if args.depth == "midas":
        from twin_builder.midas import midas_environment

        environment = midas_environment(args.midas_hub, args.midas_weights, args.depth_device)
    else:
        environment = contextlib.nullcontext()
    with environment:
        if params.depth_provider:
            try:
                load_depth_provider(params.depth_provider)  # fail now, not in every worker
            except ValueError as error:
                parser.error(str(error))
        report = build_store(
            args.inputs,
            args.out,
            params,
            args.workers,
            shard,
            progress=not args.quiet,
            shard_bytes=args.shard_mb * 2**20,
        )
    for record in report.skipped:
        print(
            f"skipped {record['name']}: {record['skip_reason']}: {record['detail']}",
            file=sys.stderr,
        )
    if report.manifest is None:
        print(
            f"error: nothing could be built into {args.out}: no video gave a twin pair",
            file=sys.stderr,
        )
        return 1
    counts = report.manifest["counts"]
    print(
        f"{args.out}: {counts['pairs']} pairs from {counts['videos_built']} videos "
        f"({len(report.built)} built now, {len(report.resumed)} already done, "
        f"{counts['videos_skipped']} skipped)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``twin-builder`` argument parser."""
    summary, _, examples = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="twin-builder",
        description=summary.replace("``", ""),
        epilog=examples.replace("::", ":"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_build_parser(subparsers)
    inspect = subparsers.add_parser("inspect", help="summarise a twin store")
    inspect.add_argument("store", type=Path)
    show = subparsers.add_parser("show", help="draw twins and an MI matrix into a PNG")
    show.add_argument("store", type=Path)
    show.add_argument("--out", required=True, type=Path, help="PNG to write")
    show.add_argument("--video", help="video id to draw (default: the one with the most pairs)")
    show.add_argument(
        "--windows", type=_positive_int, default=2, help="windows drawn (default %(default)s)"
    )
    show.add_argument(
        "--max-links", type=_positive_int, default=12, help="twin pairs drawn per window"
    )
    merge = subparsers.add_parser(
        "merge",
        help="combine stores built with the same parameters (shards linked, not re-encoded)",
    )
    merge.add_argument("stores", nargs="+", type=Path, metavar="STORE")
    merge.add_argument("--out", required=True, type=Path, help="merged store directory")
    export = subparsers.add_parser("export", help="write a store's pairs as a pairs.csv file")
    export.add_argument("store", type=Path)
    export.add_argument("--out", required=True, type=Path, help="CSV file to write")
    convert = subparsers.add_parser(
        "convert",
        help=f"pack a format-1 store (one PNG file per patch) into format {FORMAT_VERSION} shards, "
        "or unpack one into format 1 (--to 1)",
    )
    convert.add_argument("store", type=Path)
    convert.add_argument("--out", required=True, type=Path, help="new store directory")
    convert.add_argument(
        "--to", type=int, choices=(1, FORMAT_VERSION), default=FORMAT_VERSION, help="target format"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``twin-builder``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return _run_build(args, parser)
        if args.command == "inspect":
            print(inspect_store(args.store))
        elif args.command == "show":
            # matplotlib costs most of a second to import: only ``show`` pays for it.
            from twin_builder.show import render_store

            print(render_store(args.store, args.out, args.video, args.windows, args.max_links))
        elif args.command == "export":
            rows = export_pairs_csv(open_store(args.store), args.out)
            print(f"{args.out}: {rows} pairs")
        elif args.command == "convert" and args.to == 1:
            manifest = write_format_1(open_store(args.store), args.out, progress=True)
            print(f"{args.out}: {manifest['counts']['pairs']} pairs, format 1")
        else:
            if args.command == "convert" and open_store(args.store).format_version == args.to:
                raise TwinStoreError(args.store, f"is a format-{args.to} store already")
            stores = args.stores if args.command == "merge" else [args.store]
            manifest = merge_stores(stores, args.out, progress=True)
            print(
                f"{args.out}: {manifest['counts']['pairs']} pairs "
                f"from {manifest['counts']['videos_built']} videos in {manifest['counts']['shards']} shards"
            )
    except (TwinStoreError, InputDiscoveryError, DepthProviderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the file system refused: a read-only or full disk, a bad path
        where = f"{error.filename}: " if error.filename is not None else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
