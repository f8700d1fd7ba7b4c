"""Store writing: complete stores, interruption and resume, parameter guard, shards and merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from twin_builder.build import Shard, build_store
from twin_builder.pipeline import BuildParams
from twin_builder.store import StoreError, TwinStoreWriter, merge_stores, read_manifest
from twin_builder.store_format import ALL_COLUMNS, MANIFEST_REQUIRED_KEYS, read_pairs_csv
from twin_builder.video import describe_source


@pytest.fixture(scope="module")
def three_clips(synthetic_clip):
    """Three fast clips with distinct content."""
    return [synthetic_clip(seed=seed, grid=4, frames=48, cell=24)[0] for seed in (1, 2, 5)]


def _record_times(store):
    return {
        path.parent.name: path.stat().st_mtime_ns
        for path in (store / "videos").glob("*/video.json")
    }


def test_a_build_writes_a_complete_store_whose_files_all_exist(tmp_path, three_clips, fast_params):
    report = build_store(three_clips, tmp_path / "store", fast_params, progress=False)
    store = tmp_path / "store"
    manifest = read_manifest(store)
    assert set(MANIFEST_REQUIRED_KEYS) <= manifest.keys()
    assert manifest["params"] == fast_params.to_dict() and manifest["selection"] == "mi"
    assert [v["status"] for v in manifest["videos"]] == ["built"] * 3
    assert all(len(v["sha256"]) == 64 and v["size"] > 0 for v in manifest["videos"])
    rows = read_pairs_csv(store / "pairs.csv")
    assert (
        len(rows)
        == manifest["counts"]["pairs"]
        == sum(len(r) for r in [read_pairs_csv(p) for p in (store / "videos").glob("*/pairs.csv")])
    )
    assert tuple(rows[0]) == ALL_COLUMNS
    assert len({row["pair_id"] for row in rows}) == len(rows)
    for row in rows:
        for column in ("anchor_file", "twin_file"):
            image = cv2.imread(str(store / row[column]))
            assert image is not None and image.shape == (16, 16, 3)
    assert report.manifest == manifest
    with np.load(store / "videos" / rows[0]["video"] / "analysis.npz") as analysis:
        assert analysis["mi"].shape == (2, 16, 16) and analysis["thumbnails"].shape[0] == 2
        assert (
            analysis["textured"].shape
            == analysis["tracked"].shape
            == analysis["valid"].shape
            == (2, 16)
        )


def test_a_rerun_resumes_without_redoing_finished_videos(tmp_path, three_clips, fast_params):
    store = tmp_path / "store"
    build_store(three_clips[:2], store, fast_params, progress=False)
    before = _record_times(store)
    report = build_store(three_clips, store, fast_params, progress=False)
    assert sorted(report.resumed) == sorted(before)
    assert [r["id"] for r in report.built] == [describe_source(three_clips[2]).video_id]
    assert {k: v for k, v in _record_times(store).items() if k in before} == before
    assert report.manifest["counts"]["videos_built"] == 3


def test_leftovers_of_an_interrupted_run_are_redone_and_never_read_as_complete(
    tmp_path, three_clips, fast_params
):
    store = tmp_path / "store"
    build_store(three_clips, store, fast_params, progress=False)
    reference = (store / "pairs.csv").read_bytes()
    committed = _record_times(store)
    # Interrupted state: no manifest, a half-written staging dir, a video whose commit never finished.
    interrupted_id = describe_source(three_clips[1]).video_id
    (store / "manifest.json").unlink()
    (store / ".staging" / "junk" / "patches").mkdir(parents=True)
    (store / "videos" / interrupted_id / "video.json").unlink()
    with pytest.raises(StoreError, match="no manifest.json"):
        read_manifest(store)
    report = build_store(three_clips, store, fast_params, progress=False)
    assert [r["id"] for r in report.built] == [interrupted_id]
    assert not (store / ".staging").exists() or not any((store / ".staging").iterdir())
    assert (store / "pairs.csv").read_bytes() == reference
    assert all(_record_times(store)[k] == v for k, v in committed.items() if k != interrupted_id)


def test_a_build_killed_mid_way_resumes(tmp_path, fast_clip, sample_video, fast_params):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(fast_clip, inputs / "a_first.avi")
    shutil.copy(sample_video("bigbuckbunny.mp4"), inputs / "z_slow.mp4")
    store = tmp_path / "store"
    command = [
        sys.executable,
        "-m",
        "twin_builder.cli",
        "build",
        str(inputs),
        "--out",
        str(store),
        "--grid",
        "4",
        "--window",
        "24",
        "--max-side",
        "0",
        "--crop-size",
        "16",
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((store / "videos").glob("a_first-*/video.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if (store / "manifest.json").exists():
        pytest.skip("the build finished before it could be killed")
    first_done = _record_times(store)
    assert list(first_done) and all(name.startswith("a_first") for name in first_done)
    report = build_store([inputs], store, fast_params, progress=False)
    assert report.resumed == list(first_done)
    assert [r["name"] for r in report.built] == ["z_slow.mp4"]
    assert read_manifest(store)["counts"]["videos_built"] == 2


def test_other_parameters_are_refused_with_the_differing_keys(tmp_path, fast_clip, fast_params):
    store = tmp_path / "store"
    build_store([fast_clip], store, fast_params, progress=False)
    other = BuildParams(**{**fast_params.to_dict(), "k": 4})
    with pytest.raises(StoreError, match=r"other parameters \(k: store 3 vs now 4\)"):
        build_store([fast_clip], store, other, progress=False)


def test_a_non_store_directory_is_refused(tmp_path, fast_params):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="not empty and not a twin store"):
        TwinStoreWriter(tmp_path / "photos", fast_params.to_dict())


def test_same_inputs_and_seed_give_byte_identical_pairs(tmp_path, three_clips, fast_params):
    random_params = BuildParams(**{**fast_params.to_dict(), "selection": "random"})
    for name, params in (("mi", fast_params), ("random", random_params)):
        build_store(three_clips, tmp_path / f"{name}1", params, progress=False)
        build_store(three_clips[::-1], tmp_path / f"{name}2", params, workers=2, progress=False)
        assert (tmp_path / f"{name}1" / "pairs.csv").read_bytes() == (
            tmp_path / f"{name}2" / "pairs.csv"
        ).read_bytes()
    reseeded = BuildParams(**{**random_params.to_dict(), "seed": 1})
    build_store(three_clips, tmp_path / "random3", reseeded, progress=False)
    assert (tmp_path / "random1" / "pairs.csv").read_bytes() != (
        tmp_path / "random3" / "pairs.csv"
    ).read_bytes()


def test_shards_split_the_videos_and_merge_into_the_full_store(tmp_path, three_clips, fast_params):
    build_store(three_clips, tmp_path / "full", fast_params, progress=False)
    shards = [tmp_path / "part0", tmp_path / "part1"]
    reports = [
        build_store(three_clips, path, fast_params, shard=Shard(i, 2), progress=False)
        for i, path in enumerate(shards)
    ]
    built = [sorted(r["id"] for r in report.built) for report in reports]
    assert sorted(built[0] + built[1]) == sorted(
        v["id"] for v in read_manifest(tmp_path / "full")["videos"]
    )
    present = [path for path in shards if (path / "manifest.json").exists()]
    manifest = merge_stores(present, tmp_path / "merged")
    assert (tmp_path / "merged" / "pairs.csv").read_bytes() == (
        tmp_path / "full" / "pairs.csv"
    ).read_bytes()
    assert manifest["counts"] == read_manifest(tmp_path / "full")["counts"]
    rows = read_pairs_csv(tmp_path / "merged" / "pairs.csv")
    assert all((tmp_path / "merged" / row["anchor_file"]).is_file() for row in rows)


def test_merge_refuses_stores_with_other_parameters(
    tmp_path, fast_clip, second_fast_clip, fast_params
):
    build_store([fast_clip], tmp_path / "a", fast_params, progress=False)
    build_store(
        [second_fast_clip],
        tmp_path / "b",
        BuildParams(**{**fast_params.to_dict(), "seed": 9}),
        progress=False,
    )
    with pytest.raises(StoreError, match="differ: seed"):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")


def test_merge_refuses_an_incomplete_store(tmp_path, fast_clip, fast_params):
    build_store([fast_clip], tmp_path / "a", fast_params, progress=False)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(StoreError, match="not complete"):
        merge_stores([tmp_path / "a"], tmp_path / "merged")


def test_shard_text_is_validated():
    assert Shard.parse("1/3") == Shard(1, 3)
    for text in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="expected i/n"):
            Shard.parse(text)
