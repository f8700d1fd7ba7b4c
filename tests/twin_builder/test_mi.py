"""Known-answer tests of the k-NN mutual information estimators (MI_TRACKING_DATA.md 1.8).

Gaussian known answers use N = 1000 samples, k = 3 and fixed seeds; tolerances are the measured
spreads of the notes (3KL's are looser: about twice the variance and a bias in 3-D).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from npeet_plus import mi as npeet_mi
from scipy.ndimage import gaussian_filter1d
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression

from twin_builder.mi import (
    _sort_neighbours,
    _sort_scratch,
    motion_entropy_mask,
    mutual_information,
    mutual_information_matrix,
)
from twin_builder.synthetic import make_twin_video

N = 1000
TOLERANCE = {"ksg": 0.10, "3kl": 0.15}
ESTIMATORS = ("ksg", "3kl")


def correlated_gaussians(
    rho: float, d: int, seed: int = 0, n: int = N
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) X and Y; each pair (x_c, y_c) has correlation rho, independent across c."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return x, y


def gaussian_mi(rho: float, d: int) -> float:
    return -0.5 * d * np.log(1 - rho**2)


def smooth_independent_series(
    seed: int, patches: int = 8, n: int = 150, sigma: float = 2.0
) -> np.ndarray:
    """(patches, n, 2) independent Gaussian-smoothed 2-D series (autocorrelated, like motion)."""
    rng = np.random.default_rng(seed)
    return gaussian_filter1d(rng.standard_normal((patches, n, 2)), sigma, axis=1)


def standardised(v: np.ndarray) -> np.ndarray:
    return (v - v.mean(axis=0)) / v.std(axis=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("d", [1, 3])
def test_independent_gaussians_have_mi_near_zero(estimator: str, d: int) -> None:
    x, y = correlated_gaussians(0.0, d)
    assert mutual_information(x, y, estimator=estimator, theiler=0) == pytest.approx(
        0.0, abs=TOLERANCE[estimator]
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_correlated_gaussians_in_1d_match_the_closed_form(estimator: str) -> None:
    x, y = correlated_gaussians(0.9, 1)
    assert gaussian_mi(0.9, 1) == pytest.approx(0.830, abs=1e-3)
    assert mutual_information(x, y, estimator=estimator, theiler=0) == pytest.approx(
        0.830, abs=TOLERANCE[estimator]
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_independent_coordinate_pairs_in_2d_add_up(estimator: str) -> None:
    x, y = correlated_gaussians(0.6, 2)
    estimate = mutual_information(x, y, estimator=estimator, theiler=0)
    assert estimate == pytest.approx(0.446, abs=0.15)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_general_gaussian_matches_the_log_determinant_formula(estimator: str) -> None:
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(4, 4)) + 2.0 * np.eye(4)
    covariance = mixing @ mixing.T
    z = rng.multivariate_normal(np.zeros(4), covariance, size=N)
    expected = 0.5 * np.log(
        np.linalg.det(covariance[:2, :2])
        * np.linalg.det(covariance[2:, 2:])
        / np.linalg.det(covariance)
    )
    assert 0.1 < expected < 1.0
    assert mutual_information(z[:, :2], z[:, 2:], estimator=estimator, theiler=0) == pytest.approx(
        expected, abs=TOLERANCE[estimator]
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_mi_increases_strictly_with_correlation(estimator: str) -> None:
    estimates = [
        mutual_information(*correlated_gaussians(rho, 1), estimator=estimator, theiler=0)
        for rho in (0.3, 0.6, 0.9)
    ]
    assert estimates[0] < estimates[1] < estimates[2]


def test_ksg_is_exactly_symmetric_in_its_arguments() -> None:
    x, y = correlated_gaussians(0.6, 2)
    assert mutual_information(x, y, seed=5) == mutual_information(y, x, seed=5)


def test_3kl_is_symmetric_in_its_arguments_up_to_the_jitter() -> None:
    x, y = correlated_gaussians(0.6, 2)
    forward = mutual_information(x, y, estimator="3kl", seed=5)
    assert mutual_information(y, x, estimator="3kl", seed=5) == pytest.approx(forward, abs=1e-4)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matrix_is_symmetric_with_nan_diagonal(estimator: str) -> None:
    samples = np.random.default_rng(0).standard_normal((6, 80, 2))
    matrix = mutual_information_matrix(samples, estimator=estimator)
    assert matrix.shape == (6, 6)
    assert np.isnan(np.diag(matrix)).all()
    off_diagonal = ~np.eye(6, dtype=bool)
    assert np.isfinite(matrix[off_diagonal]).all()
    np.testing.assert_array_equal(matrix, matrix.T)


def test_ksg_matrix_agrees_with_npeet_for_every_pair() -> None:
    rng = np.random.default_rng(4)
    latent = rng.standard_normal((100, 2))
    noise_levels = (0.3, 0.5, 1, 2, 4, 9)
    samples = np.stack(
        [standardised(latent + s * rng.standard_normal((100, 2))) for s in noise_levels]
    )
    matrix = mutual_information_matrix(samples, theiler=0)
    state = np.random.get_state()
    np.random.seed(0)
    try:
        for i, j in zip(*np.triu_indices(len(samples), 1)):
            reference = npeet_mi(samples[i], samples[j], k=3, base=np.e)
            assert matrix[i, j] == pytest.approx(reference, abs=1e-9)
    finally:
        np.random.set_state(state)


def standardise_patches(samples: np.ndarray) -> np.ndarray:
    """Each coordinate of each (P, N, d) patch standardised along N, as the kernel does."""
    std = samples.std(axis=1, keepdims=True)
    return (samples - samples.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def brute_force_mi(samples: np.ndarray, estimator: str, k: int, theiler: int) -> np.ndarray:
    """(P, P) KSG-1 or 3KL in nats straight from the definitions, on already prepared samples.

    Every distance of every patch is computed (O(N^2) per pair): the reference the fast kernel
    must reproduce, strict and non-strict inequalities included.
    """
    n_patches, n, dims = samples.shape
    distances = np.abs(samples[:, :, None, :] - samples[:, None, :, :]).max(axis=-1)
    excluded = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= theiler
    distances[:, excluded] = np.inf
    psi = digamma(np.arange(n + 2, dtype=np.float64))
    psi_n = psi[(~excluded).sum(axis=1) + 1].mean()
    # H_KL(S) - (d_S log 2), as in the kernel: the log 2 terms cancel in the 3KL sum.
    entropy = psi_n - psi[k] + dims * np.log(np.sort(distances, axis=-1)[:, :, k - 1]).mean(-1)
    matrix = np.full((n_patches, n_patches), np.nan)
    for i, j in zip(*np.triu_indices(n_patches, 1)):
        eps = np.sort(np.maximum(distances[i], distances[j]), axis=-1)[:, k - 1, None]
        if estimator == "ksg":
            n_x, n_y = (distances[i] < eps).sum(axis=-1), (distances[j] < eps).sum(axis=-1)
            value = psi[k] + psi_n - (psi[n_x + 1] + psi[n_y + 1]).mean()
        else:
            joint_entropy = psi_n - psi[k] + 2 * dims * np.log(eps).mean()
            value = entropy[i] + entropy[j] - joint_entropy
        matrix[i, j] = matrix[j, i] = value
    return matrix


def mixed_motion(patches: int, n: int, dims: int, seed: int) -> np.ndarray:
    """(patches, n, dims): white noise, smoothed noise and noisy copies of other patches."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((patches, n, dims))
    samples[1::3] = gaussian_filter1d(samples[1::3], 2.0, axis=1)
    samples[2::3] = samples[1::3][: len(samples[2::3])] + 0.3 * samples[2::3]
    return samples


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    ("patches", "n", "k", "theiler"), [(5, 40, 1, 0), (9, 150, 3, 3), (7, 300, 5, 7)]
)
def test_matrix_matches_brute_force_on_random_motion(
    estimator: str, dims: int, patches: int, n: int, k: int, theiler: int
) -> None:
    samples = mixed_motion(patches, n, dims, seed=dims * 10 + k)
    expected = brute_force_mi(standardise_patches(samples), estimator, k, theiler)
    matrix = mutual_information_matrix(samples, estimator, k=k, theiler=theiler, jitter=0.0)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matrix_matches_brute_force_on_synthetic_twin_video_motion(estimator: str) -> None:
    video = make_twin_video(grid=4, frames=200, cell=32, seed=3)
    velocities = np.diff(video.centres.reshape(200, 16, 2), axis=0).transpose(1, 0, 2)
    moving = velocities[video.moving.reshape(-1)]
    expected = brute_force_mi(standardise_patches(moving), estimator, k=3, theiler=3)
    matrix = mutual_information_matrix(moving, estimator, k=3, theiler=3, jitter=0.0)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("theiler", [0, 2])
