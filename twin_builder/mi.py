"""k-nearest-neighbour mutual information between patch motion series.

Two estimators, both with the L-infinity (max) norm and natural logarithms (nats):

- ``"ksg"``: Kraskov, Stoegbauer & Grassberger (2004), algorithm 1 (KSG-1). The default: in our
  measurements it is never worse than 3KL at choosing twins and much more robust to ties.
- ``"3kl"``: the sum of three Kozachenko-Leonenko entropies, ``H(X) + H(Y) - H(X, Y)``, each
  with its own k-th-neighbour distance (Gao, Oh & Viswanath 2018); the InfoAug paper's estimator.

Samples are frames: patch ``p`` contributes ``N`` samples in ``R^d`` (its per-frame displacement,
usually). Before estimation every coordinate of every patch is standardised and a seeded jitter
breaks ties. Temporal neighbours ``|t - t'| <= theiler`` are excluded from the neighbour search and
from the counts (a Theiler window), because autocorrelated series otherwise show large spurious MI
(MI_TRACKING_DATA.md 1.5); ``psi(N)`` is then replaced by the mean of ``psi(n_candidates + 1)``.

All pairs are computed together in compiled (numba) kernels, parallel over patches and pairs.
With the max norm the joint distance of a pair is the element-wise maximum of the two marginal
distances. Each patch's neighbours of every sample are therefore sorted once (a bucket sort on
the bits of the distances, O(N) per sample); then, per pair and sample, the k-th nearest joint
neighbour is found by walking one patch's sorted neighbours only as far as the k-th joint
distance (no later neighbour can be nearer), the walked marginal count falls out of where the
walk stopped, and the other count skips along milestones of the other patch's row. Per pair this
costs about N sqrt(N) (the walk visits the marginal neighbours within eps, about sqrt(k N) for
independent patches) plus each patch's O(N^2) sort shared by its P - 1 pairs. At the window
lengths of mining (N = 60 to 480) a k-d tree in the 2d-dimensional joint space (O(log N) per
query) and a scan along one sorted coordinate were both measured slower: each of their queries
visits several times more candidates. The kernels are compiled once per sample dimension d on
first use and cached on disk (numba's cache). ``benchmarks/mi_all_pairs.py`` times them against a
per-pair loop of npeet-plus.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.special import digamma

ESTIMATORS: tuple[str, ...] = ("ksg", "3kl")
# Relative jitter (after standardisation) per estimator: KSG only counts neighbours, so the usual
# 1e-10 is enough; 3KL takes logs of distances, which collapse on ties unless the noise is larger.
DEFAULT_JITTER: dict[str, float] = {"ksg": 1e-10, "3kl": 1e-6}
# Patches per side of the tiles that pairs are processed in (see ``_pairs_in_tiles``).
_TILE = 8
# Every _MILESTONE-th distance of a sorted neighbour row is kept (see ``_sorted_neighbours``).
_MILESTONE = 8


def mutual_information_matrix(
    samples: np.ndarray,
    estimator: str = "ksg",
    k: int = 3,
    theiler: int = 3,
    seed: int = 0,
    jitter: float | None = None,
) -> np.ndarray:
    """Mutual information between every pair of patches.

    Args:
        samples: (P, N, d) array: P patches, N time samples (frames), d coordinates per sample
            (e.g. the per-frame displacement in px).
        estimator: ``"ksg"`` (KSG-1) or ``"3kl"`` (three Kozachenko-Leonenko entropies).
        k: number of nearest neighbours (>= 1).
        theiler: Theiler window w in samples: samples with ``|t - t'| <= w`` are never neighbours
            (0 excludes only the sample itself).
        seed: seed of the jitter; the result is a deterministic function of the inputs.
        jitter: standard deviation of the Gaussian noise added after standardisation (so relative
            to each coordinate's std). ``None`` uses ``DEFAULT_JITTER[estimator]``; 0 adds none.

    Returns:
        (P, P) symmetric float64 array of MI in nats, NaN on the diagonal. Values are not clamped
        at 0: at independence the estimate scatters around 0. A coordinate with zero variance is
        left at 0 (only the jitter remains), so filter such patches with ``motion_entropy_mask``.
        Memory: about ``P * N * N * 3`` bytes (sorted neighbour indices and every 8th distance);
        P = 256, N = 480 needs about 180 MB.

    Raises:
        ValueError: on a bad shape, estimator, ``k`` or ``theiler``, or too few samples.
    """
    samples = _check_samples(samples, k, theiler)
    _check_estimator(estimator)
    prepared = _standardise_and_jitter([samples], estimator, seed, jitter)[0]
    dims = np.full(len(prepared), prepared.shape[-1])
    return _all_pairs(prepared, dims, estimator, k, theiler)


def mutual_information(
    x: np.ndarray,
    y: np.ndarray,
    estimator: str = "ksg",
    k: int = 3,
    theiler: int = 3,
    seed: int = 0,
    jitter: float | None = None,
) -> float:
    """Mutual information between two paired series, with the same code as the all-pairs matrix.

    Args:
        x: (N, dx) or (N,) samples of X.
        y: (N, dy) or (N,) samples of Y, paired with ``x`` row by row.
        estimator, k, theiler, seed, jitter: as in ``mutual_information_matrix``. With the same
            seed and ``dx == dy`` the result equals ``mutual_information_matrix(np.stack([x, y]))
            [0, 1]`` exactly.

    Returns:
        The estimated I(X; Y) in nats.

    Raises:
        ValueError: on bad shapes, mismatched lengths or too few samples.
    """
    x, y = (np.asarray(v, dtype=np.float64) for v in (x, y))
    x, y = (v[:, None] if v.ndim == 1 else v for v in (x, y))
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"x and y must be (N, d) or (N,); got {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples; got {len(x)} and {len(y)}")
    _check_estimator(estimator)
    x = _check_samples(x[None], k, theiler)
    y = _check_samples(y[None], k, theiler)
    x, y = _standardise_and_jitter([x, y], estimator, seed, jitter)
    dims = np.array([x.shape[-1], y.shape[-1]])
    padded = np.zeros((2, len(x[0]), dims.max()))
    padded[0, :, : dims[0]], padded[1, :, : dims[1]] = x[0], y[0]
    return float(_all_pairs(padded, dims, estimator, k, theiler)[0, 1])


def motion_entropy_mask(samples: np.ndarray, k: int = 3, min_std: float = 0.15) -> np.ndarray:
    """Which patches move enough to carry a usable MI estimate ("enough entropy").

    A patch is rejected when its motion is near-static (the root of the summed per-coordinate
    variances of its samples is below ``min_std``) or when it has fewer than ``k + 1`` distinct
    samples (quantised or frozen tracks, on which k-NN distances collapse to the jitter scale).
    Patches with a non-finite sample (e.g. a lost track marked NaN) are rejected too.

    Args:
        samples: (P, N, d) motion samples, e.g. per-frame displacements in px/frame.
        k: the k the MI will be estimated with.
        min_std: threshold on the motion std, in the units of ``samples`` (px/frame).

    Returns:
        (P,) bool array, True for patches to keep.

    Raises:
        ValueError: on a bad shape or a negative ``min_std``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"samples must be (P, N, d); got {samples.shape}")
    if min_std < 0:
        raise ValueError(f"min_std must be >= 0; got {min_std}")
    finite = np.isfinite(samples).all(axis=(1, 2))
    moving = np.sqrt(samples.var(axis=1).sum(axis=-1)) >= min_std
    distinct = np.array([len(np.unique(patch, axis=0)) for patch in samples], dtype=np.int64)
    return finite & moving & (distinct >= k + 1)


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")


