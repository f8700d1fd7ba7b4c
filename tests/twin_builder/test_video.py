"""Video input: discovery, decoding, shots, windows, and the bad inputs that are refused."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from twin_builder.synthetic import make_twin_video, write_video
from twin_builder.video import (
    InputDiscoveryError,
    SkipReason,
    VideoInputError,
    VideoReader,
    decode_ahead,
    describe_source,
    discover_inputs,
)


def read_all(path, max_side=None) -> tuple[VideoReader, list[np.ndarray], list[np.ndarray]]:
    """Decodes every frame of a video: the reader (with its statistics), BGR frames, grey frames."""
    reader = VideoReader(describe_source(path), max_side)
    decoded = list(reader.frames())
    return reader, [frame for _, frame, _ in decoded], [gray for _, _, gray in decoded]


def read_windows(path, window: int, stride: int) -> tuple[VideoReader, list[int]]:
    """Reads a video's windows as the pipeline does; returns the reader and the window starts."""
    reader = VideoReader(describe_source(path), None)
    starts = [frames.start for frames in reader.windows(window, stride)]
    return reader, starts


def test_a_video_file_decodes_to_colour_and_grey_frames(fast_clip):
    reader, frames, grays = read_all(fast_clip)
    assert len(frames) == len(grays) == reader.frame_count == 48
    assert frames[0].shape == (96, 96, 3) and grays[0].shape == (96, 96)
    assert reader.scale == 1.0 and reader.original_size == reader.size == (96, 96)


def test_downscaling_bounds_the_longest_side(sample_video):
    reader, frames, _ = read_all(sample_video("carphone_pristine.mp4"), max_side=88)
    assert frames[0].shape[:2] == (72, 88) and reader.size == (88, 72)
    assert reader.original_size == (176, 144)
    assert reader.scale == pytest.approx(0.5)


def test_a_frame_folder_decodes_its_images_in_name_order(frame_folder):
    assert describe_source(frame_folder).is_frame_folder
    _, frames, _ = read_all(frame_folder)
    expected = make_twin_video(seed=3, grid=4, frames=48, cell=24).frames
    assert len(frames) == 48
    # PNG is lossless: frame order and content survive.
    np.testing.assert_array_equal(frames[5], expected[5])


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


@pytest.fixture(scope="module")
def clip_with_cut(tmp_path_factory):
    """30 frames of one synthetic scene, then 70 of another: a cut at frame 30."""
    first = make_twin_video(seed=5, grid=4, frames=30, cell=24).frames
    second = make_twin_video(seed=6, grid=4, frames=70, cell=24).frames
    return write_video(np.concatenate([first, second]), tmp_path_factory.mktemp("cut") / "cut.avi")


def test_shot_cuts_split_a_video_at_the_cut(clip_with_cut):
    reader, _ = read_windows(clip_with_cut, window=20, stride=20)
    assert reader.shots == [(0, 30), (30, 100)]


def test_real_scene_cuts_are_found_in_bikes(sample_video):
    reader = VideoReader(describe_source(sample_video("bikes.mp4")), 320)
    assert [window.start for window in reader.windows(30, 30)] == [0, 30, 76, 106, 137, 187]
    assert reader.shots == [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]


@pytest.mark.parametrize(
    "window, stride, starts",
    [
        (20, 10, [0, 10, 30, 40, 50, 60, 70, 80]),
        (20, 20, [0, 30, 50, 70]),
        (20, 35, [0, 30, 65]),
        (31, 31, [30, 61]),
    ],
)
def test_windows_stay_inside_shots_with_the_stride(clip_with_cut, window, stride, starts):
    assert read_windows(clip_with_cut, window, stride)[1] == starts


def test_windows_hold_the_frames_they_start_at(clip_with_cut):
    _, frames, _ = read_all(clip_with_cut)
    reader = VideoReader(describe_source(clip_with_cut), None)
    for window in reader.windows(20, 15):
        assert len(window.frames) == len(window.grays) == 20
        np.testing.assert_array_equal(window.frames[0], frames[window.start])
        np.testing.assert_array_equal(window.frames[-1], frames[window.start + 19])