def test_ksg_matrix_matches_brute_force_on_distances_equal_but_for_the_last_bits(
    theiler: int,
) -> None:
    # A coarse grid plus a few ulps: many distances tie exactly, many more differ only in their
    # lowest bits, where a sort by truncated keys or coarse buckets would misorder them.
    rng = np.random.default_rng(6)
    grid = rng.integers(-3, 4, size=(12, 90, 2)) / 4
    samples = grid + rng.integers(0, 8, size=grid.shape) * np.spacing(1.0)
    expected = brute_force_mi(standardise_patches(samples), "ksg", k=3, theiler=theiler)
    matrix = mutual_information_matrix(samples, theiler=theiler, jitter=0.0)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matrix_entries_do_not_depend_on_the_other_patches(estimator: str) -> None:
    # Without jitter each entry is a function of its two patches alone, whichever lanes, ranks
    # and threads the pairs land in; 20 patches fill three groups of eight lanes, the last half.
    samples = np.random.default_rng(0).standard_normal((20, 50, 2))
    matrix = mutual_information_matrix(samples, estimator=estimator, jitter=0.0)
    subset = [17, 3, 9, 0, 12]
    np.testing.assert_array_equal(
        mutual_information_matrix(samples[subset], estimator=estimator, jitter=0.0),
        matrix[np.ix_(subset, subset)],
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matrix_does_not_depend_on_the_number_of_threads(estimator: str) -> None:
    samples = np.random.default_rng(0).standard_normal((20, 50, 2))
    default = mutual_information_matrix(samples, estimator=estimator)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = mutual_information_matrix(samples, estimator=estimator)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(single, default)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_pair_function_equals_the_matrix_entry(estimator: str) -> None:
    x, y = correlated_gaussians(0.6, 2, n=200)
    matrix = mutual_information_matrix(np.stack([x, y]), estimator=estimator, seed=7)
    assert mutual_information(x, y, estimator=estimator, seed=7) == matrix[0, 1]


def test_ksg_is_unchanged_by_per_coordinate_affine_rescaling() -> None:
    x, y = correlated_gaussians(0.6, 2)
    rescaled_x = x * np.array([1e3, 0.02]) + np.array([-40.0, 7.0])
    rescaled_y = y * np.array([5.0, 3e-4]) + np.array([1e4, -2.0])
    assert mutual_information(rescaled_x, rescaled_y) == mutual_information(x, y)


def test_3kl_is_unchanged_by_per_coordinate_affine_rescaling() -> None:
    x, y = correlated_gaussians(0.6, 2)
    rescaled_x = x * np.array([1e3, 0.02]) + np.array([-40.0, 7.0])
    rescaled_y = y * np.array([5.0, 3e-4]) + np.array([1e4, -2.0])
    assert mutual_information(rescaled_x, rescaled_y, estimator="3kl") == pytest.approx(
        mutual_information(x, y, estimator="3kl"), abs=1e-9
    )


def test_ksg_is_nearly_invariant_to_monotone_transforms() -> None:
    x, y = correlated_gaussians(0.6, 1)
    plain = mutual_information(x, y, theiler=0)
    transformed = mutual_information(np.exp(x), y**3, theiler=0)
    assert transformed - plain == pytest.approx(-0.06, abs=0.15)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_ksg_agrees_with_scikit_learn_in_1d(rho: float) -> None:
    x, y = correlated_gaussians(rho, 1)
    reference = mutual_info_regression(x, y[:, 0], n_neighbors=3, random_state=0)[0]
    assert mutual_information(x, y, theiler=0) == pytest.approx(reference, abs=1e-3)


def test_ksg_agrees_with_npeet_in_2d() -> None:
    # Standardised inputs: the L-infinity geometry depends on the scale of each coordinate.
    x, y = (standardised(v) for v in correlated_gaussians(0.6, 2, n=500))
    state = np.random.get_state()
    np.random.seed(0)  # npeet jitters with the global generator
    try:
        reference = npeet_mi(x, y, k=3, base=np.e)
    finally:
        np.random.set_state(state)
    assert mutual_information(x, y, theiler=0) == pytest.approx(reference, abs=1e-9)


# Mean over the 28 pairs of 8 independent smooth series; measured means over seeds 0-9 of single
# pairs (sd about 0.1 for KSG, 0.13 for 3KL): w=0: 0.66 (KSG), 0.51 (3KL); w=3: -0.04, +0.06.
SPURIOUS_FLOOR = {"ksg": 0.5, "3kl": 0.35}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_smooth_independent_series_show_spurious_mi_without_theiler_window(estimator: str) -> None:
    series = smooth_independent_series(seed=0)
    matrix = mutual_information_matrix(series, estimator=estimator, theiler=0)
    assert np.nanmean(matrix) > SPURIOUS_FLOOR[estimator]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_theiler_window_removes_spurious_mi_between_smooth_series(estimator: str) -> None:
    series = smooth_independent_series(seed=0)
    matrix = mutual_information_matrix(series, estimator=estimator, theiler=3)
    assert np.nanmean(matrix) == pytest.approx(0.0, abs=TOLERANCE[estimator])


def test_theiler_window_keeps_coupled_smooth_series_dependent() -> None:
    series = smooth_independent_series(seed=0, patches=1)
    noise = 0.3 * np.random.default_rng(1).standard_normal(series[0].shape) * series[0].std()
    assert mutual_information(series[0], series[0] + noise, theiler=3) > 1.0


def test_theiler_window_does_not_bias_independent_samples_upwards() -> None:
    # Without the psi(N) replacement a window of 10 adds about +0.12 nats (MI_TRACKING_DATA.md 1.2).
    samples = np.random.default_rng(2).standard_normal((16, 200, 2))
    matrix = mutual_information_matrix(samples, theiler=10)
    assert np.nanmean(matrix) == pytest.approx(0.0, abs=0.04)


def test_same_seed_gives_identical_results() -> None:
    samples = np.random.default_rng(0).standard_normal((5, 60, 2))
    np.testing.assert_array_equal(
        mutual_information_matrix(samples, estimator="3kl", seed=3),
        mutual_information_matrix(samples, estimator="3kl", seed=3),
    )


def test_constant_coordinate_gives_finite_mi() -> None:
    samples = np.random.default_rng(0).standard_normal((3, 60, 2))
    samples[0, :, 1] = 4.0
    matrix = mutual_information_matrix(samples)
    assert np.isfinite(matrix[~np.eye(3, dtype=bool)]).all()


def test_entropy_mask_keeps_moving_patches() -> None:
    samples = np.random.default_rng(0).normal(scale=1.0, size=(4, 50, 2))
    np.testing.assert_array_equal(motion_entropy_mask(samples), [True] * 4)


def test_entropy_mask_rejects_near_static_patches() -> None:
    samples = np.random.default_rng(0).normal(scale=1.0, size=(3, 50, 2))
    samples[1] *= 0.01  # 0.014 px/frame of motion: sensor noise, not motion
    np.testing.assert_array_equal(motion_entropy_mask(samples, min_std=0.15), [True, False, True])


def test_entropy_mask_rejects_patches_with_too_few_distinct_samples() -> None:
    samples = np.random.default_rng(0).normal(scale=1.0, size=(2, 50, 2))
    samples[0] = np.where(np.arange(50)[:, None] % 3 == 0, 2.0, -1.0)  # 2 distinct samples
    samples[0, 0] = 5.0  # now 3 distinct samples, still fewer than k + 1 = 4
    np.testing.assert_array_equal(motion_entropy_mask(samples, k=3), [False, True])
    np.testing.assert_array_equal(motion_entropy_mask(samples, k=2), [True, True])


def test_entropy_mask_rejects_patches_with_non_finite_samples() -> None:
    samples = np.random.default_rng(0).normal(scale=1.0, size=(2, 50, 2))
    samples[1, 10, 0] = np.nan
    np.testing.assert_array_equal(motion_entropy_mask(samples), [True, False])


def test_matrix_rejects_samples_that_are_not_three_dimensional() -> None:
    with pytest.raises(ValueError, match=r"samples must be \(P, N, d\).*\(50, 2\)"):
        mutual_information_matrix(np.zeros((50, 2)))


def test_too_few_samples_for_k_and_theiler_window_is_rejected() -> None:
    samples = np.random.default_rng(0).standard_normal((4, 5, 2))
    with pytest.raises(ValueError, match="N=5 samples is too few for k=3 with theiler=3"):
        mutual_information_matrix(samples)


def test_unknown_estimator_is_rejected() -> None:
    with pytest.raises(ValueError, match="estimator must be one of"):
        mutual_information_matrix(np.zeros((2, 50, 1)), estimator="ksg2")


def test_non_positive_k_is_rejected() -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        mutual_information_matrix(np.zeros((2, 50, 1)), k=0)


def test_pair_function_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same number of samples; got 50 and 40"):
        mutual_information(np.zeros((50, 2)), np.zeros((40, 2)))


def test_entropy_mask_rejects_samples_that_are_not_three_dimensional() -> None:
    with pytest.raises(ValueError, match=r"samples must be \(P, N, d\)"):
        motion_entropy_mask(np.zeros((50, 2)))


@numba.njit
def _sorted_row(points: np.ndarray, t: int, theiler: int, nearest: int) -> tuple:
    n = points.shape[2]
    distances, values = np.full((1, n), np.nan), np.full((1, n), np.nan)
    indices = np.full((1, n), -1, dtype=np.int32)
    m, sorted_length = _sort_neighbours(
        points, 0, t, theiler, nearest, distances, values, indices, _sort_scratch(n), (0, 0)
    )
    return distances[0], values[0], indices[0], m, sorted_length


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "ties"])
@pytest.mark.parametrize(("t", "theiler", "nearest"), [(0, 0, 37), (200, 5, 100), (479, 3, 480)])
def test_rows_are_sorted_as_far_as_asked_and_no_later_neighbour_is_nearer(
    t, theiler, nearest, decimals
):
    # (P, d, N), as the kernels take them; rounding makes exact ties and zero distances.
    points = np.random.default_rng(t).standard_normal((1, 2, 480))
    if decimals is not None:
        points = np.round(points, decimals)
    row_distances, values, indices, m, sorted_length = _sorted_row(points, t, theiler, nearest)
    candidates = np.flatnonzero(np.abs(np.arange(480) - t) > theiler)
    distances = np.abs(points[0][:, candidates] - points[0][:, [t]]).max(axis=0)
    assert m == len(candidates)
    np.testing.assert_array_equal(row_distances[:m], distances)
    assert min(nearest, m) <= sorted_length <= m
    order = np.argsort(distances, kind="stable")
    np.testing.assert_array_equal(indices[:sorted_length], candidates[order[:sorted_length]])
    np.testing.assert_array_equal(values[:sorted_length], distances[order[:sorted_length]])
    # Past the candidates and the sorted neighbours, the rows are left as they were.
    assert np.isnan(row_distances[m:]).all()
    assert np.isnan(values[sorted_length:]).all() and (indices[sorted_length:] == -1).all()
