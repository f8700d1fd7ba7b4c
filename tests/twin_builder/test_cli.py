"""The ``twin-builder`` command line: build (with bad inputs), inspect, show, merge, export,
convert, exit codes."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import pytest

from twin_builder.cli import main
from twin_store import open_store

FAST = ["--grid", "4", "--window", "24", "--max-side", "0", "--crop-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory, sample_video, bad_videos):
    """A store built by the CLI from a real sample video plus every bad input, with its stderr."""
    inputs = tmp_path_factory.mktemp("inputs")
    shutil.copy(sample_video("carphone_pristine.mp4"), inputs / "carphone.mp4")
    for path in bad_videos.values():
        (inputs / path.name).symlink_to(path)
    store = tmp_path_factory.mktemp("stores") / "sample"
    status = main(
        [
            "build",
            str(inputs),
            "--out",
            str(store),
            "--grid",
            "6",
            "--window",
            "40",
            "--max-side",
            "160",
            "--quiet",
        ]
    )
    return store, status


def test_build_processes_the_good_video_and_reports_every_bad_one(sample_store, bad_videos):
    store, status = sample_store
    assert status == 0
    twin_store = open_store(store)
    manifest = twin_store.manifest
    by_name = {record["name"]: record for record in twin_store.videos}
    assert by_name["carphone.mp4"]["status"] == "built" and by_name["carphone.mp4"]["pairs"] > 0
    for reason, path in bad_videos.items():
        assert by_name[path.name]["status"] == "skipped"
        assert by_name[path.name]["skip_reason"] == reason
    assert manifest["counts"]["videos_skipped"] == len(bad_videos)


def test_skipped_videos_are_named_with_their_reason_on_stderr(
    tmp_path, fast_clip, bad_videos, capsys
):
    status = main(
        [
            "build",
            str(fast_clip),
            str(bad_videos["static"]),
            str(bad_videos["corrupt"]),
            "--out",
            str(tmp_path / "s"),
            *FAST,
        ]
    )
    assert status == 0
    error = capsys.readouterr().err
    assert "skipped static.avi: static" in error
    assert "skipped corrupt.mp4: corrupt" in error


def test_every_patch_of_a_real_sample_store_decodes(sample_store):
    twin_store = open_store(sample_store[0], verify=True)
    assert len(twin_store)
    for patch in range(len(twin_store.patches.row)):
        image = cv2.imdecode(twin_store.read_patch(patch), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (64, 64, 3)
    for row in twin_store.rows():
        x0, y0, x1, y1 = map(int, row["anchor_box"].split())
        assert 0 <= x0 < x1 <= 176 and 0 <= y0 < y1 <= 144  # original carphone pixels


def test_export_writes_pairs_csv_and_convert_round_trips_formats(sample_store, tmp_path, capsys):
    store, _ = sample_store
    assert main(["export", str(store), "--out", str(tmp_path / "pairs.csv")]) == 0
    with (tmp_path / "pairs.csv").open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert exported == list(open_store(store).rows())
    assert main(["convert", str(store), "--out", str(tmp_path / "one"), "--to", "1"]) == 0
    assert main(["convert", str(tmp_path / "one"), "--out", str(tmp_path / "two")]) == 0
    loose, packed = open_store(tmp_path / "one"), open_store(tmp_path / "two")
    assert loose.format_version == 1 and packed.format_version == 2
    assert all((tmp_path / "one" / row["anchor_file"]).is_file() for row in loose.rows())
    without_files = [{k: v for k, v in r.items() if not k.endswith("_file")} for r in exported]
    assert [{k: v for k, v in r.items() if not k.endswith("_file")} for r in packed.rows()] == (
        without_files
    )
    assert main(["convert", str(tmp_path / "two"), "--out", str(tmp_path / "three")]) == 1
    assert "is a format-2 store already" in capsys.readouterr().err


def test_inspect_prints_counts_histogram_and_videos(sample_store, bad_videos, capsys):
    store, _ = sample_store
    assert main(["inspect", str(store)]) == 0
    text = capsys.readouterr().out
    assert f"videos: {len(bad_videos) + 1} (1 built, {len(bad_videos)} skipped)" in text
    assert "valid:" in text and "MI of the selected twins" in text and "#" in text
    assert "carphone.mp4" in text and "skipped: static" in text


def test_show_writes_a_png_of_twins_and_the_mi_matrix(sample_store, tmp_path, capsys):
    store, _ = sample_store
    out = tmp_path / "twins.png"
    assert main(["show", str(store), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(out))
    assert image.shape[0] > 400 and image.shape[1] > 800
    assert image.std() > 20  # drawn, not blank


def test_a_frame_folder_builds_and_merge_combines_stores(tmp_path, frame_folder, fast_clip, capsys):
    assert main(["build", str(frame_folder), "--out", str(tmp_path / "a"), *FAST]) == 0
    assert main(["build", str(fast_clip), "--out", str(tmp_path / "b"), *FAST]) == 0
    assert (
        main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")])
        == 0
    )
    merged = open_store(tmp_path / "ab").manifest
    assert merged["counts"]["videos_built"] == 2
    assert merged["counts"]["pairs"] == sum(len(open_store(tmp_path / s)) for s in "ab")


def test_nothing_built_exits_1_and_leaves_no_manifest(tmp_path, bad_videos, capsys):
    status = main(
        [
            "build",
            str(bad_videos["static"]),
            str(bad_videos["all_black"]),
            "--out",
            str(tmp_path / "s"),
            *FAST,
        ]
    )
    assert status == 1
    assert "nothing could be built" in capsys.readouterr().err
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["build", "x.mp4"], "--out"),
        (["build", "x.mp4", "--out", "s", "--shard", "2/2"], "expected i/n"),
        (["build", "x.mp4", "--out", "s", "--grid", "1"], "grid must be >= 2"),
        (["build", "x.mp4", "--out", "s", "--estimator", "gauss"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_usage_exits_2_with_a_message(arguments, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_input_or_store_exits_1_naming_it(tmp_path, capsys):
    assert main(["build", str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "s")]) == 1
    assert "gone.mp4: no such file" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path)]) == 1
    assert "manifest.json is missing" in capsys.readouterr().err


def test_a_depth_provider_named_on_the_command_line_is_used(
    tmp_path, fast_clip, monkeypatch, capsys
):
    (tmp_path / "ramp_depth.py").write_text(
        "import numpy as np\n\n"
        "def make():\n"
        "    return lambda frame: np.indices(frame.shape[:2]).sum(axis=0).astype(np.float32)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    store = tmp_path / "s"
    assert (
        main(
            [
                "build",
                str(fast_clip),
                "--out",
                str(store),
                "--depth-provider",
                "ramp_depth:make",
                *FAST,
            ]
        )
        == 0
    )
    assert open_store(store).manifest["params"]["depth_provider"] == "ramp_depth:make"


def test_a_malformed_depth_provider_is_bad_usage(tmp_path, fast_clip, capsys):
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "build",
                str(fast_clip),
                "--out",
                str(tmp_path / "s"),
                "--depth-provider",
                "no_colon",
                *FAST,
            ]
        )
    assert caught.value.code == 2
    assert "expected 'module:factory'" in capsys.readouterr().err


def test_the_plugin_reads_a_built_store(sample_store):
    sampling = pytest.importorskip("infoaug_plugin.data.sampling")
    twins = open_store(sample_store[0])
    sampling.check_random_twins(twins)  # every crop frame offers a random twin too


def test_a_video_named_with_a_non_utf8_byte_builds_beside_the_others(
    tmp_path, fast_clip, second_fast_clip, capsys
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(fast_clip, inputs / "good.avi")
    shutil.copy(second_fast_clip, inputs / os.fsdecode(b"caf\xe9.avi"))  # Latin-1, not UTF-8
    store = tmp_path / "s"
    assert main(["build", str(inputs), "--out", str(store), *FAST, "--workers", "2"]) == 0
    videos = open_store(store).videos
    assert [record["status"] for record in videos] == ["built", "built"]
    assert all(record["id"].isprintable() for record in videos)
    assert "2 built now" in capsys.readouterr().out


def test_the_builder_never_reads_its_own_output_inside_an_input_folder(
    tmp_path, fast_clip, second_fast_clip, capsys
):
    inputs = tmp_path / "clips"
    inputs.mkdir()
    shutil.copy(fast_clip, inputs / "a.avi")
    shutil.copy(second_fast_clip, inputs / "b.avi")
    store = inputs / "twins"
    command = ["build", str(inputs), "--out", str(store), *FAST]
    assert main(command) == 0
    first = open_store(store)
    # An image inside the store (here the store's own preview) would make it a frame folder.
    assert main(["show", str(store), "--out", str(store / "preview.png")]) == 0
    assert main(command) == 0  # the documented resume: the same command again
    again = open_store(store)
    assert sorted(Path(record["name"]).name for record in again.videos) == ["a.avi", "b.avi"]
    assert again.manifest["counts"] == first.manifest["counts"]
    assert "0 built now, 2 already done, 0 skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--mi-floor", "nan", "expected a finite number, got nan"),
        ("--mi-floor", "-inf", "expected a finite number, got -inf"),
        ("--fb-threshold", "nan", "expected a finite number, got nan"),
        ("--fb-threshold", "-1", "expected a number > 0, got -1"),
        ("--fb-threshold", "0", "expected a number > 0, got 0"),
        ("--cut-threshold", "nan", "expected a finite number, got nan"),
        ("--cut-threshold", "inf", "expected a finite number, got inf"),
        ("--cut-threshold", "-3", "expected a number > 0, got -3"),
        ("--seed", "-1", "expected an integer >= 0, got -1"),
        ("--fb-threshold", "one", "expected a number, got 'one'"),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused_naming_the_flag(
    tmp_path, fast_clip, flag, value, message, capsys
):
    store = tmp_path / "s"
    with pytest.raises(SystemExit) as caught:
        main(["build", str(fast_clip), "--out", str(store), *FAST, f"{flag}={value}"])
    assert caught.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err
    assert not store.exists()


def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, fast_clip, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("not a store")
    assert main(["build", str(fast_clip), "--out", str(taken), *FAST]) == 1
    assert capsys.readouterr().err == f"error: --out {taken} is a file, not a store folder\n"
    assert taken.read_text() == "not a store"
    assert main(["build", str(fast_clip), "--out", str(taken / "twins"), *FAST]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert f"{taken / 'twins'}" in error and "Not a directory" in error


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="no sysfs (Linux) here")
def test_an_out_where_the_file_system_refuses_writing_is_one_line(fast_clip, capsys):
    # sysfs refuses new folders to every user, root included.
    out = Path("/sys/kernel/twins")
    assert main(["build", str(fast_clip), "--out", str(out), *FAST]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert str(out) in error and "not permitted" in error
