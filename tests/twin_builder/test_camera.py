"""Camera motion: model fits, acceptance guards, and removal from the tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from twin_builder.camera import (
    CameraModel,
    apply_transforms,
    estimate_camera_motion,
    fit_camera_transform,
    residual_motion,
)
from twin_builder.tracking import LucasKanade, seed_grid_points, track_window
from twin_builder.video import VideoReader, describe_source


def _grays(path, max_side=None) -> list[np.ndarray]:
    return [gray for _, _, gray in VideoReader(describe_source(path), max_side).frames()]


def _points(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 200, (count, 2)).astype(np.float32)


@pytest.mark.parametrize(
    "model, transform",
    [
        (CameraModel.TRANSLATION, np.array([[1, 0, 2.5], [0, 1, -1.0], [0, 0, 1]])),
        (CameraModel.SIMILARITY, np.array([[0.99, -0.05, 3.0], [0.05, 0.99, 1.0], [0, 0, 1]])),
        (
            CameraModel.HOMOGRAPHY,
            np.array([[1.01, 0.02, 2.0], [-0.01, 0.98, 1.0], [1e-4, -5e-5, 1]]),
        ),
    ],
)
def test_each_model_recovers_its_transform_despite_outliers(model, transform):
    before = _points(100)
    after = apply_transforms(np.repeat(transform[None], 1, axis=0), before[None])[0].astype(
        np.float32
    )
    after[:30] += (
        np.random.default_rng(1).uniform(-20, 20, (30, 2)).astype(np.float32)
    )  # moving objects
    fitted = fit_camera_transform(before, after, model)
    assert fitted is not None
    np.testing.assert_allclose(
        fitted / fitted[2, 2], transform, atol=1e-3 if model is CameraModel.HOMOGRAPHY else 1e-2
    )


def test_too_few_points_give_no_estimate():
    before = _points(19)
    assert fit_camera_transform(before, before + 1, CameraModel.SIMILARITY) is None


MODELS = [CameraModel.TRANSLATION, CameraModel.SIMILARITY, CameraModel.HOMOGRAPHY]


def _minority_camera(rival: int) -> tuple[np.ndarray, np.ndarray]:
    """100 points: 40 moved by the camera (1, 1), ``rival`` by one object (-6, 4), the rest
    scattered at random."""
    before = _points(100)
    after = before + np.float32(1.0)
    after[40 : 40 + rival] = before[40 : 40 + rival] + np.float32([-6.0, 4.0])
    after[40 + rival :] = _points(60 - rival, seed=5)
    return before, after


@pytest.mark.parametrize("model", MODELS)
def test_a_minority_of_inliers_is_accepted_when_no_other_motion_rivals_it(model):
    before, after = _minority_camera(rival=15)  # 40 against 15: dominant
    fitted = fit_camera_transform(before, after, model)
    assert fitted is not None
    np.testing.assert_allclose(fitted / fitted[2, 2], [[1, 0, 1], [0, 1, 1], [0, 0, 1]], atol=1e-2)


@pytest.mark.parametrize("model", MODELS)
def test_a_minority_of_inliers_gives_no_estimate_when_another_motion_rivals_it(model):
    before, after = _minority_camera(rival=25)  # 40 against 25: below DOMINANCE = 2
    assert fit_camera_transform(before, after, model) is None


def test_model_none_gives_identities():
    frames = np.zeros((5, 32, 32), np.uint8)
    np.testing.assert_array_equal(
        estimate_camera_motion(frames, CameraModel.NONE), np.repeat(np.eye(3)[None], 4, 0)
    )


def test_residual_motion_is_what_the_camera_does_not_explain():
    positions = np.array([[[0.0, 0.0], [10.0, 5.0]], [[2.0, 1.0], [12.5, 6.0]]])
    shift = np.array([[[1, 0, 2.0], [0, 1, 1.0], [0, 0, 1]]])
    np.testing.assert_allclose(residual_motion(positions, shift), [[[0, 0], [0.5, 0]]])


@pytest.mark.parametrize(
    ("model", "clip"),
    [(model, {}) for model in MODELS]
    # At 384 px, textured objects hold about half of the background corners. The homography's
    # eight degrees of freedom still take up slow objects' motion there: 0.10-0.13 px/frame of
    # mean residual on static cells.
    + [(model, {"grid": 8, "frames": 40}) for model in MODELS[:2]],
    ids=[f"192px-{model.value}" for model in MODELS] + [f"384px-{m.value}" for m in MODELS[:2]],
)
def test_static_cells_keep_near_zero_motion_under_a_moving_camera(synthetic_clip, model, clip):
    path, truth = synthetic_clip(seed=0, camera_shift_px=6.0, **clip)
    grays = _grays(path)
    seeds = seed_grid_points(grays[0], truth.grid)
    positions, valid = track_window(grays, seeds, LucasKanade())
    static = valid & ~truth.moving.reshape(-1)
    raw_speed = np.linalg.norm(np.diff(positions[:, static, 0], axis=0), axis=-1).mean()
    residual = residual_motion(positions[:, static, 0], estimate_camera_motion(grays, model))
    assert static.sum() >= 3
    assert raw_speed > 0.3  # the camera really moves the static cells in the image
    assert np.abs(residual).mean() < 0.06
    assert np.median(np.abs(residual)) < 0.05


def test_a_real_pan_is_measured_on_a_shifted_sample_frame(sample_video):
    frame = _grays(sample_video("bigbuckbunny.mp4"), max_side=320)[0]
    shifted = cv2.warpAffine(
        frame,
        np.float32([[1, 0, 3.0], [0, 1, -2.0]]),
        frame.shape[::-1],
        borderMode=cv2.BORDER_REFLECT,
    )
    transform = estimate_camera_motion(np.stack([frame, shifted]), CameraModel.TRANSLATION)[0]
    np.testing.assert_allclose(transform[:2, 2], (3.0, -2.0), atol=0.1)
