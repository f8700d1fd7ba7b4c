"""``benchmarks/store_scale.py`` end to end at a tiny size: real stores of both formats, real
``open_store`` and real torch and DALI (CPU) loaders, in processes of their own."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "store_scale.py"
# The keys the issue asks for, then the memory split.
REQUIRED_KEYS = {
    "pairs",
    "format",
    "write_s",
    "bytes",
    "files",
    "open_s",
    "rss_mb",
    "torch_pairs_per_s",
    "dali_pairs_per_s",
    "first_batch_s",
    "rss_anon_mb",
    "rss_file_mb",
}


def _run(tmp_path: Path, *args: str) -> tuple[list[dict], str]:
    """Runs the benchmark; returns its JSON results and its standard output."""
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out), "--workdir", str(tmp_path / "w")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_tiny_run_measures_both_formats(tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali")
    results, stdout = _run(
        tmp_path,
        "--sizes",
        "2000",
        "--batches",
        "3",
        "--repeats",
        "2",
        "--markdown",
        str(tmp_path / "t.md"),
    )
    assert [(r["pairs"], r["format"]) for r in results] == [(2000, 1), (2000, 2)]
    by_format = {r["format"]: r for r in results}
    for result in results:
        assert REQUIRED_KEYS <= result.keys()
        assert result["skipped"] is None
        for key in REQUIRED_KEYS - {"rss_anon_mb", "rss_file_mb"}:
            assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result)
        assert 0 < result["open_s"] < 60 and result["first_batch_s"] < 120
        assert result["bytes"] >= result["apparent_bytes"] // 2
        # VmRSS is RssAnon + RssFile (+ shared memory, none here).
        assert math.isclose(
            result["rss_mb"], result["rss_anon_mb"] + result["rss_file_mb"], abs_tol=0.5
        )
    # Format 1: a file per patch (about one per pair) beside pairs.csv; format 2: a handful.
    assert by_format[1]["files"] >= 2000
    assert by_format[2]["files"] < 40
    assert not any((tmp_path / "w").iterdir()), "the stores are removed after measuring"
    table = (tmp_path / "t.md").read_text()
    assert table.splitlines()[0].startswith("| pairs | format |") and "| 2,000 | 2 |" in table
    assert "targets, format 2 at 2,000 pairs" in stdout


def test_sizes_that_cannot_run_are_skipped_and_said(tmp_path: Path) -> None:
    # 10^14 pairs fit on no disk; format 1 is also above --max-format1.
    results, stdout = _run(tmp_path, "--sizes", str(10**14), "--max-format1", "1000")
    assert [(r["format"], r["write_s"]) for r in results] == [(1, None), (2, None)]
    assert "--max-format1 1000" in results[0]["skipped"]
    assert "GiB free" in results[1]["skipped"]
    assert f"skipped: {10**14} pairs, format 2" in stdout
