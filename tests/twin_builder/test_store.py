"""Building stores: complete stores, interruption and resume, parameter guard, shards and merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from twin_builder.build import Shard, build_store
from twin_builder.pipeline import BuildParams, process_video
from twin_builder.video import describe_source
from twin_store import ALL_COLUMNS, StoreWriter, TwinStoreError, merge_stores, open_store
from twin_store.format import MANIFEST_REQUIRED_KEYS, PATCHES_DIR
from twin_store.shards import read_journal


@pytest.fixture(scope="module")
def three_clips(synthetic_clip):
    """Three fast clips with distinct content."""
    return [synthetic_clip(seed=seed, grid=4, frames=48, cell=24)[0] for seed in (1, 2, 5)]


def _commits(store: Path) -> dict[str, dict]:
    """The journal line of every committed video, by video id."""
    return {
        entry["video"]: entry
        for journal in sorted((store / "shards").glob("*.log"))
        for entry in read_journal(journal)
    }


def _pairs_without_files(store: Path) -> list[dict[str, str]]:
    """The store's ``pairs.csv`` rows, patch locations left out (they name shard files)."""
    return [
        {k: v for k, v in row.items() if not k.endswith("_file")}
        for row in open_store(store).rows()
    ]


def _patch_bytes(store: Path) -> list[bytes]:
    twin_store = open_store(store)
    return [
        twin_store.read_patch(int(patch)).tobytes()
        for pair in range(len(twin_store))
        for patch in (twin_store.pairs.anchor[pair], twin_store.pairs.twin[pair])
    ]


