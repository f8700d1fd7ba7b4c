"""The epoch planner on a store built by twin-builder, where rows of one frame share crops: no
batch shows one image in two rows, every process agrees on the plan, and rows are used once."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from infoaug_plugin.data import build_twin_loader, open_twin_store
from infoaug_plugin.data.sampling import EpochPlanner, TwinSample
from twin_builder.cli import main as twin_builder
from twin_builder.store_format import PAIRS_NAME
from twin_builder.synthetic import make_twin_video, write_video

SELECTIONS = ("store", "random")
# (batch_size, num_shards): one process, and two whose batches of a step are gathered together.
LAYOUTS = ((8, 1), (4, 2))
EPOCHS = range(4)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A twin-builder store of two synthetic clips, in which some images are in several rows."""
    folder = tmp_path_factory.mktemp("shared")
    (folder / "videos").mkdir()
    for seed in (1, 2):
        video = make_twin_video(grid=4, frames=48, cell=24, seed=seed)
        write_video(video.frames, folder / "videos" / f"clip{seed}.avi")
    arguments = ["--grid", "4", "--window", "24", "--max-side", "0", "--crop-size", "16"]
    status = twin_builder(
        ["build", str(folder / "videos"), "--out", str(folder / "store"), *arguments, "--quiet"]
    )
    assert status == 0
    return folder / "store"


def _planners(store: Path, selection: str, batch_size: int, num_shards: int) -> list[EpochPlanner]:
    twin_store = open_twin_store(store)
    return [
        EpochPlanner(
            twin_store,
            batch_size=batch_size,
            selection=selection,
            seed=3,
            shard_id=shard_id,
            num_shards=num_shards,
        )
        for shard_id in range(num_shards)
    ]


def _global_batches(planners: list[EpochPlanner], epoch: int) -> list[list[TwinSample]]:
    """The rows of every process for each step of ``epoch``."""
    batch_size = planners[0].batch_size
    per_shard = [planner.samples(epoch) for planner in planners]
    return [
        [sample for samples in per_shard for sample in samples[step : step + batch_size]]
        for step in range(0, len(per_shard[0]), batch_size)
    ]


def test_store_shares_images_between_rows(shared_store: Path) -> None:
    pairs = open_twin_store(shared_store).pairs
    uses = Counter([pair.anchor_file for pair in pairs] + [pair.twin_file for pair in pairs])
    assert max(uses.values()) >= 3


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("batch_size", "num_shards"), LAYOUTS)
def test_no_step_shows_one_image_in_two_rows(
    shared_store: Path, selection: str, batch_size: int, num_shards: int
) -> None:
    planners = _planners(shared_store, selection, batch_size, num_shards)
    with_repeats = []
    for epoch in EPOCHS:
        for step, batch in enumerate(_global_batches(planners, epoch)):
            images = Counter(
                file for sample in batch for file in (sample.anchor_file, sample.twin_file)
            )
            if max(images.values()) > 1:
                with_repeats.append((epoch, step))
    assert with_repeats == []


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("batch_size", "num_shards"), LAYOUTS)
def test_every_process_gets_its_batches_from_distinct_rows(
    shared_store: Path, selection: str, batch_size: int, num_shards: int
) -> None:
    planners = _planners(shared_store, selection, batch_size, num_shards)
    for epoch in EPOCHS:
        rows = [sample.pair_id for planner in planners for sample in planner.samples(epoch)]
        assert len(rows) == len(set(rows)) == num_shards * planners[0].num_batches * batch_size


@pytest.mark.parametrize("selection", SELECTIONS)
def test_plan_depends_on_seed_and_epoch_only(shared_store: Path, selection: str) -> None:
    first, again = (_planners(shared_store, selection, 4, 2)[1] for _ in range(2))
    assert first.samples(2) == again.samples(2)
    assert first.samples(2) != first.samples(3)


def test_random_twins_stay_one_draw_per_row_and_epoch(shared_store: Path) -> None:
    """A row's random twin does not depend on which process loads it or where the packing puts it."""
    twins: dict[int, Path] = {}
    for batch_size, num_shards in LAYOUTS:
        for planner in _planners(shared_store, "random", batch_size, num_shards):
            for sample in planner.samples(1):
                assert twins.setdefault(sample.pair_id, sample.twin_file) == sample.twin_file
                assert sample.twin_file != sample.anchor_file


def test_torch_loader_batches_show_no_image_twice(shared_store: Path) -> None:
    cfg = OmegaConf.create(
        {
            "twins": str(shared_store),
            "batch_size": 8,
            "loader": "torch",
            "num_workers": 0,
            "image_size": 16,
            "selection": "store",
        }
    )
    pairs = open_twin_store(shared_store).pairs
    for pair_ids, _, _ in build_twin_loader(cfg):
        files = [
            file
            for row in pair_ids.tolist()
            for file in (pairs[row].anchor_file, pairs[row].twin_file)
        ]
        assert len(files) == len(set(files))


def test_store_that_cannot_avoid_repeats_warns_and_still_fills_every_batch(
    tmp_path: Path, make_twin_store
) -> None:
    store = make_twin_store(tmp_path / "store", n_pairs=16, size=8)
    with (store / PAIRS_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # every pair's twin is the same image
        row["twin_file"] = rows[0]["twin_file"]
    with (store / PAIRS_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (planner,) = _planners(store, "store", 4, 1)
    with pytest.warns(UserWarning, match="4 of 4 batches of epoch 0 repeat an image"):
        samples = planner.samples(0)
    assert len({sample.pair_id for sample in samples}) == len(samples) == 16
    assert np.all([sample.twin_file == samples[0].twin_file for sample in samples])
