"""The torch and DALI twin loaders over a store whose images paint their pair id in their pixels.

``make_twin_store(..., encode_ids=True)`` fills the anchor of pair ``i`` with the colour
``(i % 256, i // 256, 0)`` and its twin with ``(i % 256, i // 256, 255)``; with colour
augmentations off and mean 0 / std 1, the centre pixel of a crop gives the row back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from infoaug_plugin.data import PacedTwinLoader, build_twin_loader
from twin_store import TwinStoreError, open_store

N_PAIRS = 40
BATCH = 4
SIZE = 16
GEOMETRIC_ONLY = {
    "rrc": {"enabled": True, "crop_min_scale": 0.3, "crop_max_scale": 1.0},
    "color_jitter": {"prob": 0.0},
    "grayscale": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.5},
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
}


@pytest.fixture(scope="module")
def id_store(tmp_path_factory: pytest.TempPathFactory, make_twin_store) -> Path:
    return make_twin_store(
        tmp_path_factory.mktemp("twins") / "store", n_pairs=N_PAIRS, size=32, encode_ids=True
    )


def _cfg(store: Path, loader: str, selection: str = "store") -> OmegaConf:
    return OmegaConf.create(
        {
            "twins": str(store),
            "batch_size": BATCH,
            "loader": loader,
            "num_workers": 0 if loader == "torch" else 2,
            "image_size": SIZE,
            "selection": selection,
            "dali_device": "cpu",
            "augmentations": GEOMETRIC_ONLY,
        }
    )


def _decode(images: torch.Tensor) -> tuple[list[int], list[int]]:
    """Row index and blue channel painted in each image's centre pixel."""
    centre = (images[:, :, SIZE // 2, SIZE // 2] * 255).round().long()
    return (centre[:, 0] + 256 * centre[:, 1]).tolist(), centre[:, 2].tolist()


def _epoch(loader) -> list[list[torch.Tensor]]:
    return [batch for batch in loader]


@pytest.mark.parametrize("loader_name", ["torch", "dali"])
def test_batches_have_the_twin_batch_layout(id_store: Path, loader_name: str) -> None:
    loader = build_twin_loader(_cfg(id_store, loader_name))
    batches = _epoch(loader)
    assert len(loader) == len(batches) == N_PAIRS // BATCH
    pair_ids, patches, twins = batches[0]
    assert pair_ids.dtype == torch.long and pair_ids.shape == (BATCH,)
    assert patches.dtype == twins.dtype == torch.float32
    assert patches.shape == twins.shape == (BATCH, 3, SIZE, SIZE)


def test_dali_batches_stay_aligned_and_shards_are_disjoint(id_store: Path) -> None:
    seen = []
    for shard_id in range(2):
        loader = build_twin_loader(_cfg(id_store, "dali"), shard_id=shard_id, num_shards=2)
        for epoch in range(2):
            for pair_ids, patches, twins in _epoch(loader):
                anchor_rows, anchor_blue = _decode(patches)
                twin_rows, twin_blue = _decode(twins)
                assert anchor_rows == twin_rows == pair_ids.tolist()
                assert set(anchor_blue) == {0} and set(twin_blue) == {255}
                if epoch == 0:
                    seen.extend(pair_ids.tolist())
    assert len(seen) == len(set(seen)) == N_PAIRS


def test_torch_and_dali_load_the_same_pairs_in_the_same_order(id_store: Path) -> None:
    for shard_id in range(2):
        orders = []
        for loader_name in ("torch", "dali"):
            loader = build_twin_loader(
                _cfg(id_store, loader_name), shard_id=shard_id, num_shards=2, seed=3
            )
            orders.append([batch[0].tolist() for epoch in range(2) for batch in _epoch(loader)])
        assert orders[0] == orders[1]


def test_epochs_reshuffle_and_set_epoch_replays_one(id_store: Path) -> None:
    loader = build_twin_loader(_cfg(id_store, "dali"))
    first, second = ([b[0].tolist() for b in _epoch(loader)] for _ in range(2))
    assert first != second
    loader.set_epoch(0)
    assert [b[0].tolist() for b in _epoch(loader)] == first


def test_dali_pass_left_unfinished_does_not_leak_into_the_next(id_store: Path) -> None:
    loader = build_twin_loader(_cfg(id_store, "dali"))
    reference = build_twin_loader(_cfg(id_store, "torch"))
    next(iter(loader))
    _epoch(reference)
    assert [b[0].tolist() for b in _epoch(loader)] == [b[0].tolist() for b in _epoch(reference)]


@pytest.mark.parametrize("loader_name", ["torch", "dali"])
def test_random_selection_pairs_each_anchor_with_another_patch_of_its_frame(
    id_store: Path, loader_name: str
) -> None:
    pairs = open_store(id_store).pairs
    loader = build_twin_loader(_cfg(id_store, loader_name, selection="random"), seed=1)
    drawn_twins = 0
    for pair_ids, _, twins in _epoch(loader):
        twin_rows, twin_blue = _decode(twins)
        for pair_id, twin_row, blue in zip(pair_ids.tolist(), twin_rows, twin_blue):
            # The image painted (twin_row, blue) is that pair's anchor or twin patch.
            patch = pairs.twin[twin_row] if blue == 255 else pairs.anchor[twin_row]
            assert pairs.frame[twin_row] == pairs.frame[pair_id]
            assert patch != pairs.anchor[pair_id]
            drawn_twins += patch != pairs.twin[pair_id]
    assert drawn_twins > 0  # not the store's twins


def test_random_twins_are_the_same_in_both_loaders(id_store: Path) -> None:
    twins_by_loader = []
    for loader_name in ("torch", "dali"):
        loader = build_twin_loader(_cfg(id_store, loader_name, selection="random"), seed=2)
        twins_by_loader.append([_decode(batch[2]) for batch in _epoch(loader)])
    assert twins_by_loader[0] == twins_by_loader[1]


def test_paced_loader_runs_twin_epochs_back_to_back_at_the_main_epoch_length(
    id_store: Path,
) -> None:
    paced = PacedTwinLoader(build_twin_loader(_cfg(id_store, "torch")), num_batches=4)
    served = [batch[0].tolist() for _ in range(5) for batch in paced]
    reference = build_twin_loader(_cfg(id_store, "torch"))
    assert len(paced) == 4
    assert served == [batch[0].tolist() for _ in range(2) for batch in _epoch(reference)]


def test_too_few_pairs_for_every_shard_is_refused(id_store: Path) -> None:
    with pytest.raises(TwinStoreError, match="at least 44 are needed"):
        build_twin_loader(_cfg(id_store, "torch"), num_shards=11)


def test_unknown_loader_is_refused_by_key(id_store: Path) -> None:
    cfg = _cfg(id_store, "torch")
    cfg.loader = "ffcv"
    with pytest.raises(ValueError, match="infoaug.loader must be one of dali, torch"):
        build_twin_loader(cfg)
