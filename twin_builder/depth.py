"""Optional depth: a provider maps a frame to a depth map, giving tracks a third coordinate dz.

The default is 2-D motion. A provider is any callable ``frame -> depth`` (:class:`DepthProvider`);
on the command line it is named as ``module:factory``, where ``factory()`` returns the provider
(see :func:`load_depth_provider`). MiDaS is built in (:mod:`twin_builder.midas`, ``--depth midas``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


class DepthProviderError(RuntimeError):
    """A depth provider that cannot be set up (its model, weights or device); one-line message."""


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


@runtime_checkable
class BatchDepthProvider(DepthProvider, Protocol):
    """A provider that also estimates the depth of many frames in one call (a network's batch)."""

    def predict_batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Estimates depth for frames of one size.

        Args:
            frames: N (H, W, 3) uint8 RGB frames.

        Returns:
            (N, H, W) float32 depth, as :meth:`__call__` gives frame by frame.
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
        provider: the depth provider (a :class:`BatchDepthProvider` gets the window in one call).
        frames: T (H, W, 3) uint8 BGR frames of the window (the provider gets them as RGB).
        positions: (T, ..., 2) float (x, y) tracked positions in those frames.

    Returns:
        (T-1, ...) float64 depth changes, depth sampled bilinearly at the points.
    """
    rgb = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in frames]
    if isinstance(provider, BatchDepthProvider):
        depths = provider.predict_batch(rgb)
    else:
        depths = [provider(frame) for frame in rgb]
    depth_at_points = np.empty(positions.shape[:-1])
    for t, depth in enumerate(depths):
        depth = np.asarray(depth, dtype=np.float32)
        flat = positions[t].reshape(1, -1, 2).astype(np.float32)
        sampled = cv2.remap(
            depth, flat[..., 0], flat[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        depth_at_points[t] = sampled.reshape(positions.shape[1:-1])
    return np.diff(depth_at_points, axis=0)
