"""The float64 lane vector of the MI kernels: each operation against numpy, lane by lane."""

import numba
import numpy as np
import pytest
from numba.cpython.unsafe.tuple import tuple_setitem

from twin_builder import simd

LANES = simd.LANES


@numba.njit
def _lanes(vector: simd.Float64Lanes) -> np.ndarray:
    out = np.empty(LANES)
    for lane in range(LANES):
        out[lane] = simd.get_lane(vector, lane)
    return out


@numba.njit
def _packed(values: np.ndarray) -> simd.Float64Lanes:
    lanes = simd.fill(0.0)
    for lane in range(LANES):
        lanes = tuple_setitem(lanes, lane, values[lane])
    return simd.pack(lanes)


@numba.njit
def _operations(values: np.ndarray, start: int) -> tuple:
    first = simd.load(values, start)
    second = _packed(values)
    return (
        _lanes(first),
        _lanes(second),
        _lanes(simd.splat(values[-1])),
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


@numba.njit
def _filled_then_set(lane: int) -> tuple:
    return tuple_setitem(simd.fill(7), lane, -1)


def test_lane_operations_match_numpy() -> None:
    values = np.random.default_rng(0).standard_normal(3 * LANES)
    start = LANES + 2
    loaded, packed, splat, low, high, distance = _operations(values, start)
    following = values[start : start + LANES]
    np.testing.assert_array_equal(loaded, following)
    np.testing.assert_array_equal(packed, values[:LANES])
    np.testing.assert_array_equal(splat, np.full(LANES, values[-1]))
    np.testing.assert_array_equal(low, np.minimum(following, values[:LANES]))
    np.testing.assert_array_equal(high, np.maximum(following, values[:LANES]))
    np.testing.assert_array_equal(distance, np.abs(following - values[:LANES]))


@pytest.mark.parametrize(
    ("value", "expected"), [(3.0, True), (2.0, True), (1.5, False), (-np.inf, False)]
)
@pytest.mark.parametrize("highest_lane", [0, LANES - 1])
def test_all_at_least_compares_every_lane(value: float, expected: bool, highest_lane: int) -> None:
    lanes = np.resize([1.0, -np.inf, 0.5], LANES)
    lanes[highest_lane] = 2.0
    assert _all_at_least(value, lanes) is expected


def test_repeat_makes_one_copy_per_template_entry() -> None:
    values = np.resize([1.0, np.inf, -np.inf, 4.0], LANES)
    np.testing.assert_array_equal(_repeat((0.0, 0.0, 0.0), values), np.stack((values, values)))


@pytest.mark.parametrize("lane", [0, LANES - 1])
def test_fill_makes_a_tuple_whose_lanes_can_be_set_one_by_one(lane: int) -> None:
    expected = [7] * LANES
    expected[lane] = -1
    assert _filled_then_set(lane) == tuple(expected)
