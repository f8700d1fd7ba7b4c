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

All pairs are computed together in a compiled (numba) kernel, parallel over pairs. With the max
norm the joint distance of a pair is the element-wise maximum of the two marginal distances, so
each patch's distances from every sample to the others are sorted once; then, per pair and sample,
the k-th nearest joint neighbour is found by walking one patch's sorted distances only as far as
the k-th joint distance (no later candidate can be nearer), and KSG's marginal counts are read off
the same sorted rows. The kernels are compiled on first use and cached on disk (numba's cache).
``benchmarks/mi_all_pairs.py`` compares the speed with a per-pair loop of npeet-plus.
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
        Memory: about ``P * N * N * 12`` bytes (sorted distances and neighbour indices); P = 256,
        N = 300 needs about 280 MB.

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
    n_patches, n = samples.shape[:2]
    # (P, d, N): the distance loops read one coordinate of many samples at a time.
    coordinates = np.ascontiguousarray(samples.transpose(0, 2, 1))
    sorted_rows, order = _sorted_neighbours(coordinates, theiler)
    psi = digamma(np.arange(n + 2, dtype=np.float64))
    offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    psi_n = psi[(offsets > theiler).sum(axis=1) + 1].mean()
    first, second = _pairs_in_tiles(n_patches)
    # Choose the walked patch by the distance to a neighbour near the typical count within eps
    # (a few times k): comparing the k-th walks about 10% more candidates. Every sample has at
    # least n - 2 * theiler - 1 candidates, so that position is finite in every row.
    rank = min(3 * k, n - 2 * theiler - 2)
    sums = _pair_sums(
        coordinates, sorted_rows, order, first, second, k, rank, estimator == "ksg", psi
    )
    if estimator == "ksg":
        mi = psi[k] + psi_n - sums / n
    else:
        # H_KL(S) - (d_S log 2): the log 2 terms cancel in H(X) + H(Y) - H(X, Y).
        entropy = psi_n - psi[k] + dims * np.log(sorted_rows[:, :, k - 1]).mean(axis=-1)
        joint_entropy = psi_n - psi[k] + (dims[first] + dims[second]) * sums / n
        mi = entropy[first] + entropy[second] - joint_entropy
    result = np.full((n_patches, n_patches), np.nan)
    result[first, second] = result[second, first] = mi
    return result


def _pairs_in_tiles(n_patches: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j, ordered tile by tile (``_TILE`` patches of i by ``_TILE`` of j).

    Consecutive pairs then share their patches' sorted rows, which stay in the CPU caches: in
    row-major order the second patch changes with every pair (measured 20-25% slower at P = 256).
    """
    first, second = np.triu_indices(n_patches, 1)
    tiled = np.lexsort((second, first, second // _TILE, first // _TILE))
    return first[tiled], second[tiled]


def _sorted_neighbours(coordinates: np.ndarray, theiler: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's distances to the other samples of its patch, sorted, with their indices.

    Sorting (index, distance) pairs is done as one in-place numpy sort of int64 keys: a
    non-negative float64 orders like its bit pattern, so the key is the distance's bits with the
    lowest bits replaced by the neighbour's index. numpy's vectorised integer sort is about three
    times faster than an argsort and needs no second (P, N, N) array. The few neighbours whose
    distances differed only in the replaced bits are then put back in exact order.

    Args:
        coordinates: (P, d, N) prepared samples.
        theiler: Theiler window; excluded neighbours get an infinite distance and sort last.

    Returns:
        (P, N, N) float64 distances, each row ascending (the key array, reused), and the
        (P, N, N) int32 index of the neighbour at each position.
    """
    n_patches, _, n = coordinates.shape
    keys = np.empty((n_patches, n, n), dtype=np.int64)
    index_bits = max(1, (n - 1).bit_length())
    _write_keys(coordinates, theiler, index_bits, keys)
    keys.sort(axis=-1)
    sorted_rows = keys.view(np.float64)
    order = np.empty(keys.shape, dtype=np.int32)
    _unpack_keys(coordinates, theiler, index_bits, keys, sorted_rows, order)
    return sorted_rows, order


@numba.njit(cache=True, parallel=True)
def _write_keys(coordinates: np.ndarray, theiler: int, index_bits: int, keys: np.ndarray) -> None:
    """Fills ``keys[p, t, s]`` with the sort key of the distance between samples t and s of p."""
    n_patches, n_coordinates, n = coordinates.shape
    low_mask = (1 << index_bits) - 1
    for p in numba.prange(n_patches):
        row = np.empty(n)
        row_bits = row.view(np.int64)
        for t in range(n):
            for s in range(n):
                row[s] = _distance(coordinates[p], t, s, n_coordinates)
            for s in range(max(0, t - theiler), min(n, t + theiler + 1)):
                row[s] = np.inf
            for s in range(n):
                keys[p, t, s] = (row_bits[s] & ~low_mask) | s


@numba.njit(cache=True, parallel=True)
def _unpack_keys(
    coordinates: np.ndarray,
    theiler: int,
    index_bits: int,
    keys: np.ndarray,
    sorted_rows: np.ndarray,
    order: np.ndarray,
) -> None:
    """Turns sorted key rows into exact sorted distances (in place) and neighbour indices.

    ``sorted_rows`` is ``keys`` viewed as float64: each key row is copied out before its row is
    overwritten. Distances are recomputed exactly from the samples, and an insertion step moves
    each one back past any larger predecessor (keys only order distances up to the replaced
    bits), so rows come out in exact ascending order.
    """
    n_patches, n_coordinates, n = coordinates.shape
    low_mask = (1 << index_bits) - 1
    for p in numba.prange(n_patches):
        key_row = np.empty(n, dtype=np.int64)
        for t in range(n):
            key_row[:] = keys[p, t]
            values = sorted_rows[p, t]
            indices = order[p, t]
            for r in range(n):
                s = key_row[r] & low_mask
                value = _distance(coordinates[p], t, s, n_coordinates)
                if abs(s - t) <= theiler:
                    value = np.inf
                m = r
                while m > 0 and values[m - 1] > value:
                    values[m] = values[m - 1]
                    indices[m] = indices[m - 1]
                    m -= 1
                values[m] = value
                indices[m] = s


@numba.njit(cache=True, inline="always")
def _distance(patch: np.ndarray, t: int, s: int, n_coordinates: int) -> float:
    """L-infinity distance between samples t and s of one (d, N) patch."""
    distance = 0.0
    for c in range(n_coordinates):
        distance = max(distance, abs(patch[c, s] - patch[c, t]))
    return distance


@numba.njit(cache=True, parallel=True)
def _pair_sums(
    coordinates: np.ndarray,
    sorted_rows: np.ndarray,
    order: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    k: int,
    rank: int,
    ksg: bool,
    psi: np.ndarray,
) -> np.ndarray:
    """Per pair (first[q], second[q]), the sum over samples t of the estimator's pair term.

    KSG: ``psi(n_x + 1) + psi(n_y + 1)``; 3KL: ``log eps``, with eps the distance to the k-th
    nearest joint neighbour. The joint distance is the maximum of the two marginal ones, so it
    is never below the marginal distance of either patch: walking the candidates of one patch
    (the walked patch) in ascending marginal distance, once that distance reaches the k-th
    smallest joint distance seen so far no later candidate can enter the k nearest and the walk
    stops. The walk visits every sample of the walked patch within eps, so each sample walks the
    patch whose ``rank``-th marginal neighbour is farther (fewer of its samples are near). The
    walked count then falls out of the stopping position; the other is a scan of its sorted row.

    Args:
        coordinates: (P, d, N) prepared samples.
        sorted_rows: (P, N, N) ascending marginal distances; excluded neighbours are inf, so
            every row ends with inf (the sample itself).
        order: (P, N, N) neighbour index of each entry of ``sorted_rows``.
        first, second: (Q,) patch indices of the pairs.
        k: number of nearest neighbours.
        rank: position in the sorted rows compared to choose the walked patch; every row must
            be finite there.
        ksg: True for KSG, False for 3KL.
        psi: digamma(0 .. N + 1).

    Returns:
        (Q,) float64 sums.
    """
    n_coordinates, n = coordinates.shape[1:]
    sums = np.empty(len(first))
    for q in numba.prange(len(first)):
        # The k smallest joint distances so far, ascending, kept by a branch-free insertion
        # network: whether a candidate enters is too unpredictable for a branch.
        nearest = np.empty(k)
        total = 0.0
        for t in range(n):
            if sorted_rows[first[q], t, rank] >= sorted_rows[second[q], t, rank]:
                walked, other = first[q], second[q]
            else:
                walked, other = second[q], first[q]
            walked_row = sorted_rows[walked, t]
            walked_order = order[walked, t]
            other_patch = coordinates[other]
            nearest[:] = np.inf
            eps = np.inf
            stop = 0
            while walked_row[stop] < eps:
                other_distance = _distance(other_patch, t, walked_order[stop], n_coordinates)
                joint = max(walked_row[stop], other_distance)
                for m in range(k - 1):
                    smaller = min(nearest[m], joint)
                    joint = max(nearest[m], joint)
                    nearest[m] = smaller
                eps = min(eps, joint)
                nearest[k - 1] = eps
                stop += 1
            if not ksg:
                total += np.log(eps)
                continue
            n_walked = stop
            while n_walked > 0 and walked_row[n_walked - 1] >= eps:
                n_walked -= 1
            # A linear scan beats a binary search here: the count is small and the scan streams.
            other_row = sorted_rows[other, t]
            n_other = 0
            while other_row[n_other] < eps:
                n_other += 1
            total += psi[n_walked + 1] + psi[n_other + 1]
        sums[q] = total
    return sums
