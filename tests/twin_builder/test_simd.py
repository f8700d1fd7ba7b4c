"""The four-lane float64 vector type of the MI kernels: each operation against numpy, lane by lane."""

import numba
import numpy as np
import pytest

from twin_builder import simd


@numba.njit
def _lanes(vector: simd.Float64x4) -> np.ndarray:
    out = np.empty(simd.LANES)
    for lane in range(simd.LANES):
        out[lane] = simd.get_lane(vector, lane)
    return out


@numba.njit
def _operations(values: np.ndarray, start: int) -> tuple:
    first = simd.load(values, start)
    second = simd.pack(values[0], values[1], values[2], values[3])
    return (
        _lanes(first),
        _lanes(second),
        _lanes(simd.splat(values[5])),
        _lanes(simd.minimum(first, second)),
        _lanes(simd.maximum(first, second)),
        _lanes(simd.absolute(simd.subtract(first, second))),
    )


@numba.njit
def _all_at_least(value: float, lanes: np.ndarray) -> bool:
    return simd.all_at_least(value, simd.load(lanes, 0))


@numba.njit
def _repeat(template: tuple, values: np.ndarray) -> np.ndarray:
    copies = simd.repeat(template, simd.load(values, 0))
    return np.stack((_lanes(copies[0]), _lanes(copies[-1])))


def test_lane_operations_match_numpy() -> None:
    values = np.random.default_rng(0).standard_normal(12)
    loaded, packed, splat, low, high, distance = _operations(values, 6)
    np.testing.assert_array_equal(loaded, values[6:10])
    np.testing.assert_array_equal(packed, values[:4])
    np.testing.assert_array_equal(splat, np.full(4, values[5]))
    np.testing.assert_array_equal(low, np.minimum(values[6:10], values[:4]))
    np.testing.assert_array_equal(high, np.maximum(values[6:10], values[:4]))
    np.testing.assert_array_equal(distance, np.abs(values[6:10] - values[:4]))


@pytest.mark.parametrize(
    ("value", "expected"), [(3.0, True), (2.0, True), (1.5, False), (-np.inf, False)]
)
def test_all_at_least_compares_every_lane(value: float, expected: bool) -> None:
    assert _all_at_least(value, np.array([1.0, -np.inf, 2.0, 0.5])) is expected


def test_repeat_makes_one_copy_per_template_entry() -> None:
    values = np.array([1.0, np.inf, -np.inf, 4.0])
    np.testing.assert_array_equal(_repeat((0.0, 0.0, 0.0), values), np.stack((values, values)))
