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

All pairs are computed together: with the max norm the joint distance of a pair is the element-wise
maximum of the two marginal distance matrices, so the ``(P, N, N)`` marginal matrices are built
once and each pair costs one ``np.maximum`` and one ``np.partition`` (for its k-th-neighbour
radii); KSG's marginal counts are then binary searches in the rows of the marginal matrices,
sorted once. ``benchmarks/mi_all_pairs.py`` compares the speed with a per-pair loop of npeet-plus.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

ESTIMATORS: tuple[str, ...] = ("ksg", "3kl")
# Relative jitter (after standardisation) per estimator: KSG only counts neighbours, so the usual
# 1e-10 is enough; 3KL takes logs of distances, which collapse on ties unless the noise is larger.
DEFAULT_JITTER: dict[str, float] = {"ksg": 1e-10, "3kl": 1e-6}
# Upper bound on the temporary (B, N, N) float64 arrays of one block of pairs.
_BLOCK_BYTES = 2**21
# Upper bound on the buffered KSG joint radii counted together.
_COUNT_BUFFER_BYTES = 2**24


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
        Memory: about ``P * N * N * 8`` bytes (twice that for KSG) plus a few MiB of blocks;
        P = 256, N = 300 needs about 370 MB with KSG.

    Raises:
        ValueError: on a bad shape, estimator, ``k`` or ``theiler``, or too few samples.
    """
    samples = _check_samples(samples, k, theiler)
    _check_estimator(estimator)
    prepared = _standardise_and_jitter([samples], estimator, seed, jitter)[0]
    distances = _marginal_distances(prepared)
    dims = np.full(len(prepared), prepared.shape[-1])
    return _all_pairs(distances, dims, estimator, k, theiler)


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
    distances = np.concatenate([_marginal_distances(x), _marginal_distances(y)])
    dims = np.array([x.shape[-1], y.shape[-1]])
    return float(_all_pairs(distances, dims, estimator, k, theiler)[0, 1])


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


def _marginal_distances(samples: np.ndarray) -> np.ndarray:
    """(P, N, d) samples -> (P, N, N) L-infinity distances between samples of the same patch."""
    distances = np.abs(samples[:, :, None, 0] - samples[:, None, :, 0])
    for c in range(1, samples.shape[-1]):
        coordinate = np.abs(samples[:, :, None, c] - samples[:, None, :, c])
        np.maximum(distances, coordinate, out=distances)
    return distances


def _all_pairs(
    distances: np.ndarray, dims: np.ndarray, estimator: str, k: int, theiler: int
) -> np.ndarray:
    """The (P, P) MI matrix from the (P, N, N) marginal distances and the (P,) dimensions.

    Pairs are processed in blocks ``(i, j_start:j_stop)`` whose joint-distance array stays below
    ``_BLOCK_BYTES``; the KSG neighbour counts of many blocks are then done together (see
    ``_count_below``), buffering at most ``_COUNT_BUFFER_BYTES`` of joint radii.
    """
    n_patches, n = distances.shape[:2]
    offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    excluded = offsets <= theiler
    # Excluded neighbours get an infinite distance: never among the k nearest, never counted.
    distances[:, excluded] = np.inf
    psi = digamma(np.arange(n + 2, dtype=np.float64))
    psi_n = psi[(~excluded).sum(axis=1) + 1].mean()

    if estimator == "3kl":
        # H_KL(S) - (d_S log 2): the log 2 terms cancel in H(X) + H(Y) - H(X, Y).
        kth = np.partition(distances, k - 1, axis=-1)[..., k - 1]
        entropy = psi_n - psi[k] + dims * np.log(kth).mean(axis=-1)
    else:
        sorted_rows = np.sort(distances, axis=-1)

    result = np.full((n_patches, n_patches), np.nan)
    block = max(1, _BLOCK_BYTES // (8 * n * n))
    buffer_pairs = max(1, _COUNT_BUFFER_BYTES // (8 * n))
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    radii: list[np.ndarray] = []

    def count_buffered_pairs() -> None:
        first, second = np.concatenate(firsts), np.concatenate(seconds)
        eps = np.concatenate(radii)
        n_x = _count_below(sorted_rows, first, eps)
        n_y = _count_below(sorted_rows, second, eps)
        mi = psi[k] + psi_n - (psi[n_x + 1] + psi[n_y + 1]).mean(axis=-1)
        result[first, second] = result[second, first] = mi
        firsts.clear()
        seconds.clear()
        radii.clear()

    for i in range(n_patches - 1):
        for start in range(i + 1, n_patches, block):
            stop = min(start + block, n_patches)
            joint = np.maximum(distances[i][None], distances[start:stop])
            joint.partition(k - 1, axis=-1)
            eps = joint[..., k - 1]
            if estimator == "ksg":
                firsts.append(np.full(stop - start, i))
                seconds.append(np.arange(start, stop))
                radii.append(eps.copy())
                if len(radii) * block >= buffer_pairs:
                    count_buffered_pairs()
            else:
                joint_dims = dims[i] + dims[start:stop]
                joint_entropy = psi_n - psi[k] + joint_dims * np.log(eps).mean(axis=-1)
                mi = entropy[i] + entropy[start:stop] - joint_entropy
                result[i, start:stop] = result[start:stop, i] = mi
    if radii:
        count_buffered_pairs()
    return result


def _count_below(sorted_rows: np.ndarray, patches: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per row, how many of a patch's distances are strictly below a radius.

    A branch-free binary search over the rows, vectorised over all queries: a fixed number of
    gather-compare steps on (Q, N) arrays is much cheaper than comparing every distance.

    Args:
        sorted_rows: (P, N, N) marginal distances, each row sorted ascending; the last entry of
            every row is inf (the sample itself is always excluded).
        patches: (Q,) patch index of each query.
        radii: (Q, N) radius for each query and sample.

    Returns:
        (Q, N) int64 counts ``#{j : sorted_rows[patches[q], t, j] < radii[q, t]}``.
    """
    n = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    row_starts = patches[:, None] * (n * n) + np.arange(n)[None, :] * n
    counts = np.zeros(radii.shape, dtype=np.int64)
    step = 1 << ((n - 1).bit_length() - 1)  # the largest power of two <= n - 1 (n >= 2)
    while step:
        # Probe position counts + step - 1, clipped to the row's last (infinite) entry.
        probe = flat[row_starts + np.minimum(counts + (step - 1), n - 1)]
        counts += step * (probe < radii)
        step >>= 1
    return counts
