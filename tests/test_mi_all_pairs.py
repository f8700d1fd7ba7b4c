"""``benchmarks/mi_all_pairs.py``'s diagnostics of the growth target: the floor under a walk's
length and the targets' ratios, on real samples of its own generator."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The benchmark's module, imported as the script runs (its folder on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("mi_all_pairs")


def test_walk_floor_of_a_patch_paired_with_itself_is_k_minus_one(benchmark: ModuleType) -> None:
    # Joint distances equal the marginal ones, so exactly k - 1 neighbours lie nearer than eps.
    samples, _ = benchmark.make_inputs(8, 120)
    pairs = np.array([[p, p] for p in range(8)])
    assert benchmark.nearer_marginal_neighbours(samples, pairs) == benchmark.K - 1


def test_walk_floor_grows_like_the_square_root_of_the_window(benchmark: ModuleType) -> None:
    # Independent patches: about sqrt(k N) neighbours within eps, so 4x the samples doubles it.
    floors = []
    for n in (120, 480):
        samples, _ = benchmark.make_inputs(16, n)
        pairs = np.array([[p, p + 2] for p in range(0, 16, 4)])  # never twins
        floors.append(benchmark.nearer_marginal_neighbours(samples, pairs))
    assert benchmark.K < floors[0] < floors[1]
    assert 1.7 < floors[1] / floors[0] < 2.6


def test_targets_report_growth_floor_and_tree_ratios_per_grid(benchmark: ModuleType) -> None:
    rows = [
        {
            "patches": patches,
            "samples": samples,
            "ours_pair_us": per_pair * samples,
            "ours_window_s": 0.1,
            "speedup": 100.0,
            "max_abs_diff": 1e-15,
            "walk_floor": np.sqrt(samples),
            "tree_pair_us": 3.0 * samples,
        }
        for patches, per_pair in ((64, 2.0), (256, 1.0))
        for samples in benchmark.SAMPLES
    ]
    rows[benchmark.SAMPLES.index(480)]["ours_pair_us"] = 2.0 * 120 * 7.5  # P = 64 grows 7.5x
    targets = benchmark.evaluate_targets(rows)
    assert targets["growth_120_to_480"] == pytest.approx({"64": 7.5, "256": 4.0})
    assert not targets["growth_met"]
    assert targets["walk_floor_growth_120_to_480"] == pytest.approx({"64": 2.0, "256": 2.0})
    assert targets["tree_growth_120_to_480"] == pytest.approx({"64": 4.0, "256": 4.0})
    assert targets["tree_over_ours_at_480"] == pytest.approx({"64": 1440 / 1800, "256": 3.0})
