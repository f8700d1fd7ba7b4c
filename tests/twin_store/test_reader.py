"""The strict reader: good stores of both formats read; every kind of bad or hostile store is
refused at open, by name, before anything trains on it."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from infoaug_plugin.data import build_twin_loader
from twin_builder.cli import main as twin_builder
from twin_store import StoreWriter, TwinStoreError, open_store


@pytest.fixture
def store(tmp_path: Path, make_twin_store) -> Path:
    return make_twin_store(tmp_path / "store", n_pairs=8, size=8)


def _refusal(store: Path, **kwargs) -> str:
    with pytest.raises(TwinStoreError) as error:
        open_store(store, **kwargs)
    message = str(error.value)
    assert message.startswith(f"twins store {store.resolve()}: ")
    return message


def _edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def _rewrite_pairs_csv(store: Path, edit) -> None:
    with (store / "pairs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    edit(rows)
    with (store / "pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# Format 2 ------------------------------------------------------------------------------------


def test_a_valid_store_opens_with_its_tables(store: Path) -> None:
    twin_store = open_store(store, verify=True)
    assert len(twin_store) == 8 and twin_store.format_version == 2
    first, end = twin_store.frame_patches(np.arange(8))
    pairs = twin_store.pairs
    assert np.all((first <= pairs.anchor) & (pairs.anchor < end) & (first <= pairs.twin))
    assert twin_store.read_patch(0)[:4].tobytes() == b"\x89PNG"
    assert isinstance(twin_store.pairs.anchor, np.memmap)  # shared pages, not a copy per process


def test_a_missing_directory_or_manifest_is_refused(tmp_path: Path, store: Path) -> None:
    assert "is not a directory" in _refusal(tmp_path / "nowhere")
    (store / "manifest.json").unlink()
    assert "manifest.json is missing (the store is incomplete" in _refusal(store)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("counts"), "manifest.json is missing key 'counts'"),
        (lambda m: m.update(complete=False), "complete: False (the build did not finish)"),
        (lambda m: m.update(format_version=99), "format_version 99"),
        (lambda m: m.update(shards=[]), "'shards' must be a non-empty list"),
        (lambda m: m["shards"][0].update(name="../../x.tar"), "is not a shard file name"),
        (lambda m: m["params"].update(grid=-3), "params.grid must be a positive integer"),
        (lambda m: m["counts"].update(pairs=7), "counts.pairs is 7 but the index has 8"),
    ],
)
def test_a_bad_manifest_is_refused_by_key(store: Path, edit, message: str) -> None:
    _edit_json(store / "manifest.json", edit)
    assert message in _refusal(store)


def test_a_manifest_of_binary_garbage_is_refused(store: Path) -> None:
    (store / "manifest.json").write_bytes(bytes(range(256)))
    assert "manifest.json is not valid JSON" in _refusal(store)


def test_a_truncated_or_missing_shard_is_refused(store: Path) -> None:
    shard = store / "shards" / "000000.tar"
    size = shard.stat().st_size
    with shard.open("r+b") as handle:
        handle.truncate(size - 100)
    assert f"shards/000000.tar is truncated: {size - 100} bytes, the manifest says {size}" in (
        _refusal(store)
    )
    shard.unlink()
    assert "shards/000000.tar is missing" in _refusal(store)


def test_a_shard_from_another_store_is_refused(
    tmp_path: Path, store: Path, make_twin_store
) -> None:
    other = make_twin_store(tmp_path / "other", n_pairs=8, size=8)
    shutil.copyfile(other / "shards" / "000000.tar", store / "shards" / "000000.tar")
    assert "shards/000000.tar comes from another store" in _refusal(store)


def test_a_damaged_shard_of_the_right_size_fails_its_checksum(store: Path) -> None:
    shard = store / "shards" / "000000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    open_store(store)  # the cheap checks cannot see it ...
    assert "shards/000000.tar is damaged: CRC-32" in _refusal(
        store, verify=True
    )  # ... the CRC does


@pytest.mark.parametrize(
    ("column", "edit", "message"),
    [
        ("patches.offset", lambda a: a.__setitem__(-1, 10**9), "are not inside shard 000000.tar"),
        ("patches.size", lambda a: a.__setitem__(0, 0), "index/patches.offset.npy row 0"),
        ("patches.shard", lambda a: a.__setitem__(2, 5), "shard 5 is not one of the 1 shards"),
        ("patches.row", lambda a: a.__setitem__(1, -5), "grid row -5 is outside the 4 x 4 grid"),
        ("patches.col", lambda a: a.__setitem__(1, 999), "grid col 999 is outside the 4 x 4 grid"),
        (
            "pairs.twin",
            lambda a: a.__setitem__(3, 10**6),
            "is not a patch of the pair's crop frame",
        ),
        ("pairs.frame", lambda a: a.__setitem__(0, -1), "crop frame -1 does not exist"),
        ("frames.video", lambda a: a.__setitem__(0, 7), "video 7 is not one of the 2 videos"),
    ],
)
def test_an_index_that_points_anywhere_else_is_refused(
    store: Path, column: str, edit, message: str
) -> None:
    path = store / "index" / f"{column}.npy"
    values = np.load(path)
    edit(values)
    np.save(path, values)
    message_seen = _refusal(store)
    assert message in message_seen and "row" in message_seen


def test_an_index_of_the_wrong_length_or_dtype_or_garbage_is_refused(store: Path) -> None:
    path = store / "index" / "pairs.anchor.npy"
    original = np.load(path)
    np.save(path, original[:-1])
    assert "index/pairs.anchor.npy has 7 rows but the pairs table has 8" in _refusal(store)
    np.save(path, original.astype(np.float32))
    assert "holds float32 (8,); expected int64" in _refusal(store)
    path.write_bytes(b"\x00garbage")
    assert "index/pairs.anchor.npy is not a readable .npy file" in _refusal(store)


def test_duplicate_pairs_are_refused(store: Path) -> None:
    for column in ("frame", "anchor", "twin"):
        path = store / "index" / f"pairs.{column}.npy"
        values = np.load(path)
        values[1] = values[0]
        np.save(path, values)
    assert "pairs must be sorted by crop frame and anchor, each once" in _refusal(store)


def test_links_out_of_the_store_are_refused(tmp_path: Path, store: Path) -> None:
    outside = tmp_path / "outside"
    shutil.move(store / "index", outside)
    (store / "index").symlink_to(outside, target_is_directory=True)
    assert f"is a link to {outside.resolve()}" in _refusal(store)


def test_unsafe_video_ids_are_refused(store: Path) -> None:
    _edit_json(store / "videos.json", lambda records: records[0].update(id="../../etc"))
    with pytest.raises(TwinStoreError, match=r"not plain file names: '../../etc'"):
        len(open_store(store).videos)


def test_a_writer_refuses_a_regular_file_as_its_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(TwinStoreError, match="exists and is not a directory"):
        StoreWriter(tmp_path / "file", {"grid": 4})


@pytest.mark.parametrize("loader", ["torch", "dali"])
def test_a_patch_that_does_not_decode_is_named_with_its_pair(store: Path, loader: str) -> None:
    twin_store = open_store(store)
    offset = int(twin_store.patches.offset[0])
    shard = store / "shards" / "000000.tar"
    data = bytearray(shard.read_bytes())
    data[offset : offset + 40] = bytes(40)  # same size: only decoding can tell
    shard.write_bytes(bytes(data))
    cfg = OmegaConf.create(
        {
            "twins": str(store),
            "batch_size": 8,
            "loader": loader,
            "num_workers": 0 if loader == "torch" else 1,
            "image_size": 8,
            "dali_device": "cpu",
        }
    )
    with pytest.raises(
        TwinStoreError, match=r"pair \d+: patch shards/000000.tar/clip\S+ cannot be decoded"
    ):
        for _ in build_twin_loader(cfg):
            pass


def test_inspect_checks_what_training_checks(store: Path, capsys) -> None:
    shard = store / "shards" / "000000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert twin_builder(["inspect", str(store)]) == 1
    assert "is damaged: CRC-32" in capsys.readouterr().err
    (store / "manifest.json").write_text("{not json")
    assert twin_builder(["inspect", str(store)]) == 1
    assert "manifest.json is not valid JSON" in capsys.readouterr().err


# Format 1 ------------------------------------------------------------------------------------


def test_a_format_1_store_opens_and_reads_its_files(format_1_store: Path) -> None:
    twin_store = open_store(format_1_store)
    assert twin_store.format_version == 1 and len(twin_store) == 48
    assert twin_store.patch_name(0).startswith("patches/")
    assert twin_store.read_patch(0)[:4].tobytes() == b"\x89PNG"


def test_a_format_1_pairs_csv_of_binary_garbage_is_refused(format_1_store: Path) -> None:
    (format_1_store / "pairs.csv").write_bytes(bytes(range(128, 256)) * 4)
    assert "pairs.csv is not a UTF-8 CSV file" in _refusal(format_1_store)


@pytest.mark.parametrize("value", ["-5", "999"])
def test_format_1_grid_cells_outside_the_grid_are_refused(format_1_store: Path, value: str) -> None:
    _rewrite_pairs_csv(format_1_store, lambda rows: rows[2].update(twin_col=value))
    assert f"pairs.csv row 2: twin_col {value} is outside the 4 x 4 grid" in _refusal(
        format_1_store
    )


def test_a_truncated_format_1_patch_is_refused_by_name(format_1_store: Path) -> None:
    victim = format_1_store / open_store(format_1_store).patch_name(3)
    victim.write_bytes(victim.read_bytes()[:-30])
    message = _refusal(format_1_store)
    assert "1 patch file(s) are not whole PNG images (truncated?)" in message
    assert victim.relative_to(format_1_store).as_posix() in message


def test_format_1_patch_links_out_of_the_store_are_refused(
    tmp_path: Path, format_1_store: Path
) -> None:
    victim = format_1_store / open_store(format_1_store).patch_name(0)
    victim.unlink()
    victim.symlink_to("/etc/passwd")
    assert "is a link to /etc/passwd, outside the store" in _refusal(format_1_store)


def test_a_format_1_folder_linked_out_of_the_store_is_refused(
    tmp_path: Path, format_1_store: Path
) -> None:
    folder = (format_1_store / open_store(format_1_store).patch_name(0)).parent
    outside = tmp_path / "elsewhere"
    shutil.move(folder, outside)
    os.symlink(outside, folder, target_is_directory=True)
    assert f"is a link to {outside.resolve()}" in _refusal(format_1_store)


def test_format_1_duplicate_ids_missing_files_and_columns_are_refused(
    format_1_store: Path,
) -> None:
    _rewrite_pairs_csv(format_1_store, lambda rows: rows[1].update(pair_id=rows[0]["pair_id"]))
    assert "appears twice (rows 0 and 1)" in _refusal(format_1_store)
    _rewrite_pairs_csv(format_1_store, lambda rows: rows[1].update(pair_id="unique"))
    victim = format_1_store / open_store(format_1_store).patch_name(5)
    victim.unlink()
    assert "1 patch file(s) referenced by pairs.csv do not exist" in _refusal(format_1_store)
    text = (format_1_store / "pairs.csv").read_text()
    (format_1_store / "pairs.csv").write_text(text.replace("twin_file", "twin_path", 1))
    assert "pairs.csv is missing column 'twin_file'" in _refusal(format_1_store)


def test_format_1_unsafe_video_ids_are_refused(format_1_store: Path) -> None:
    _edit_json(format_1_store / "manifest.json", lambda m: m["videos"][0].update(id="../../victim"))
    assert "not plain file names: '../../victim'" in _refusal(format_1_store)
