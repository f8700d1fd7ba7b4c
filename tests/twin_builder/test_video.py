"""Video input: discovery, decoding, shots, windows, and the bad inputs that are refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from twin_builder.synthetic import make_twin_video, write_video
from twin_builder.video import (
    InputDiscoveryError,
    SkipReason,
    VideoInputError,
    check_content,
    decode_video,
    describe_source,
    detect_shots,
    discover_inputs,
    window_starts,
)


def test_a_video_file_decodes_to_colour_and_grey_frames(fast_clip):
    video = decode_video(describe_source(fast_clip), max_side=None)
    assert len(video.frames) == len(video.grays) == 48
    assert video.frames[0].shape == (96, 96, 3) and video.grays[0].shape == (96, 96)
    assert video.scale == 1.0 and video.original_size == video.size == (96, 96)


def test_downscaling_bounds_the_longest_side(sample_video):
    video = decode_video(describe_source(sample_video("carphone_pristine.mp4")), max_side=88)
    assert video.frames[0].shape[:2] == (72, 88) and video.size == (88, 72)
    assert video.original_size == (176, 144)
    assert video.scale == pytest.approx(0.5)


def test_a_frame_folder_decodes_its_images_in_name_order(frame_folder):
    source = describe_source(frame_folder)
    assert source.is_frame_folder
    video = decode_video(source, max_side=None)
    expected = make_twin_video(seed=3, grid=4, frames=48, cell=24).frames
    assert len(video.frames) == 48
    # PNG is lossless: frame order and content survive.
    np.testing.assert_array_equal(video.frames[5], expected[5])


def test_discovery_finds_videos_and_frame_folders_inside_folders(tmp_path, fast_clip, frame_folder):
    nested = tmp_path / "clips" / "nested"
    nested.mkdir(parents=True)
    shutil.copy(fast_clip, nested / "a.avi")
    shutil.copytree(frame_folder, tmp_path / "clips" / "frames")
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    sources = discover_inputs([tmp_path / "clips"])
    assert sorted(s.path.name for s in sources) == ["a.avi", "frames"]
    assert [s.is_frame_folder for s in sources if s.path.name == "frames"] == [True]


def test_discovery_removes_duplicate_content(tmp_path, fast_clip):
    shutil.copy(fast_clip, tmp_path / "copy.avi")
    sources = discover_inputs([fast_clip, fast_clip, tmp_path / "copy.avi"])
    assert len(sources) == 1


def test_discovery_names_a_missing_input(tmp_path):
    with pytest.raises(InputDiscoveryError, match="nothing_here.mp4: no such file"):
        discover_inputs([tmp_path / "nothing_here.mp4"])


def test_discovery_refuses_a_folder_without_videos(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputDiscoveryError, match="holds no frames and no video"):
        discover_inputs([tmp_path])


def test_video_id_is_stem_and_content_hash(fast_clip):
    source = describe_source(fast_clip)
    assert source.video_id == f"{fast_clip.stem}-{source.sha256[:8]}"
    assert source.size_bytes == fast_clip.stat().st_size


def test_shot_cuts_split_a_video_at_the_cut():
    first = make_twin_video(seed=5, grid=4, frames=30, cell=24).frames
    second = make_twin_video(seed=6, grid=4, frames=20, cell=24).frames
    grays = np.concatenate([first, second]).mean(axis=-1).astype(np.uint8)
    assert detect_shots(grays) == [(0, 30), (30, 50)]


def test_real_scene_cuts_are_found_in_bikes(sample_video):
    video = decode_video(describe_source(sample_video("bikes.mp4")), max_side=320)
    shots = detect_shots(video.grays)
    assert len(shots) >= 4
    assert shots[0][0] == 0 and shots[-1][1] == 250


def test_windows_stay_inside_shots_with_the_stride():
    assert window_starts([(0, 30), (30, 100)], window=20, stride=10) == [0, 10, 30, 40, 50, 60, 70, 80]
    assert window_starts([(0, 19)], window=20, stride=20) == []


@pytest.mark.parametrize(
    "reason", ["corrupt", "empty", "one_frame", "static", "all_black", "too_few_frames", "unreadable"]
)
def test_each_bad_video_is_refused_with_its_file_and_reason(bad_videos, reason):
    if reason not in bad_videos:
        pytest.skip("no way to make an unreadable file here")
    path = bad_videos[reason]
    with pytest.raises(VideoInputError) as caught:
        source = describe_source(path)
        video = decode_video(source, max_side=None)
        check_content(source, video, 24, window_starts(detect_shots(video.grays), 24, 24))
    assert caught.value.reason is SkipReason(reason)
    assert path.name in str(caught.value)


def test_a_good_clip_passes_the_content_checks(fast_clip):
    source = describe_source(fast_clip)
    video = decode_video(source, max_side=None)
    check_content(source, video, 24, window_starts(detect_shots(video.grays), 24, 24))


def test_an_mp4_written_by_opencv_decodes(tmp_path):
    frames = make_twin_video(seed=7, grid=4, frames=12, cell=24).frames
    video = decode_video(describe_source(write_video(frames, tmp_path / "clip.mp4")), max_side=None)
    assert len(video.frames) == 12 and video.frames[0].shape == (96, 96, 3)
