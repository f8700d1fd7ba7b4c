"""The synthetic twin-video generator: its ground truth is self-consistent, its files read back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from twin_builder.mi import motion_entropy_mask, mutual_information_matrix
from twin_builder.synthetic import SyntheticVideo, make_twin_video, write_frame_folder, write_video


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    return make_twin_video(grid=4, frames=120, cell=48, seed=0)


@pytest.fixture(scope="module")
def moving_camera_video() -> SyntheticVideo:
    return make_twin_video(grid=4, frames=60, cell=48, seed=1, camera_shift_px=6.0)


def cell_pixels(frames: np.ndarray, cell: int, row: int, col: int) -> np.ndarray:
    return frames[:, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]


def track_centres(video: SyntheticVideo) -> np.ndarray:
    """(T, G*G, 2) object centres followed with pyramidal Lucas-Kanade from the true first ones."""
    grey = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in video.frames]
    points = video.centres[0].reshape(-1, 1, 2).astype(np.float32)
    tracks = [points.reshape(-1, 2)]
    for previous, current in zip(grey[:-1], grey[1:]):
        points, _, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None, winSize=(15, 15))
        tracks.append(points.reshape(-1, 2))
    return np.stack(tracks).astype(np.float64)


def test_frames_are_uint8_bgr_of_grid_times_cell_pixels(video: SyntheticVideo) -> None:
    assert video.frames.shape == (120, 192, 192, 3)
    assert video.frames.dtype == np.uint8
    assert video.grid == 4 and video.cell == 48


def test_ground_truth_arrays_have_matching_shapes(video: SyntheticVideo) -> None:
    assert video.moving.shape == (4, 4) and video.moving.dtype == bool
    assert video.centres.shape == (120, 4, 4, 2)
    assert video.camera.shape == (120, 2)


def test_background_has_high_contrast(video: SyntheticVideo) -> None:
    grey = cv2.cvtColor(video.frames[0], cv2.COLOR_BGR2GRAY)
    assert grey.std() > 30


def test_twin_map_is_symmetric_and_never_maps_a_cell_to_itself(video: SyntheticVideo) -> None:
    assert video.twin_of
    for cell, twin in video.twin_of.items():
        assert twin != cell
        assert video.twin_of[twin] == cell


def test_twins_are_moving_cells(video: SyntheticVideo) -> None:
    assert all(video.moving[cell] for cell in video.twin_of)


def test_a_quarter_of_the_cells_are_static(video: SyntheticVideo) -> None:
    assert (~video.moving).sum() == 4


def test_default_pairs_a_third_of_the_moving_cells(video: SyntheticVideo) -> None:
    assert len(video.twin_of) == 2 * (video.moving.sum() // 3)


def test_static_cells_are_pixel_identical_in_every_frame(video: SyntheticVideo) -> None:
    for row, col in zip(*np.nonzero(~video.moving)):
        pixels = cell_pixels(video.frames, video.cell, row, col)
        assert (pixels == pixels[0]).all()


def test_moving_cells_change_between_frames(video: SyntheticVideo) -> None:
    for row, col in zip(*np.nonzero(video.moving)):
        pixels = cell_pixels(video.frames, video.cell, row, col).astype(np.int16)
        assert np.abs(np.diff(pixels, axis=0)).mean() > 1.0


def test_objects_stay_inside_their_cells(video: SyntheticVideo) -> None:
    cell, half_object = video.cell, video.cell // 4
    rows, cols = np.mgrid[0:4, 0:4]
    offset = video.centres - (np.stack([cols, rows], axis=-1) * cell + cell / 2)
    assert np.abs(offset).max() + half_object < cell / 2


def test_object_positions_are_sub_pixel(video: SyntheticVideo) -> None:
    moving_centres = video.centres[:, video.moving]
    fractions = moving_centres - np.round(moving_centres)
    assert np.abs(fractions).mean() > 0.1


def test_rendered_objects_follow_the_ground_truth_to_sub_pixel_precision(
    video: SyntheticVideo,
) -> None:
    tracked = track_centres(video)
    assert np.abs(tracked - video.centres.reshape(120, 16, 2)).max() < 0.3


def test_twin_motions_have_the_highest_mi_of_their_rows(video: SyntheticVideo) -> None:
    velocities = np.diff(video.centres.reshape(120, 16, 2), axis=0).transpose(1, 0, 2)
    matrix = mutual_information_matrix(velocities)
    valid = motion_entropy_mask(velocities)
    matrix[:, ~valid] = np.nan
    for (row, col), (twin_row, twin_col) in video.twin_of.items():
        assert np.nanargmax(matrix[row * 4 + col]) == twin_row * 4 + twin_col


def test_entropy_mask_rejects_exactly_the_static_cells(video: SyntheticVideo) -> None:
    velocities = np.diff(video.centres.reshape(120, 16, 2), axis=0).transpose(1, 0, 2)
    np.testing.assert_array_equal(motion_entropy_mask(velocities).reshape(4, 4), video.moving)


def test_camera_walk_reaches_the_requested_shift(moving_camera_video: SyntheticVideo) -> None:
    assert np.abs(moving_camera_video.camera).max() == pytest.approx(6.0)
    np.testing.assert_array_equal(moving_camera_video.camera[0], [0.0, 0.0])


def test_static_cells_move_only_with_the_camera(moving_camera_video: SyntheticVideo) -> None:
    video = moving_camera_video
    relative = video.centres[:, ~video.moving] - video.camera[:, None, :]
    np.testing.assert_allclose(relative, np.broadcast_to(relative[0], relative.shape), atol=1e-9)


def test_camera_motion_moves_the_background(moving_camera_video: SyntheticVideo) -> None:
    frames = moving_camera_video.frames
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    t = int(np.argmax(np.abs(moving_camera_video.camera).max(axis=1)))
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[t])
    np.testing.assert_allclose([dx, dy], moving_camera_video.camera[t], atol=0.5)


def test_same_seed_gives_the_same_video() -> None:
    first = make_twin_video(grid=2, frames=10, cell=32, seed=4)
    second = make_twin_video(grid=2, frames=10, cell=32, seed=4)
    np.testing.assert_array_equal(first.frames, second.frames)
    assert first.twin_of == second.twin_of


def test_amplitude_that_leaves_the_cell_is_rejected() -> None:
    message = "amplitude_px=20.0 would let a 24 px object leave its 48 px cell"
    with pytest.raises(ValueError, match=message):
        make_twin_video(grid=2, frames=10, cell=48, amplitude_px=20.0)


def test_static_fraction_outside_zero_one_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"static_fraction must be in \[0, 1\]; got 1.5"):
        make_twin_video(grid=2, frames=10, cell=32, static_fraction=1.5)


def test_all_cells_static_gives_no_twins() -> None:
    video = make_twin_video(grid=2, frames=10, cell=32, static_fraction=1.0)
    assert not video.moving.any() and video.twin_of == {}


def test_written_avi_reads_back_with_every_frame(video: SyntheticVideo, tmp_path: Path) -> None:
    path = write_video(video.frames[:30], tmp_path / "twins.avi")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 30
    assert frames[0].shape == (192, 192, 3)
    assert np.abs(frames[5].astype(np.int16) - video.frames[5]).mean() < 8


def test_written_mp4_reports_its_frame_count(video: SyntheticVideo, tmp_path: Path) -> None:
    path = write_video(video.frames[:20], tmp_path / "twins.mp4")
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    capture.release()


def test_unsupported_video_suffix_is_rejected(video: SyntheticVideo, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(video.frames[:2], tmp_path / "twins.gif")


def test_frame_folder_holds_lossless_pngs_sorted_in_frame_order(
    video: SyntheticVideo, tmp_path: Path
) -> None:
    paths = write_frame_folder(video.frames[:12], tmp_path / "frames")
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [p.name for p in paths]
    for t, name in enumerate(names):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "frames" / name)), video.frames[t])


def test_writers_reject_frames_that_are_not_uint8_colour(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"frames must be a non-empty \(T, H, W, 3\) uint8 array"):
        write_frame_folder(np.zeros((3, 8, 8), dtype=np.uint8), tmp_path)