def _check_samples(samples: np.ndarray, k: int, theiler: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3 or 0 in samples.shape:
        raise ValueError(f"samples must be (P, N, d) with no empty axis; got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("samples must be finite (no NaN or inf)")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k}")
    if int(theiler) != theiler or theiler < 0:
        raise ValueError(f"theiler must be a non-negative integer; got {theiler}")
    n = samples.shape[1]
    need = k + 2 * theiler + 1
    if n < need:
        raise ValueError(
            f"N={n} samples is too few for k={k} with theiler={theiler} "
            f"(need at least k + 2*theiler + 1 = {need})"
        )
    return samples


def _standardise_and_jitter(
    arrays: list[np.ndarray], estimator: str, seed: int, jitter: float | None
) -> list[np.ndarray]:
    """Standardises each coordinate of each (P, N, d) array along N, then adds seeded jitter.

    The noise is drawn in order, array by array, from one generator, so splitting a stack of
    patches into several arrays draws the same noise.
    """
    scale = DEFAULT_JITTER[estimator] if jitter is None else float(jitter)
    if scale < 0:
        raise ValueError(f"jitter must be >= 0; got {jitter}")
    rng = np.random.default_rng(seed)
    prepared = []
    for samples in arrays:
        std = samples.std(axis=1, keepdims=True)
        standard = (samples - samples.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
        prepared.append(standard + scale * rng.standard_normal(samples.shape))
    return prepared


def _all_pairs(
    samples: np.ndarray, dims: np.ndarray, estimator: str, k: int, theiler: int
) -> np.ndarray:
    """The (P, P) MI matrix of prepared (P, N, d) samples whose patches have the (P,) dimensions.

    Every patch is given ``d`` coordinates; a patch with fewer (``dims``) is zero-padded, which
    changes none of its L-infinity distances.
    """
    n_patches, n, n_coordinates = samples.shape
    points = np.ascontiguousarray(samples)
    # The tuple's length is part of its numba type: every kernel is compiled once per d, with the
    # loops over coordinates unrolled (several times faster than a loop of run-time length).
    coordinates = (0,) * n_coordinates
    offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    n_valid = (offsets > theiler).sum(axis=1)
    order, milestones = _sorted_neighbours(points, theiler, coordinates)
    psi = digamma(np.arange(n + 2, dtype=np.float64))
    psi_n = psi[n_valid + 1].mean()
    first, second, tile_starts = _pairs_in_tiles(n_patches)
    # Choose the walked patch by the distance to a neighbour near the typical count within eps
    # (a few times k): comparing the k-th walks about 10% more candidates. Every sample has at
    # least n - 2 * theiler - 1 candidates, so that position holds a neighbour in every row.
    rank = min(3 * k, n - 2 * theiler - 2)
    sums = _pair_sums(
        points,
        order,
        milestones,
        n_valid,
        first,
        second,
        tile_starts,
        k,
        rank,
        estimator == "ksg",
        psi,
        coordinates,
    )
    if estimator == "ksg":
        mi = psi[k] + psi_n - sums / n
    else:
        # H_KL(S) - (d_S log 2): the log 2 terms cancel in H(X) + H(Y) - H(X, Y).
        kth = _kth_neighbour_distances(points, order, k, coordinates)
        entropy = psi_n - psi[k] + dims * np.log(kth).mean(axis=-1)
        joint_entropy = psi_n - psi[k] + (dims[first] + dims[second]) * sums / n
        mi = entropy[first] + entropy[second] - joint_entropy
    result = np.full((n_patches, n_patches), np.nan)
    result[first, second] = result[second, first] = mi
    return result


def _pairs_in_tiles(n_patches: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j, grouped in tiles of ``_TILE`` patches of i by ``_TILE`` of j.

    The pair kernel runs a tile's pairs sample by sample, so that the neighbour rows of one
    sample for the tile's patches (a few kB) stay in the CPU's first-level cache for all of them;
    pair by pair, a patch's rows for all samples must come back from memory for every pair.

    Returns:
        ``(first, second, tile_starts)``: the pairs' patch indices, tile by tile, and the
        position of each tile's first pair followed by the number of pairs.
    """
    first, second = np.triu_indices(n_patches, 1)
    tiles = first // _TILE * n_patches + second // _TILE
    tiled = np.argsort(tiles, kind="stable")
    tile_starts = np.flatnonzero(np.diff(tiles[tiled], prepend=-1, append=-1))
    return first[tiled], second[tiled], tile_starts


def _sorted_neighbours(
    points: np.ndarray, theiler: int, coordinates: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's neighbours outside the Theiler window, sorted by distance (then index).

    Args:
        points: (P, N, d) prepared samples.
        theiler: Theiler window.
        coordinates: ``(0,) * d``, fixing d at compile time.

    Returns:
        ``(order, milestones)``: (P, N, N) neighbour indices (int16 while N fits, else int32),
        row ``[p, t]`` starting with the ``n_valid[t]`` neighbours of sample t of patch p in
        ascending L-infinity distance (the rest of the row is unused); and (P, N, ceil(N / 8))
        float64 distances of every ``_MILESTONE``-th of them (inf past the last), which count the
        neighbours within a radius in a few steps. Other distances are recomputed from the
        samples when needed, which keeps the rows small enough to stay in the CPU caches.
    """
    n_patches, n = points.shape[:2]
    order = np.empty((n_patches, n, n), dtype=np.int16 if n <= np.iinfo(np.int16).max else np.int32)
    milestones = np.empty((n_patches, n, -(-n // _MILESTONE)))
    _fill_sorted_neighbours(points, theiler, order, milestones, coordinates)
    return order, milestones


@numba.njit(cache=True, parallel=True)
def _fill_sorted_neighbours(
    points: np.ndarray,
    theiler: int,
    order: np.ndarray,
    milestones: np.ndarray,
    coordinates: tuple,
) -> None:
    """Fills ``order`` and ``milestones`` (see ``_sorted_neighbours``) by a bucket sort per row.

    Distances go into buckets by the top bits of their float64 representation, which order
    non-negative floats: the finest split of octaves whose buckets over the row's range number
    fewer than 8 n. A counting sort by bucket then leaves only the disorder within buckets (a
    neighbour or two each), which one insertion pass removes; ties keep the order of the sample
    indices. The sort is O(N) per row for any spread of distances, against O(N log N) for a
    comparison sort (measured twice as fast as numpy's sort of packed keys at N = 480).
    """
    n_patches, n = points.shape[:2]
    n_buckets_max = 8 * n + 2
    for p in numba.prange(n_patches):
        values = np.empty(n)
        value_bits = values.view(np.int64)
        extremes = np.empty(2)
        extreme_bits = extremes.view(np.int64)
        indices = np.empty(n, dtype=np.int64)
        buckets = np.empty(n, dtype=np.int64)
        starts = np.empty(n_buckets_max + 1, dtype=np.int64)
        sorted_values = np.empty(n)
        sorted_indices = np.empty(n, dtype=np.int64)
        for t in range(n):
            m = 0
            for s in range(n):
                if abs(s - t) > theiler:
                    values[m] = _distance(points, p, t, s, coordinates)
                    indices[m] = s
                    m += 1
            extremes[0] = np.inf
            extremes[1] = 0.0
            for j in range(m):
                if values[j] > 0.0:
                    extremes[0] = min(extremes[0], values[j])
                extremes[1] = max(extremes[1], values[j])
            # Buckets by the exponent and the top mantissa bits, as many as fit in 8 n; zero
            # distances (exact ties) go below the smallest positive one, into bucket 0.
            shift = 40
            if extremes[1] > 0.0:
                while (extreme_bits[1] >> shift) - (extreme_bits[0] >> shift) >= n_buckets_max - 1:
                    shift += 1
                low = extreme_bits[0] >> shift
                n_buckets = (extreme_bits[1] >> shift) - low + 2
            else:
                low = 0
                n_buckets = 1
            starts[: n_buckets + 1] = 0
            for j in range(m):
                bucket = 0 if values[j] == 0.0 else (value_bits[j] >> shift) - low + 1
                buckets[j] = bucket
                starts[bucket + 1] += 1
            for bucket in range(n_buckets):
                starts[bucket + 1] += starts[bucket]
            for j in range(m):
                position = starts[buckets[j]]
                starts[buckets[j]] = position + 1
                sorted_values[position] = values[j]
                sorted_indices[position] = indices[j]
            for j in range(1, m):
                value = sorted_values[j]
                if sorted_values[j - 1] <= value:
                    continue
                index = sorted_indices[j]
                i = j
                while i > 0 and sorted_values[i - 1] > value:
                    sorted_values[i] = sorted_values[i - 1]
                    sorted_indices[i] = sorted_indices[i - 1]
                    i -= 1
                sorted_values[i] = value
                sorted_indices[i] = index
            for j in range(m):
                order[p, t, j] = sorted_indices[j]
            for j in range(m, n):
                order[p, t, j] = t
            for block in range(milestones.shape[2]):
                position = block * _MILESTONE
                milestones[p, t, block] = sorted_values[position] if position < m else np.inf


@numba.njit(cache=True, inline="always")
def _distance(points: np.ndarray, patch: int, t: int, s: int, coordinates: tuple) -> float:
    """L-infinity distance between samples t and s of one patch of (P, N, d) samples."""
    distance = 0.0
    for c in range(len(coordinates)):
        distance = max(distance, abs(points[patch, s, c] - points[patch, t, c]))
    return distance


@numba.njit(cache=True, parallel=True)
def _kth_neighbour_distances(
    points: np.ndarray, order: np.ndarray, k: int, coordinates: tuple
) -> np.ndarray:
    """(P, N) distance from every sample to its k-th nearest neighbour outside the window."""
    n_patches, n = points.shape[:2]
    kth = np.empty((n_patches, n))
    for p in numba.prange(n_patches):
        for t in range(n):
            kth[p, t] = _distance(points, p, t, order[p, t, k - 1], coordinates)
    return kth


@numba.njit(cache=True, parallel=True)
def _pair_sums(
    points: np.ndarray,
    order: np.ndarray,
    milestones: np.ndarray,
    n_valid: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    tile_starts: np.ndarray,
    k: int,
    rank: int,
    ksg: bool,
    psi: np.ndarray,
    coordinates: tuple,
) -> np.ndarray:
    """Per pair (first[q], second[q]), the sum over samples t of the estimator's pair term.

    KSG: ``psi(n_x + 1) + psi(n_y + 1)``; 3KL: ``log eps``, with eps the distance to the k-th
    nearest joint neighbour. The joint distance is the maximum of the two marginal ones, so it
    is never below the marginal distance of either patch: walking the neighbours of one patch
    (the walked patch) in ascending marginal distance, once that distance reaches the k-th
    smallest joint distance seen so far no later neighbour can enter the k nearest and the walk
    stops. The walk visits every neighbour of the walked patch within eps, so each sample walks
    the patch whose ``rank``-th neighbour is farther (fewer of its samples are near). The walked
    count then falls out of the stopping position; the other patch's count skips along its row's
    milestones, then steps through the last block.

    Args:
        points: (P, N, d) prepared samples.
        order: (P, N, N) sorted neighbour rows (see ``_sorted_neighbours``).
        milestones: (P, N, B) distances of every ``_MILESTONE``-th neighbour in ``order``.
        n_valid: (N,) neighbours of each sample outside the Theiler window.
        first, second: (Q,) patch indices of the pairs, tile by tile.
        tile_starts: (T + 1,) position of each tile's first pair, then Q.
        k: number of nearest neighbours.
        rank: row position compared to choose the walked patch (below every ``n_valid``).
        ksg: True for KSG, False for 3KL.
        psi: digamma(0 .. N + 1).
        coordinates: ``(0,) * d``, fixing d at compile time.

    Returns:
        (Q,) float64 sums.
    """
    n = points.shape[1]
    n_milestones = milestones.shape[2]
    sums = np.zeros(len(first))
    for tile in numba.prange(len(tile_starts) - 1):
        # The k smallest joint distances so far, ascending, kept by a branch-free insertion
        # network: whether a candidate enters is too unpredictable for a branch.
        nearest = np.empty(k)
        for t in range(n):
            for q in range(tile_starts[tile], tile_starts[tile + 1]):
                walked, other = first[q], second[q]
                if _distance(points, walked, t, order[walked, t, rank], coordinates) < _distance(
                    points, other, t, order[other, t, rank], coordinates
                ):
                    walked, other = other, walked
                nearest[:] = np.inf
                eps = np.inf
                stop = 0
                while stop < n_valid[t]:
                    s = order[walked, t, stop]
                    walked_distance = _distance(points, walked, t, s, coordinates)
                    if walked_distance >= eps:
                        break
                    joint = max(walked_distance, _distance(points, other, t, s, coordinates))
                    for m in range(k - 1):
                        smaller = min(nearest[m], joint)
                        joint = max(nearest[m], joint)
                        nearest[m] = smaller
                    eps = min(eps, joint)
                    nearest[k - 1] = eps
                    stop += 1
                if not ksg:
                    sums[q] += np.log(eps)
                    continue
                n_walked = stop
                while (
                    n_walked > 0
                    and _distance(points, walked, t, order[walked, t, n_walked - 1], coordinates)
                    >= eps
                ):
                    n_walked -= 1
                # Neighbours of the other patch closer than eps: whole blocks up to the last
                # milestone below eps, then the rest of that block one by one.
                blocks = 0
                while blocks < n_milestones and milestones[other, t, blocks] < eps:
                    blocks += 1
                n_other = 0
                if blocks > 0:
                    n_other = (blocks - 1) * _MILESTONE + 1
                    end = min(blocks * _MILESTONE, n_valid[t])
                    while (
                        n_other < end
                        and _distance(points, other, t, order[other, t, n_other], coordinates) < eps
                    ):
                        n_other += 1
                sums[q] += psi[n_walked + 1] + psi[n_other + 1]
    return sums
