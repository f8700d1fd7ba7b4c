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

All pairs are computed together in compiled (numba) kernels, parallel over chunks of samples.
With the max norm the joint distance of a pair is the element-wise maximum of the two marginal
distances. For each sample t, every patch's neighbours are sorted once (a bucket sort on the bits
of the distances, O(N), as far as 4 sqrt(k N) neighbours) and shared by its P - 1 pairs; then, per
pair, the k-th nearest joint neighbour is found by walking one patch's sorted neighbours only as
far as the k-th joint distance (no later neighbour can be nearer), and both marginal counts are
binary searches in the sorted rows (a count past their sorted part scans all the distances). A
patch is walked against eight others at once, one per vector lane (``twin_builder.simd``);
patches are ranked by how far their neighbours lie, so that the eight walks sharing a vector are
about equally long. Per pair this costs about N sqrt(N) (the walk visits the marginal neighbours
within eps, about sqrt(k N) for independent patches) plus each patch's O(N^2) sorting shared by
its P - 1 pairs. At the window lengths of mining (N = 60 to 480) a k-d tree in the
2d-dimensional joint space (O(log N) per query) and a scan along one sorted coordinate were both
measured slower: each of their queries visits several times more candidates. The kernels are
compiled once per sample dimension d and k on first use and cached on disk (numba's cache).
``benchmarks/mi_all_pairs.py`` times them against a per-pair loop of npeet-plus and a k-d tree.
"""

from __future__ import annotations

import llvmlite.binding
import numba
import numpy as np
from numba.cpython.unsafe.tuple import tuple_setitem
from scipy.special import digamma

from twin_builder.simd import (
    LANES,
    absolute,
    all_at_least,
    fill,
    get_lane,
    load,
    maximum,
    minimum,
    pack,
    repeat,
    splat,
    subtract,
)

ESTIMATORS: tuple[str, ...] = ("ksg", "3kl")
# Relative jitter (after standardisation) per estimator: KSG only counts neighbours, so the usual
# 1e-10 is enough; 3KL takes logs of distances, which collapse on ties unless the noise is larger.
DEFAULT_JITTER: dict[str, float] = {"ksg": 1e-10, "3kl": 1e-6}
# LLVM's x86 backend turns conditional moves on a loop's critical path into branches, betting on
# predictable conditions; in ``_count_below_lanes`` each step is a coin flip, and the branches
# made counting 2.2x slower (measured). The option holds for the process's later compilations; it
# changes code generation only, never results.
llvmlite.binding.set_option("", "-x86-cmov-converter=false")
# The loops over lanes must be unrolled for each lane's state to live in registers; LLVM's
# default threshold unrolls four lanes but not eight, which then ran 1.06-1.15x slower than four
# (measured). Like the option above, it holds for later compilations and never changes results.
llvmlite.binding.set_option("", "-unroll-threshold=2000")
# Chunks of samples whose pair sums are kept apart and added in order, so that the result does
# not depend on how many threads ran them.
_CHUNKS = 16
# Each row is sorted only as far as this many times the ranking position (and whatever shares the
# last bucket); later neighbours stay unsorted. In ``benchmarks/mi_all_pairs.py`` (N = 120 and
# 480) no walk went past 2 times it, and 1.7-2.5% of the other patches' counts go past it, which
# then scan the row's distances.
NEAREST_PER_RANK = 4
_LARGEST_INT64 = np.iinfo(np.int64).max


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
        Memory: per thread, the distances and sorted rows of one sample and the samples laid
        out for the vector walk (``(20 + 8 d) P N`` bytes), and the pair sums of 16 chunks of
        samples (``64 P (P - 1)`` bytes): P = 256, N = 480, d = 2 needs about 14 MB on 2 threads.

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
    # (P, d, N): a patch's distances to its other samples are then vector operations.
    points = np.ascontiguousarray(samples.transpose(0, 2, 1))
    # The tuple's length is part of its numba type: every kernel is compiled once per d, with the
    # loops over coordinates unrolled (several times faster than a loop of run-time length).
    coordinates = (0,) * n_coordinates
    offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    n_valid = (offsets > theiler).sum(axis=1)
    psi = digamma(np.arange(n + 2, dtype=np.float64))
    psi_n = psi[n_valid + 1].mean()
    # Rank the patches by the distance to a neighbour near the typical count within eps (about
    # sqrt(k N) for independent patches): on the inputs of benchmarks/mi_all_pairs.py at
    # N = 480, ranking by the 38th walks 5% fewer candidates than by the 10th and 13% fewer than
    # by the k-th. Every sample has at least n - 2 * theiler - 1 candidates, so that position
    # holds a neighbour in every row.
    rank = min(int(np.sqrt(k * n)), n - 2 * theiler - 2)
    partial, kth = _pair_sums(
        points,
        theiler,
        rank,
        NEAREST_PER_RANK * rank + 1,
        (np.inf,) * k,
        estimator == "ksg",
        psi,
        coordinates,
    )
    sums = partial.sum(axis=0)
    first, second = np.triu_indices(n_patches, 1)
    if estimator == "ksg":
        mi = psi[k] + psi_n - sums / n
    else:
        # H_KL(S) - (d_S log 2): the log 2 terms cancel in H(X) + H(Y) - H(X, Y).
        entropy = psi_n - psi[k] + dims * np.log(kth).mean(axis=-1)
        joint_entropy = psi_n - psi[k] + (dims[first] + dims[second]) * sums / n
        mi = entropy[first] + entropy[second] - joint_entropy
    result = np.full((n_patches, n_patches), np.nan)
    result[first, second] = result[second, first] = mi
    return result


@numba.njit(cache=True, parallel=True)
def _pair_sums(
    points: np.ndarray,
    theiler: int,
    rank: int,
    nearest: int,
    infinities: tuple,
    ksg: bool,
    psi: np.ndarray,
    coordinates: tuple,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of patches, the sum over samples t of the estimator's pair term.

    KSG: ``psi(n_x + 1) + psi(n_y + 1)``; 3KL: ``log eps``, with eps the distance to the k-th
    nearest joint neighbour. Samples are taken one at a time, in ``_CHUNKS`` chunks run in
    parallel. For sample t, every patch's neighbours are sorted, and the patches are ranked by
    the distance to their ``rank``-th neighbour, farthest first: of each pair, the patch ranked
    first (fewer of its samples are near) is walked (see ``_walk``). Each patch is walked
    against the patches ranked after it, ``LANES`` at a time in the lanes of one vector;
    grouping them by rank keeps the walks sharing a vector about equally long.

    Args:
        points: (P, d, N) prepared samples, coordinates first.
        theiler: Theiler window.
        rank: row position whose distance ranks the patches (below every row's length).
        nearest: how many neighbours of each row to sort at least (see ``_sort_neighbours``).
        infinities: ``(inf,) * k``, fixing k at compile time.
        ksg: True for KSG, False for 3KL.
        psi: digamma(0 .. N + 1).
        coordinates: ``(0,) * d``, fixing d at compile time.

    Returns:
        ``(partial, kth)``: (C, P (P - 1) / 2) sums over each chunk of samples for the pairs in
        ``np.triu_indices`` order (the caller adds the chunks in order, so the result does not
        depend on the number of threads), and (P, N) each sample's distance to its k-th nearest
        marginal neighbour.
    """
    n_patches, d, n = points.shape
    k = len(infinities)
    n_chunks = min(_CHUNKS, n)
    n_groups = (n_patches + LANES - 1) // LANES
    partial = np.zeros((n_chunks, n_patches * (n_patches - 1) // 2))
    kth = np.empty((n_patches, n))
    for chunk in numba.prange(n_chunks):
        # Per patch, its distances to the other samples (in sample order) and their sorted part.
        distances = np.empty((n_patches, n))
        values = np.empty((n_patches, n))
        indices = np.empty((n_patches, n), dtype=np.int32)
        farthest_first = np.empty(n_patches)
        # groups[g, s, c, lane]: coordinate c of sample s of the patch ranked LANES g + lane (the
        # last patch repeated to fill the last group), so that one load fills all lanes.
        groups = np.empty((n_groups, n, d, LANES))
        sorted_lengths = np.empty(n_patches, dtype=np.int64)
        scratch = _sort_scratch(n)
        for t in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            m = 0
            for p in range(n_patches):
                m, sorted_lengths[p] = _sort_neighbours(
                    points,
                    p,
                    t,
                    theiler,
                    nearest,
                    distances,
                    values,
                    indices,
                    scratch,
                    coordinates,
                )
                kth[p, t] = values[p, k - 1]
                farthest_first[p] = -values[p, rank]
            # Every row is sorted this far, and its later neighbours are no nearer.
            all_sorted = min(nearest, m)
            ranked = np.argsort(farthest_first)
            members = ranked[np.minimum(np.arange(n_groups * LANES), n_patches - 1)]
            members = members.reshape(n_groups, LANES)
            for group in range(n_groups):
                for s in range(n):
                    for c in range(d):
                        for lane in range(LANES):
                            groups[group, s, c, lane] = points[
                                _unsigned(members[group, lane]), c, s
                            ]
            for group in range(n_groups):
                first = group * LANES
                others = fill(members[group, 0])
                for lane in range(LANES):
                    others = tuple_setitem(others, lane, members[group, lane])
                for walked_rank in range(min(first + LANES - 1, n_patches - 1)):
                    walked = ranked[walked_rank]
                    starts = _lane_starts(walked_rank, first, n_patches)
                    eps, stop = _walk(
                        groups,
                        group,
                        t,
                        values,
                        indices,
                        walked,
                        sorted_lengths[walked],
                        repeat(infinities, starts),
                        coordinates,
                    )
                    if stop == sorted_lengths[walked] < m:
                        # The walk needs neighbours past the sorted ones (rare): sort the whole
                        # row and walk again.
                        _, sorted_lengths[walked] = _sort_neighbours(
                            points,
                            walked,
                            t,
                            theiler,
                            m,
                            distances,
                            values,
                            indices,
                            scratch,
                            coordinates,
                        )
                        eps, stop = _walk(
                            groups,
                            group,
                            t,
                            values,
                            indices,
                            walked,
                            m,
                            repeat(infinities, starts),
                            coordinates,
                        )
                    if ksg:
                        walked_counts = _count_below_lanes(
                            values, distances, fill(walked), stop, stop, eps
                        )
                        other_counts = _count_below_lanes(
                            values, distances, others, all_sorted, m, eps
                        )
                    for lane in range(LANES):
                        other_rank = first + lane
                        if other_rank <= walked_rank or other_rank >= n_patches:
                            continue
                        if ksg:
                            term = psi[walked_counts[lane] + 1] + psi[other_counts[lane] + 1]
                        else:
                            term = np.log(get_lane(eps, lane))
                        low = min(walked, others[lane])
                        high = max(walked, others[lane])
                        partial[
                            chunk, low * (2 * n_patches - low - 1) // 2 + high - low - 1
                        ] += term
    return partial, kth


@numba.njit(cache=True, inline="always")
def _unsigned(index: int):
    """A non-negative index as unsigned, so that numba skips its negative-index wraparound (two
    instructions per access, on the critical path of the binary searches)."""
    return np.uint64(index)


@numba.njit(cache=True, inline="always")
def _lane_starts(walked_rank: int, first: int, n_patches: int):
    """Where the k nearest of each lane start, the lanes holding the patches ranked ``first``
    onwards: at inf, or at -inf (never holding up the walk) when the lane's patch is not ranked
    after the walked one or fills the last group."""
    starts = fill(0.0)
    for lane in range(LANES):
        other_rank = first + lane
        start = np.inf if walked_rank < other_rank < n_patches else -np.inf
        starts = tuple_setitem(starts, lane, start)
    return pack(starts)


@numba.njit(cache=True, inline="always")
def _walk(
    groups: np.ndarray,
    group: int,
    t: int,
    values: np.ndarray,
    indices: np.ndarray,
    walked: int,
    m: int,
    nearest: tuple,
    coordinates: tuple,
):
    """The k-th smallest joint distance of sample t of ``LANES`` pairs sharing their walked patch.

    The joint distance is the maximum of the two marginal ones, so it is never below the
    walked patch's: walking that patch's neighbours (row ``walked`` of ``values`` and
    ``indices``, sorted for its first ``m``) in ascending distance, once the distance reaches
    every lane's k-th smallest joint distance so far, no later neighbour can enter any lane's k
    nearest and the walk stops. The k smallest of all lanes are k vectors (``nearest``, from
    ``simd.repeat``), kept by an insertion network of minima and maxima. Rows are indexed, never
    sliced, here and in the other kernels: numba keeps a slice's reference count with atomic
    operations, which were a fifth of the kernel's profile when the rows were slices.

    Args:
        groups: (G, N, d, LANES) samples of groups of patches; ``group``'s are the other patches,
            one per lane.

    Returns:
        ``(eps, stop)``: the lanes' k-th smallest joint distances and how many neighbours were
        walked (every later one is at least as far as each lane's eps, unless ``stop == m``
        where the row goes on unsorted).
    """
    k = len(nearest)
    d = len(coordinates)
    # Where the group's samples start in the flat ``groups``.
    start = group * groups.shape[1] * d
    stop = 0
    while stop < m:
        walked_distance = values[walked, _unsigned(stop)]
        if all_at_least(walked_distance, nearest[k - 1]):
            break
        s = indices[walked, _unsigned(stop)]
        joint = splat(walked_distance)
        for c in range(d):
            offset = subtract(
                load(groups, (start + s * d + c) * LANES),
                load(groups, (start + t * d + c) * LANES),
            )
            joint = maximum(joint, absolute(offset))
        for r in range(k):
            smaller = minimum(nearest[r], joint)
            joint = maximum(nearest[r], joint)
            nearest = tuple_setitem(nearest, r, smaller)
        stop += 1
    return nearest[k - 1], stop


@numba.njit(cache=True, inline="always")
def _count_below_lanes(
    values: np.ndarray, distances: np.ndarray, rows: tuple, sorted_end: int, end: int, bounds
) -> tuple:
    """For each lane, how many neighbours of row ``rows[lane]`` are nearer than that lane of
    ``bounds``: of its first ``sorted_end`` (>= 1) sorted ones when ``end == sorted_end``, of all
    ``end`` when ``end`` is the row's length (no neighbour past the sorted ones is nearer).

    The binary searches of the sorted ``values`` run interleaved, lane by lane in each step, so
    that their memory reads overlap, and their steps are conditional moves (the direction of each
    step is a coin flip). A lane whose bound is above all the sorted values counts the row's
    ``distances`` by a scan instead.
    """
    bases = fill(0)
    size = sorted_end
    while size > 1:
        half = size >> 1
        for lane in range(LANES):
            base = bases[lane]
            below = values[rows[lane], _unsigned(base + half - 1)] < get_lane(bounds, lane)
            bases = tuple_setitem(bases, lane, base + half if below else base)
        size -= half
    counts = bases
    for lane in range(LANES):
        count = _count_rest(
            values, distances, rows[lane], bases[lane], sorted_end, end, get_lane(bounds, lane)
        )
        counts = tuple_setitem(counts, lane, count)
    return counts


@numba.njit(cache=True, inline="always")
def _count_rest(
    values: np.ndarray,
    distances: np.ndarray,
    row: int,
    base: int,
    sorted_end: int,
    end: int,
    bound: float,
) -> int:
    """A binary search's count in ``row``, from its last step ``base``; when every sorted value
    is below ``bound`` and the row goes on (``end > sorted_end``), the count of all its distances.
    """
    count = base + (values[row, _unsigned(base)] < bound)
    if count == sorted_end < end:
        count = 0
        for j in range(end):
            count += distances[row, _unsigned(j)] < bound
    return count


# Inlined by LLVM, not by numba (``inline="always"``), whose inlining keeps the loops that call it
# from vectorising (measured).
@numba.njit(cache=True)
def _distance(points: np.ndarray, patch: int, t: int, s: int, coordinates: tuple) -> float:
    """L-infinity distance between samples t and s of one patch of (P, d, N) samples."""
    distance = 0.0
    for c in range(len(coordinates)):
        distance = max(distance, abs(points[patch, c, s] - points[patch, c, t]))
    return distance


@numba.njit(cache=True, inline="always")
def _sort_neighbours(
    points: np.ndarray,
    patch: int,
    t: int,
    theiler: int,
    nearest: int,
    distances: np.ndarray,
    values: np.ndarray,
    indices: np.ndarray,
    scratch: tuple,
    coordinates: tuple,
) -> tuple[int, int]:
    """Sorts the ``nearest`` nearest neighbours of sample t of ``patch`` by distance, in O(N).

    The candidates are the samples s with ``|s - t| > theiler``. Writes their L-infinity
    distances into row ``patch`` of the (P, N) ``distances``, in sample order, and at least
    ``nearest`` of them (all if there are fewer) into that row of ``values`` and their samples
    into that row of ``indices``, nearest first (ties in sample order); no other candidate is
    nearer than the last of those. The rest of the three rows is left as it was. ``scratch`` is
    ``_sort_scratch(N)``, reused row after row. Distances go into buckets by the top bits of their
    float64 representation, which order non-negative floats: the finest split of octaves whose
    buckets over the row's range number fewer than 2 N. A counting sort of the candidates in the
    buckets that complete ``nearest`` then leaves only the disorder within buckets (a neighbour
    or two each), which one insertion pass removes.

    Returns:
        ``(m, sorted_length)``: how many candidates there are, and how many of them are sorted.
    """
    buckets, starts, chosen = scratch
    n = points.shape[2]
    before = max(t - theiler, 0)
    skipped = min(t + theiler + 1, n) - before
    m = n - skipped
    # Candidate j is sample j before the Theiler window and j + skipped after it: two runs with
    # no test per sample, and no index array to fill.
    for s in range(before):
        distances[patch, s] = _distance(points, patch, t, s, coordinates)
    for s in range(before + skipped, n):
        distances[patch, s - skipped] = _distance(points, patch, t, s, coordinates)
    # Buckets by the exponent and the top mantissa bits, as many as fit in 2 N. The bits of
    # non-negative floats order them as integers; integer extremes are a loop that vectorises
    # (float ones are not, without fast-math). Zero distances (exact ties) go into bucket 0,
    # below the smallest positive one.
    bits = distances.view(np.int64)
    low_bits = _LARGEST_INT64
    high_bits = 0
    for j in range(m):
        low_bits = min(low_bits, bits[patch, j] if bits[patch, j] > 0 else _LARGEST_INT64)
        high_bits = max(high_bits, bits[patch, j])
    n_buckets_max = 2 * n + 2
    shift = 40
    if high_bits > 0:
        while (high_bits >> shift) - (low_bits >> shift) >= n_buckets_max - 1:
            shift += 1
        low = low_bits >> shift
        n_buckets = (high_bits >> shift) - low + 2
    else:
        low = 0
        n_buckets = 1
    starts[: n_buckets + 1] = 0
    for j in range(m):
        buckets[j] = 0 if distances[patch, j] == 0.0 else (bits[patch, j] >> shift) - low + 1
    for j in range(m):
        starts[_unsigned(buckets[j] + 1)] += 1
    # Bucket starts, as far as the bucket (``last``) that completes ``nearest``.
    target = min(nearest, m)
    last = -1
    sorted_length = 0
    while sorted_length < target:
        last += 1
        sorted_length += starts[_unsigned(last + 1)]
        starts[_unsigned(last + 1)] = sorted_length
    # The candidates in those buckets, in order, with no branch (a third of the row, at random):
    # scattering only them, not the whole row, makes the sort 1.2x faster at N = 480 (measured).
    n_chosen = 0
    for j in range(m):
        chosen[_unsigned(n_chosen)] = j
        n_chosen += buckets[j] <= last
    for i in range(n_chosen):
        j = chosen[i]
        bucket = _unsigned(buckets[_unsigned(j)])
        position = starts[bucket]
        starts[bucket] = position + 1
        values[patch, _unsigned(position)] = distances[patch, _unsigned(j)]
        indices[patch, _unsigned(position)] = j if j < before else j + skipped
    for j in range(1, sorted_length):
        value = values[patch, j]
        if values[patch, j - 1] <= value:
            continue
        index = indices[patch, j]
        i = j
        while i > 0 and values[patch, i - 1] > value:
            values[patch, i] = values[patch, i - 1]
            indices[patch, i] = indices[patch, i - 1]
            i -= 1
        values[patch, i] = value
        indices[patch, i] = index
    return m, sorted_length


@numba.njit(cache=True)
def _sort_scratch(n: int) -> tuple:
    """Buffers of ``_sort_neighbours`` for rows of N samples: buckets, bucket starts, chosen."""
    return (
        np.empty(n, dtype=np.int64),
        np.empty(2 * n + 3, dtype=np.int64),
        np.empty(n, dtype=np.int64),
    )
