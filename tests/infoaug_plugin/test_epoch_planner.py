"""The epoch planner on a store built by twin-builder, where rows of one frame share crops: no
batch shows one image in two rows, every process agrees on the plan, and rows are used once."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from infoaug_plugin.data import build_twin_loader
from infoaug_plugin.data.sampling import EpochPlanner, pack_without_repeats
from twin_builder.cli import main as twin_builder
from twin_builder.synthetic import make_twin_video, write_video
from twin_store import StoreWriter, entry_from_rows, open_store

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
    twin_store = open_store(store)
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


def _global_batches(planners: list[EpochPlanner], epoch: int) -> list[list[int]]:
    """The patches (anchors and twins) of every process's rows, for each step of ``epoch``."""
    batch_size = planners[0].batch_size
    per_shard = [planner.samples(epoch) for planner in planners]
    return [
        [
            int(patch)
            for samples in per_shard
            for batch in [samples.batch(step, batch_size)]
            for patch in np.concatenate([batch.anchors, batch.twins])
        ]
        for step in range(planners[0].num_batches)
    ]


def test_store_shares_images_between_rows(shared_store: Path) -> None:
    pairs = open_store(shared_store).pairs
    uses = Counter(np.concatenate([pairs.anchor, pairs.twin]).tolist())
    assert max(uses.values()) >= 3


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("batch_size", "num_shards"), LAYOUTS)
def test_no_step_shows_one_image_in_two_rows(
    shared_store: Path, selection: str, batch_size: int, num_shards: int
) -> None:
    planners = _planners(shared_store, selection, batch_size, num_shards)
    with_repeats = []
    for epoch in EPOCHS:
        for step, patches in enumerate(_global_batches(planners, epoch)):
            if max(Counter(patches).values()) > 1:
                with_repeats.append((epoch, step))
    assert with_repeats == []


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize(("batch_size", "num_shards"), LAYOUTS)
def test_every_process_gets_its_batches_from_distinct_rows(
    shared_store: Path, selection: str, batch_size: int, num_shards: int
) -> None:
    planners = _planners(shared_store, selection, batch_size, num_shards)
    for epoch in EPOCHS:
        rows = [int(row) for planner in planners for row in planner.samples(epoch).pair_ids]
        assert len(rows) == len(set(rows)) == num_shards * planners[0].num_batches * batch_size


@pytest.mark.parametrize("selection", SELECTIONS)
def test_plan_depends_on_seed_and_epoch_only(shared_store: Path, selection: str) -> None:
    first, again = (_planners(shared_store, selection, 4, 2)[1] for _ in range(2))

    def plan(planner: EpochPlanner, epoch: int) -> list[list[int]]:
        samples = planner.samples(epoch)
        return [samples.pair_ids.tolist(), samples.anchors.tolist(), samples.twins.tolist()]

    assert plan(first, 2) == plan(again, 2)
    assert plan(first, 2) != plan(first, 3)


def test_random_twins_stay_one_draw_per_row_and_epoch(shared_store: Path) -> None:
    """A row's random twin does not depend on which process loads it or where the packing puts it."""
    twins: dict[int, int] = {}
    for batch_size, num_shards in LAYOUTS:
        for planner in _planners(shared_store, "random", batch_size, num_shards):
            samples = planner.samples(1)
            for pair_id, anchor, twin in zip(samples.pair_ids, samples.anchors, samples.twins):
                assert twins.setdefault(int(pair_id), int(twin)) == twin
                assert twin != anchor


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
    pairs = open_store(shared_store).pairs
    for pair_ids, _, _ in build_twin_loader(cfg):
        patches = np.concatenate([pairs.anchor[pair_ids.numpy()], pairs.twin[pair_ids.numpy()]])
        assert len(patches) == len(set(patches.tolist()))


def test_store_that_cannot_avoid_repeats_warns_and_still_fills_every_batch(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    # One crop frame of a 5 x 5 grid: 16 anchors, all with the top-left patch as their twin.
    rows = [
        {
            "video": "clip-00000000",
            "window_start": 0,
            "frame": 0,
            "anchor_row": cell // 5,
            "anchor_col": cell % 5,
            "twin_row": 0,
            "twin_col": 0,
            "mi": "0.5",
            "anchor_file": f"{cell}",
            "twin_file": "0",
        }
        for cell in range(1, 17)
    ]
    writer = StoreWriter(store, {"grid": 5, "selection": "mi"})
    writer.commit(
        entry_from_rows(
            {"id": "clip-00000000", "name": "clip.mp4", "status": "built", "pairs": 16},
            rows,
            lambda name: png.getvalue(),
        )
    )
    writer.finish({})
    (planner,) = _planners(store, "store", 4, 1)
    with pytest.warns(UserWarning, match="4 of 4 batches of epoch 0 repeat an image"):
        samples = planner.samples(0)
    assert len(set(samples.pair_ids.tolist())) == len(samples) == 16
    assert set(samples.twins.tolist()) == {int(open_store(store).pairs.twin[0])}


@pytest.mark.parametrize(
    ("images", "num_batches"),
    [
        # Rows 1-8 all show image 1 like row 0: the greedy pass exhausts its lookahead and completes
        # the batch with a repeating row; the unused row 9 takes its place.
        ([(1, 2), *((1, 10 + row) for row in range(1, 9)), (20, 21)], 1),
        # Every row is loaded: row 3 repeats image 5 of row 2 in the last batch, so a row of the
        # first batch trades places with one of them.
        ([(1, 2), (3, 4), (5, 6), (5, 7)], 2),
    ],
)
def test_packing_swaps_out_a_row_that_would_repeat_an_image(
    images: list[tuple[int, int]], num_batches: int
) -> None:
    anchors, twins = (np.array(ids) for ids in zip(*images))
    packed = pack_without_repeats(np.arange(len(images)), anchors, twins, 2, num_batches)
    assert len(set(packed.tolist())) == len(packed) == 2 * num_batches
    for first, second in packed.reshape(num_batches, 2):
        assert set(images[first]).isdisjoint(images[second])
