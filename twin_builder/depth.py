"""Optional depth: a provider maps a frame to a depth map, giving tracks a third coordinate dz.

No depth model can be downloaded on the build machines, so the default is 2-D motion. A provider
is any callable ``frame -> depth`` (:class:`DepthProvider`); on the command line it is named as
``module:factory``, where ``factory()`` returns the provider (see :func:`load_depth_provider`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class DepthProvider(Protocol):
    """Maps an RGB frame to a depth map."""

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Estimates depth.

        Args:
            frame: (H, W, 3) uint8 RGB frame.

        Returns:
            (H, W) float32 depth, in any consistent unit (only its changes are used).
        """
        ...


def load_depth_provider(spec: str) -> DepthProvider:
    """Builds a provider from ``module:factory`` (``factory()`` must return a :class:`DepthProvider`).

    Raises:
        ValueError: the spec is malformed, the module or factory is missing, or the result is not
            callable.
    """
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"--depth-provider {spec!r}: expected 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--depth-provider {spec!r}: {error}") from error
    provider = factory()
    if not isinstance(provider, DepthProvider):
        raise ValueError(
            f"--depth-provider {spec!r}: {factory_name}() returned a non-callable {type(provider)}"
        )
    return provider


def depth_displacements(
    provider: DepthProvider, frames: Sequence[np.ndarray], positions: np.ndarray
) -> np.ndarray:
    """Per-frame depth change of tracked points: dz_t = z_t(p_t) - z_{t-1}(p_{t-1}).

    Args:
        provider: the depth provider.
        frames: T (H, W, 3) uint8 BGR frames of the window (the provider gets them as RGB).
        positions: (T, ..., 2) float (x, y) tracked positions in those frames.

    Returns:
        (T-1, ...) float64 depth changes, depth sampled bilinearly at the points.
    """
    depth_at_points = np.empty(positions.shape[:-1])
    for t, frame in enumerate(frames):
        depth = np.asarray(provider(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), dtype=np.float32)
        flat = positions[t].reshape(1, -1, 2).astype(np.float32)
        sampled = cv2.remap(
            depth, flat[..., 0], flat[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        depth_at_points[t] = sampled.reshape(positions.shape[1:-1])
    return np.diff(depth_at_points, axis=0)
