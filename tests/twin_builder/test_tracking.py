"""Grid seeding and Lucas-Kanade tracking with the forward-backward check."""

from __future__ import annotations

import cv2
import numpy as np

from twin_builder.tracking import (
    MIN_WIN_SIZE,
    LucasKanade,
    grid_cell_boxes,
    seed_grid_points,
    track_window,
)


def _texture(side: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def _translated(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        image, shift, image.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def test_grid_cells_tile_the_frame_row_major():
    boxes = grid_cell_boxes(100, 160, 4)
    assert boxes.shape == (16, 4)
    assert tuple(boxes[0]) == (0, 0, 40, 25)
    assert tuple(boxes[1]) == (40, 0, 80, 25)
    assert tuple(boxes[-1]) == (120, 75, 160, 100)


def test_every_seed_lies_in_its_own_cell():
    seeds = seed_grid_points(_texture(128), grid=4, points_per_cell=3)
    assert seeds.points.shape == (16, 3, 2)
    assert seeds.textured.all()
    for (x0, y0, x1, y1), points in zip(seeds.cell_boxes, seeds.points):
        assert (
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
        ).all()


def test_a_flat_cell_falls_back_to_its_centre_and_is_flagged():
    frame = _texture(128)
    frame[:32, :32] = 128
    seeds = seed_grid_points(frame, grid=4)
    assert not seeds.textured[0, 0]
    np.testing.assert_allclose(seeds.points[0, 0], (15.5, 15.5))
    assert seeds.textured[1:].all()


def test_tracks_follow_a_known_translation():
    base = _texture(160)
    frames = np.stack([_translated(base, 0.7 * t, -0.4 * t) for t in range(12)])
    seeds = seed_grid_points(frames[0], grid=4)
    positions, valid = track_window(frames, seeds, LucasKanade())
    inner = np.all((seeds.points[:, 0] > 30) & (seeds.points[:, 0] < 120), axis=-1)
    assert valid[inner].all()
    motion = np.diff(positions[:, inner, 0], axis=0)
    np.testing.assert_allclose(motion.mean(axis=(0, 1)), (0.7, -0.4), atol=0.05)


def test_a_patch_whose_content_vanishes_is_invalid_for_the_window():
    base = _texture(128)
    frames = np.stack([base] * 8)
    # From frame 4 on, the area around cell (1, 1) is a flat wall: its point cannot be tracked.
    frames[4:, 20:76, 20:76] = 128
    seeds = seed_grid_points(frames[0], grid=4)
    _, valid = track_window(frames, seeds, LucasKanade())
    assert not valid[5]
    assert valid[[0, 3, 12, 15]].all()


def test_forward_backward_check_rejects_what_a_loose_threshold_accepts():
    frame = _texture(96)
    scrambled = _texture(96, seed=3)
    points = np.float32([[48, 48], [30, 60]])
    _, strict_ok = LucasKanade(fb_threshold=1.0).step(frame, scrambled, points)
    _, same_ok = LucasKanade(fb_threshold=1.0).step(frame, frame, points)
    assert same_ok.all()
    assert not strict_ok.all()


def test_frames_of_the_reference_size_or_larger_keep_the_tracker_settings():
    tracker = LucasKanade(fb_threshold=0.5)
    for height, width in ((272, 640), (360, 640), (480, 640), (720, 1280), (640, 200), (384, 384)):
        assert tracker.for_frame(height, width) is tracker


def test_small_frames_get_a_proportionally_smaller_odd_window_and_nothing_else_changes():
    tracker = LucasKanade(fb_threshold=0.5)
    scaled = tracker.for_frame(144, 176)  # 0.4 of the reference's shorter side, 0.275 of its longer
    assert scaled.win_size == 9
    assert scaled == LucasKanade(win_size=9, fb_threshold=0.5)
    assert tracker.for_frame(176, 144) == scaled
    assert LucasKanade(win_size=5).for_frame(144, 176).win_size == 5


def test_a_window_held_at_the_minimum_gets_fewer_pyramid_levels_to_keep_its_reach():
    # 11 px and 3 levels reach 44 px on 640 x 360; 0.4 of that on 176 x 144 is 17.6 px, which
    # the 7 px window reaches with 2 levels (14 px) more closely than with 3 (28 px).
    scaled = LucasKanade(win_size=11, max_level=3).for_frame(144, 176)
    assert (scaled.win_size, scaled.max_level) == (MIN_WIN_SIZE, 2)
    assert LucasKanade().for_frame(144, 176).max_level == 3


def test_the_scaled_window_follows_a_known_translation_on_a_small_frame():
    base = _texture(144)
    frames = np.stack([_translated(base, 0.7 * t, -0.4 * t) for t in range(12)])
    seeds = seed_grid_points(frames[0], grid=8)
    tracker = LucasKanade().for_frame(144, 144)
    positions, valid = track_window(frames, seeds, tracker)
    inner = np.all((seeds.points[:, 0] > 20) & (seeds.points[:, 0] < 124), axis=-1)
    assert tracker.win_size < LucasKanade().win_size and valid[inner].all()
    motion = np.diff(positions[:, inner, 0], axis=0)
    np.testing.assert_allclose(motion.mean(axis=(0, 1)), (0.7, -0.4), atol=0.05)
