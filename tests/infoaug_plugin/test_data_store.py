"""The twin store validator: a good store reads, every kind of bad store is refused by name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from infoaug_plugin.data import TwinStoreError, open_twin_store
from twin_builder.store_format import MANIFEST_NAME, PAIRS_NAME


@pytest.fixture
def store(tmp_path: Path, make_twin_store) -> Path:
    return make_twin_store(tmp_path / "store", n_pairs=8, size=8)


def _edit_manifest(store: Path, **changes) -> None:
    manifest = json.loads((store / MANIFEST_NAME).read_text())
    for key, value in changes.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    (store / MANIFEST_NAME).write_text(json.dumps(manifest))


def _rewrite_pairs(
    store: Path, keep_rows: int | None = None, drop_column: str | None = None
) -> None:
    with (store / PAIRS_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [column for column in rows[0] if column != drop_column]
    rows = rows if keep_rows is None else rows[:keep_rows]
    with (store / PAIRS_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _refusal(store: Path, **kwargs) -> str:
    with pytest.raises(TwinStoreError) as error:
        open_twin_store(store, **kwargs)
    message = str(error.value)
    assert message.startswith(f"twins store {store.resolve()}: ")
    return message


def test_valid_store_gives_rows_in_file_order_with_resolved_paths(store: Path) -> None:
    twin_store = open_twin_store(store)
    assert len(twin_store) == 8
    assert [pair.index for pair in twin_store.pairs] == list(range(8))
    assert all(
        pair.anchor_file.is_absolute() and pair.anchor_file.is_file() for pair in twin_store.pairs
    )
    assert twin_store.manifest["counts"]["pairs"] == 8


def test_window_patches_offer_every_cell_of_the_window(store: Path) -> None:
    twin_store = open_twin_store(store)
    windows = twin_store.window_patches()
    for pair in twin_store.pairs:
        files = windows.files[windows.window_of_pair[pair.index]]
        assert files[windows.anchor_slot[pair.index]] == pair.anchor_file
        assert len(files) >= 2


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    assert "is not a directory" in _refusal(tmp_path / "nowhere")


def test_store_without_manifest_is_refused_as_incomplete(store: Path) -> None:
    (store / MANIFEST_NAME).unlink()
    assert "manifest.json is missing" in _refusal(store)


def test_manifest_missing_a_key_is_refused(store: Path) -> None:
    _edit_manifest(store, counts=None)
    assert "manifest.json is missing key 'counts'" in _refusal(store)


def test_unfinished_build_is_refused(store: Path) -> None:
    _edit_manifest(store, complete=False)
    assert "complete: False" in _refusal(store)


def test_other_format_version_is_refused(store: Path) -> None:
    _edit_manifest(store, format_version=99)
    assert "format_version 99" in _refusal(store)


def test_pairs_csv_missing_a_column_is_refused(store: Path) -> None:
    _rewrite_pairs(store, drop_column="twin_file")
    assert "pairs.csv is missing column 'twin_file'" in _refusal(store)


def test_empty_store_is_refused(store: Path) -> None:
    _rewrite_pairs(store, keep_rows=0)
    _edit_manifest(store, counts={"videos": 2, "pairs": 0})
    assert "pairs.csv has 0 pairs" in _refusal(store)


def test_store_smaller_than_one_batch_is_refused(store: Path) -> None:
    assert "at least 64 are needed" in _refusal(store, min_pairs=64)


def test_counts_disagreeing_with_pairs_csv_are_refused(store: Path) -> None:
    _rewrite_pairs(store, keep_rows=5)
    assert "counts.pairs is 8 but pairs.csv has 5 rows" in _refusal(store)


def test_missing_patch_file_is_refused_by_name(store: Path) -> None:
    victim = open_twin_store(store).pairs[3].twin_file
    victim.unlink()
    message = _refusal(store)
    assert "1 patch file(s) referenced by pairs.csv do not exist" in message
    assert str(victim.relative_to(store.resolve())) in message


def test_duplicate_pair_ids_are_refused(store: Path) -> None:
    with (store / PAIRS_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["pair_id"] = rows[0]["pair_id"]
    with (store / PAIRS_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert "appears twice (rows 0 and 1)" in _refusal(store)


def test_window_with_a_single_patch_is_refused_for_random_twins(store: Path) -> None:
    with (store / PAIRS_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for index, row in enumerate(rows):  # one window per pair, its twin in the anchor's own cell
        row["twin_row"], row["twin_col"] = row["anchor_row"], row["anchor_col"]
        row["window_start"] = str(index)
    with (store / PAIRS_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    twin_store = open_twin_store(store)
    with pytest.raises(
        TwinStoreError, match="has a single patch; selection 'random' needs at least two"
    ):
        twin_store.window_patches()