def test_patch_images_decode_to_exactly_the_pipelines_crops(tmp_path, fast_clip, fast_params):
    build_store([fast_clip], tmp_path / "store", fast_params, progress=False)
    twin_store = open_store(tmp_path / "store")
    crops = process_video(describe_source(fast_clip), fast_params).patches
    assert len(twin_store.patches.row) == len(crops)
    for patch in range(len(twin_store.patches.row)):
        member = twin_store.patch_name(patch).split("/", 2)[2]
        image = cv2.imdecode(twin_store.read_patch(patch), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(image, crops[f"{PATCHES_DIR}/{member}"])


def test_a_build_writes_a_complete_store_of_tar_shards(tmp_path, three_clips, fast_params):
    report = build_store(three_clips, tmp_path / "store", fast_params, progress=False)
    twin_store = open_store(tmp_path / "store", verify=True)
    manifest = twin_store.manifest
    assert set(MANIFEST_REQUIRED_KEYS) <= manifest.keys() and manifest["format_version"] == 2
    assert manifest["params"] == fast_params.to_dict() and manifest["selection"] == "mi"
    assert [v["status"] for v in twin_store.videos] == ["built"] * 3
    assert all(len(v["sha256"]) == 64 and v["size"] > 0 for v in twin_store.videos)
    rows = list(twin_store.rows())
    assert len(rows) == manifest["counts"]["pairs"] == sum(v["pairs"] for v in twin_store.videos)
    assert tuple(rows[0]) == ALL_COLUMNS
    assert len({row["pair_id"] for row in rows}) == len(rows)
    for patch in range(len(twin_store.patches.row)):
        image = cv2.imdecode(twin_store.read_patch(patch), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (16, 16, 3)
    # Shards are plain tar files: every patch is a member, named as its pairs.csv location says.
    with tarfile.open(tmp_path / "store" / "shards" / "000000.tar") as archive:
        members = set(archive.getnames())
    assert {row["anchor_file"].split("/", 2)[2] for row in rows} <= members
    assert report.manifest == manifest
    analysis = twin_store.read_analysis(rows[0]["video"])
    assert analysis["mi"].shape == (2, 16, 16) and analysis["thumbnails"].shape[0] == 2
    assert analysis["textured"].shape == analysis["tracked"].shape == (2, 16)


def test_a_rerun_resumes_without_redoing_finished_videos(tmp_path, three_clips, fast_params):
    store = tmp_path / "store"
    build_store(three_clips[:2], store, fast_params, progress=False)
    before = _commits(store)
    report = build_store(three_clips, store, fast_params, progress=False)
    assert sorted(report.resumed) == sorted(before)
    assert [r["id"] for r in report.built] == [describe_source(three_clips[2]).video_id]
    assert {k: v for k, v in _commits(store).items() if k in before} == before
    assert report.manifest["counts"]["videos_built"] == 3


def test_an_interrupted_commit_is_cut_off_redone_and_never_read_as_complete(
    tmp_path, three_clips, fast_params
):
    store = tmp_path / "store"
    build_store(three_clips, store, fast_params, progress=False)
    reference = _pairs_without_files(store), _patch_bytes(store)
    # Interrupted state: no manifest, the last video's journal line gone (its members written but
    # never committed), half a member and a torn journal line after it.
    (store / "manifest.json").unlink()
    journal = store / "shards" / "000000.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    interrupted = json.loads(lines[-1])["video"]
    journal.write_bytes(b"".join(lines[:-1]) + b'{"video": "torn')
    with (store / "shards" / "000000.tar").open("ab") as shard:
        shard.write(b"half a member")
    with pytest.raises(TwinStoreError, match="manifest.json is missing"):
        open_store(store)
    report = build_store(three_clips, store, fast_params, progress=False)
    assert [r["id"] for r in report.built] == [interrupted]
    assert (_pairs_without_files(store), _patch_bytes(store)) == reference
    open_store(store, verify=True)


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
    while not any(v.startswith("a_first") for v in _commits(store)) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if (store / "manifest.json").exists():
        pytest.skip("the build finished before it could be killed")
    first_done = _commits(store)
    assert list(first_done) and all(name.startswith("a_first") for name in first_done)
    report = build_store([inputs], store, fast_params, progress=False)
    assert report.resumed == list(first_done)
    assert [r["name"] for r in report.built] == ["z_slow.mp4"]
    assert open_store(store, verify=True).manifest["counts"]["videos_built"] == 2


def test_other_parameters_are_refused_with_the_differing_keys(tmp_path, fast_clip, fast_params):
    store = tmp_path / "store"
    build_store([fast_clip], store, fast_params, progress=False)
    other = BuildParams(**{**fast_params.to_dict(), "k": 4})
    with pytest.raises(TwinStoreError, match=r"other parameters \(k: store 3 vs now 4\)"):
        build_store([fast_clip], store, other, progress=False)


def test_a_store_with_no_built_video_pins_no_parameters(tmp_path, fast_clip, fast_params):
    store = tmp_path / "store"
    too_long = BuildParams(**{**fast_params.to_dict(), "window": 4000})
    report = build_store([fast_clip], store, too_long, progress=False)
    assert report.manifest is None and [r["status"] for r in report.skipped] == ["skipped"]
    report = build_store([fast_clip], store, fast_params, progress=False)
    assert [r["status"] for r in report.built] == ["built"] and report.manifest is not None


def test_a_non_store_directory_is_refused(tmp_path, fast_params):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(TwinStoreError, match="not empty and not a twin store"):
        StoreWriter(tmp_path / "photos", fast_params.to_dict())


def test_same_inputs_and_seed_give_identical_pairs(tmp_path, three_clips, fast_params):
    random_params = BuildParams(**{**fast_params.to_dict(), "selection": "random"})
    for name, params in (("mi", fast_params), ("random", random_params)):
        build_store(three_clips, tmp_path / f"{name}1", params, progress=False)
        build_store(three_clips[::-1], tmp_path / f"{name}2", params, workers=2, progress=False)
        assert list(open_store(tmp_path / f"{name}1").rows()) == list(
            open_store(tmp_path / f"{name}2").rows()
        )
        assert _patch_bytes(tmp_path / f"{name}1") == _patch_bytes(tmp_path / f"{name}2")
    reseeded = BuildParams(**{**random_params.to_dict(), "seed": 1})
    build_store(three_clips, tmp_path / "random3", reseeded, progress=False)
    assert _pairs_without_files(tmp_path / "random1") != _pairs_without_files(tmp_path / "random3")


def test_small_shards_split_a_store_into_several_files(tmp_path, three_clips, fast_params):
    build_store(three_clips, tmp_path / "one", fast_params, progress=False)
    build_store(three_clips, tmp_path / "many", fast_params, progress=False, shard_bytes=1)
    shards = sorted((tmp_path / "many" / "shards").glob("*.tar"))
    assert len(shards) == 3  # a shard is closed after each video once it holds shard_bytes
    assert _pairs_without_files(tmp_path / "many") == _pairs_without_files(tmp_path / "one")
    assert _patch_bytes(tmp_path / "many") == _patch_bytes(tmp_path / "one")


def test_shards_split_the_videos_and_merge_into_the_full_store(tmp_path, three_clips, fast_params):
    build_store(three_clips, tmp_path / "full", fast_params, progress=False)
    parts = [tmp_path / "part0", tmp_path / "part1"]
    reports = [
        build_store(three_clips, path, fast_params, shard=Shard(i, 2), progress=False)
        for i, path in enumerate(parts)
    ]
    built = [sorted(r["id"] for r in report.built) for report in reports]
    assert sorted(built[0] + built[1]) == sorted(
        v["id"] for v in open_store(tmp_path / "full").videos
    )
    present = [path for path in parts if (path / "manifest.json").exists()]
    manifest = merge_stores(present, tmp_path / "merged")
    assert _pairs_without_files(tmp_path / "merged") == _pairs_without_files(tmp_path / "full")
    assert _patch_bytes(tmp_path / "merged") == _patch_bytes(tmp_path / "full")
    full_counts = open_store(tmp_path / "full").manifest["counts"]
    assert {k: v for k, v in manifest["counts"].items() if k != "shards"} == {
        k: v for k, v in full_counts.items() if k != "shards"
    }
    # Shards are linked, not copied or re-encoded.
    merged_shards = sorted((tmp_path / "merged" / "shards").glob("*.tar"))
    assert all(shard.stat().st_nlink == 2 for shard in merged_shards)


def test_an_interrupted_merge_resumes_without_linking_twice(tmp_path, three_clips, fast_params):
    parts = [tmp_path / "part0", tmp_path / "part1"]
    for i, path in enumerate(parts):
        build_store(three_clips, path, fast_params, shard=Shard(i, 2), progress=False)
    present = [path for path in parts if (path / "manifest.json").exists()]
    merge_stores(present, tmp_path / "merged")
    (tmp_path / "merged" / "manifest.json").unlink()  # as if killed before the manifest
    manifest = merge_stores(present, tmp_path / "merged")
    assert manifest["counts"]["shards"] == len(present)
    assert len(open_store(tmp_path / "merged", verify=True)) == sum(
        len(open_store(path)) for path in present
    )


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
    with pytest.raises(TwinStoreError, match="seed: store 0 vs now 9"):
        merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")


def test_merge_refuses_an_incomplete_store(tmp_path, fast_clip, fast_params):
    build_store([fast_clip], tmp_path / "a", fast_params, progress=False)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(TwinStoreError, match="complete: False"):
        merge_stores([tmp_path / "a"], tmp_path / "merged")


def test_merge_never_turns_a_stored_video_id_into_a_path(tmp_path, fast_clip, fast_params):
    """A crafted ``../../victim`` id is refused before anything is written or deleted."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    store = tmp_path / "deep" / "er" / "a"
    build_store([fast_clip], store, fast_params, progress=False)
    records = json.loads((store / "videos.json").read_text())
    records[0]["id"] = "../../victim"
    (store / "videos.json").write_text(json.dumps(records))
    with pytest.raises(TwinStoreError, match="not plain file names: '../../victim'"):
        merge_stores([store], tmp_path / "deep" / "er" / "merged")
    assert (victim / "precious.txt").read_text() == "keep me"


def test_shard_text_is_validated():
    assert Shard.parse("1/3") == Shard(1, 3)
    for text in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="expected i/n"):
            Shard.parse(text)


def _status(pid: int | str) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    return [
        int(path.name)
        for path in Path("/proc").glob("[0-9]*")
        if (status := _status(path.name)).get("PPid", "").strip() == str(pid)
        and not status["State"].startswith("Z")
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_workers_exit_with_a_killed_build(tmp_path, sample_video):
    videos = [str(sample_video(name)) for name in ("bigbuckbunny.mp4", "bikes.mp4")]
    out = ["--out", str(tmp_path / "s"), "--workers", "2", "--quiet"]
    command = [sys.executable, "-m", "twin_builder.cli", "build", *videos, *out]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(workers := _children(process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # two workers and the resource tracker
    assert len(workers) >= 2
    time.sleep(1.0)  # let the workers get into their videos
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(_status(pid) and not _status(pid)["State"].startswith("Z") for pid in workers):
        assert time.monotonic() < deadline, "workers outlived the killed build"
        time.sleep(0.1)