@pytest.mark.parametrize(
    "reason",
    ["corrupt", "empty", "one_frame", "static", "all_black", "too_few_frames", "unreadable"],
)
def test_each_bad_video_is_refused_with_its_file_and_reason(bad_videos, reason):
    if reason not in bad_videos:
        pytest.skip("no way to make an unreadable file here")
    path = bad_videos[reason]
    with pytest.raises(VideoInputError) as caught:
        reader, _ = read_windows(path, 24, 24)
        reader.check_content(24)
    assert caught.value.reason is SkipReason(reason)
    assert path.name in str(caught.value)


def test_a_good_clip_passes_the_content_checks(fast_clip):
    reader, starts = read_windows(fast_clip, 24, 24)
    reader.check_content(24)
    assert starts == [0, 24]


def test_an_mp4_written_by_opencv_decodes(tmp_path):
    frames = make_twin_video(seed=7, grid=4, frames=12, cell=24).frames
    _, decoded, _ = read_all(write_video(frames, tmp_path / "clip.mp4"))
    assert len(decoded) == 12 and decoded[0].shape == (96, 96, 3)


def non_utf8(folder, name: bytes):
    """The path ``folder/name`` for a file name that is not valid UTF-8 (as os.listdir gives it)."""
    return folder / os.fsdecode(name)


def test_a_video_and_frames_named_with_non_utf8_bytes_decode(tmp_path, fast_clip, frame_folder):
    video = non_utf8(tmp_path, b"clip\xff.avi")
    shutil.copy(fast_clip, video)
    frames = non_utf8(tmp_path, b"frames\xfe")
    shutil.copytree(frame_folder, frames)
    last = max(frames.iterdir())
    last.rename(non_utf8(frames, b"\xfd" + os.fsencode(last.name)))  # still sorts last
    _, decoded, _ = read_all(video)
    _, expected, _ = read_all(fast_clip)
    assert len(decoded) == len(expected)
    np.testing.assert_array_equal(decoded[7], expected[7])
    _, decoded_frames, _ = read_all(frames)
    _, expected_frames, _ = read_all(frame_folder)
    np.testing.assert_array_equal(np.stack(decoded_frames), np.stack(expected_frames))
    source = describe_source(video)
    assert source.video_id == f"clip_-{source.sha256[:8]}"  # text-safe: no lone surrogate
    assert source.name == f"{tmp_path}/clip\\xff.avi"
    assert describe_source(frames).video_id.encode("utf-8")


def test_discovery_never_reads_an_excluded_folder(
    tmp_path, fast_clip, second_fast_clip, frame_folder
):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(fast_clip, clips / "a.avi")
    store = clips / "store"
    shutil.copytree(frame_folder, store / "patches" / "a-0000")
    shutil.copy(second_fast_clip, store / "b.avi")
    assert len(discover_inputs([clips])) == 3
    assert [s.path.name for s in discover_inputs([clips], exclude=[store])] == ["a.avi"]
    with pytest.raises(InputDiscoveryError, match="inside the output folder"):
        discover_inputs([store / "b.avi"], exclude=[store])


def test_decode_ahead_keeps_frames_in_order_and_raises_where_decoding_stopped():
    def frames():
        for index in range(20):
            yield np.full((2, 2), index, dtype=np.uint8)
        raise VideoInputError(Path("clip.mp4"), SkipReason.CORRUPT, "frame 20 does not decode")

    seen = []
    with pytest.raises(VideoInputError, match="frame 20 does not decode"):
        for frame in decode_ahead(frames(), max_bytes=12):
            seen.append(int(frame[0, 0]))
    assert seen == list(range(20))


def test_decode_ahead_stops_its_thread_and_closes_the_source_when_left_early():
    closed = []

    def frames():
        try:
            for index in range(1000):
                yield np.full((2, 2), index % 256, dtype=np.uint8)
        finally:
            closed.append(True)

    stream = decode_ahead(frames(), max_bytes=8)
    assert int(next(stream)[0, 0]) == 0
    stream.close()
    assert closed == [True]
    assert not any(thread.name == "decode-ahead" for thread in threading.enumerate())


def test_decode_ahead_holds_at_most_max_bytes_of_frames_ahead():
    decoded = []

    def frames():
        for index in range(100):
            decoded.append(index)
            yield np.zeros(1000, dtype=np.uint8)

    stream = decode_ahead(frames(), max_bytes=5000)
    next(stream)
    # The frame handed out, five queued, and one decoded that waits for room: wait for the
    # thread to get there, then give it time to overshoot if it could.
    deadline = time.monotonic() + 10
    while len(decoded) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(decoded) == 7
    stream.close()
