"""MiDaS monocular depth as a depth provider: ``twin-builder build --depth midas``.

MiDaS (Ranftl et al., "Towards Robust Monocular Depth Estimation", TPAMI 2022) is loaded through
``torch.hub``: from its upstream repository (``intel-isl/MiDaS``; torch keeps the code and the
weights in its hub cache, ``~/.cache/torch/hub``), or from a local directory, either a clone of
the repository or a copied torch hub cache that holds one. The model and MiDaS's own input
transform for it (``small_transform`` or ``dpt_transform`` of the hub's ``transforms`` entry point)
are loaded once per process and run on batches of frames, on the CPU or a GPU.

What the provider returns: MiDaS predicts inverse depth up to an unknown scale and shift per image
(it is trained with a scale- and shift-invariant loss), so only the image's depth *layout* is
meaningful. Each prediction is resized to the frame and aligned as that loss aligns it: minus its
median, divided by its mean absolute deviation from the median. The tracks' ``dz`` (frame-to-frame
change at a tracked point) is then free of MiDaS's per-frame scale and shift, which would
otherwise add one common change to every patch (a spurious shared signal), and of global changes
such as the camera moving forward, the depth counterpart of removing camera motion from dx, dy.
``dz`` is unitless and positive when a point comes nearer; the MI estimator standardises every
coordinate, so its scale does not matter.

Worker processes build videos with the ``--depth-provider`` spec alone, so where the model comes
from and where it runs (``--midas-hub``, ``--midas-weights``, ``--depth-device``) reach them as the
environment variables ``TWIN_BUILDER_MIDAS_HUB``, ``TWIN_BUILDER_MIDAS_WEIGHTS`` and
``TWIN_BUILDER_DEPTH_DEVICE`` (see :func:`midas_environment`). Only the model variant is part of
the store's parameters: the same weights give the same store wherever they are read from.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from twin_builder.depth import DepthProviderError

UPSTREAM = "intel-isl/MiDaS"
# Hub entry point of each model variant -> attribute of the hub's ``transforms`` it is fed with.
VARIANT_TRANSFORMS = {
    "MiDaS_small": "small_transform",
    "DPT_Hybrid": "dpt_transform",
    "DPT_Large": "dpt_transform",
}
HUB_ENV = "TWIN_BUILDER_MIDAS_HUB"
WEIGHTS_ENV = "TWIN_BUILDER_MIDAS_WEIGHTS"
DEVICE_ENV = "TWIN_BUILDER_DEPTH_DEVICE"
# Frames per forward pass: a 60-frame window in four passes keeps DPT_Large's activations on the
# CPU to a few GiB.
DEFAULT_BATCH_SIZE = 16
HOW_TO_GET_IT = (
    "without network, get MiDaS once on a machine with network and pass --midas-hub "
    "(README, 'Depth with MiDaS')"
)


class MidasDepth:
    """A :class:`~twin_builder.depth.DepthProvider` running MiDaS on batches of frames.

    Args:
        model: a MiDaS model, mapping (B, 3, h, w) float input to (B, h, w) inverse depth.
        transform: MiDaS's transform for it, mapping an (H, W, 3) uint8 RGB frame to (1, 3, h, w).
        device: where the model runs.
        batch_size: frames per forward pass.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        transform: Callable[[np.ndarray], torch.Tensor],
        device: torch.device,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model.to(device).eval()
        self.transform = transform
        self.device = device
        self.batch_size = batch_size

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Aligned inverse depth of one (H, W, 3) uint8 RGB frame, (H, W) float32."""
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Aligned inverse depth of frames of one size.

        Args:
            frames: N (H, W, 3) uint8 RGB frames.

        Returns:
            (N, H, W) float32: per frame, MiDaS's inverse depth resized to the frame, minus its
            median, over its mean absolute deviation from the median.
        """
        height, width = frames[0].shape[:2]
        aligned = []
        with torch.inference_mode():
            for first in range(0, len(frames), self.batch_size):
                chunk = frames[first : first + self.batch_size]
                inputs = torch.cat([self.transform(frame) for frame in chunk]).to(self.device)
                prediction = F.interpolate(
                    self.model(inputs).unsqueeze(1),
                    size=(height, width),
                    mode="bicubic",
                    align_corners=False,
                )[:, 0]
                flat = prediction.flatten(1)
                median = flat.median(dim=1, keepdim=True).values
                spread = (flat - median).abs().mean(dim=1, keepdim=True)
                spread = torch.where(spread > 0, spread, torch.ones_like(spread))
                aligned.append(((flat - median) / spread).view_as(prediction).float().cpu())
        return torch.cat(aligned).numpy()


@contextmanager
def _torch_hub_dir(folder: Path | None) -> Iterator[None]:
    """Points torch.hub's cache at ``folder`` (None: leaves it) while MiDaS loads: MiDaS's own code
    loads a backbone through torch.hub, which must find it in the same cache."""
    if folder is None:
        yield
        return
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(folder))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


def _hub_repository(hub: Path) -> tuple[Path, Path | None]:
    """The MiDaS repository in ``hub`` and the torch hub cache to use with it.

    Raises:
        DepthProviderError: ``hub`` is neither a MiDaS clone nor a torch hub cache holding one.
    """
    if (hub / "hubconf.py").is_file():
        return hub, None
    cached = sorted(path.parent for path in hub.glob("*_MiDaS_*/hubconf.py"))
    if not cached:
        raise DepthProviderError(
            f"--midas-hub {hub}: neither a MiDaS clone (no hubconf.py) nor a torch hub directory "
            "holding one (no intel-isl_MiDaS_master/hubconf.py)"
        )
    return cached[-1], hub


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _read_weights(path: Path) -> dict:
    """A MiDaS state dict from a file (plain, or MiDaS's training checkpoint around it).

    Raises:
        DepthProviderError: the file cannot be read, or is not a PyTorch file of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise DepthProviderError(f"--midas-weights {path}: {error.strerror}") from None
    except (EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        # torch's own message would suggest unpickling arbitrary code: not shown.
        raise DepthProviderError(
            f"--midas-weights {path}: not a PyTorch file of weights ({type(error).__name__})"
        ) from None
    if isinstance(state, dict) and "optimizer" in state and "model" in state:
        state = state["model"]
    if not isinstance(state, dict):
        raise DepthProviderError(
            f"--midas-weights {path}: holds a {type(state).__name__}, not a state dict"
        )
    return state


@functools.cache
def load_midas(
    variant: str,
    hub: Path | None = None,
    weights: Path | None = None,
    device: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> MidasDepth:
    """Loads MiDaS once per process and set of arguments.

    Args:
        variant: a key of :data:`VARIANT_TRANSFORMS` (a MiDaS hub entry point).
        hub: a MiDaS clone or a torch hub directory holding one (None: upstream, through torch's
            hub cache).
        weights: a MiDaS state-dict file to load instead of the hub's pretrained weights.
        device: a torch device (None: the first GPU if there is one, else the CPU).
        batch_size: frames per forward pass.

    Returns:
        The provider.

    Raises:
        DepthProviderError: unknown variant or device, or the code or weights cannot be loaded (no
            network and no local copy, a bad weights file, ...).
    """
    if variant not in VARIANT_TRANSFORMS:
        raise DepthProviderError(
            f"unknown MiDaS model {variant!r}; known: {list(VARIANT_TRANSFORMS)}"
        )
    try:
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise DepthProviderError(f"--depth-device {device!r}: {_one_line(error)}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise DepthProviderError(f"--depth-device {device}: torch sees no CUDA device")
    if hub is None:
        repository, source, cache, origin = UPSTREAM, "github", None, f"github {UPSTREAM}"
    else:
        repository, cache = _hub_repository(hub)
        source, origin = "local", str(repository)
    try:
        with _torch_hub_dir(cache):
            model = torch.hub.load(
                str(repository),
                variant,
                source=source,
                trust_repo=True,
                verbose=False,
                pretrained=weights is None,
            )
            transforms = torch.hub.load(
                str(repository), "transforms", source=source, trust_repo=True, verbose=False
            )
        transform = getattr(transforms, VARIANT_TRANSFORMS[variant])
    except (OSError, RuntimeError, ImportError, AttributeError) as error:
        hint = f"; {HOW_TO_GET_IT}" if hub is None else ""
        raise DepthProviderError(
            f"MiDaS {variant}: cannot load it from {origin} ({_one_line(error)}){hint}"
        ) from None
    if weights is not None:
        state = _read_weights(weights)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise DepthProviderError(
                f"--midas-weights {weights}: does not fit MiDaS {variant} ({_one_line(error)})"
            ) from None
    return MidasDepth(model, transform, target, batch_size)


def _from_environment(variant: str) -> MidasDepth:
    hub, weights = os.environ.get(HUB_ENV), os.environ.get(WEIGHTS_ENV)
    return load_midas(
        variant,
        Path(hub) if hub else None,
        Path(weights) if weights else None,
        os.environ.get(DEVICE_ENV) or None,
    )


def midas_small() -> MidasDepth:
    """``--depth-provider twin_builder.midas:midas_small``: MiDaS v2.1 small (fast on a CPU)."""
    return _from_environment("MiDaS_small")


def dpt_hybrid() -> MidasDepth:
    """``--depth-provider twin_builder.midas:dpt_hybrid``: MiDaS v3 DPT-Hybrid."""
    return _from_environment("DPT_Hybrid")


def dpt_large() -> MidasDepth:
    """``--depth-provider twin_builder.midas:dpt_large``: MiDaS v3 DPT-Large (the most accurate)."""
    return _from_environment("DPT_Large")


FACTORIES = {"MiDaS_small": midas_small, "DPT_Hybrid": dpt_hybrid, "DPT_Large": dpt_large}


def depth_provider_spec(variant: str) -> str:
    """The ``module:factory`` spec of a variant, as recorded in the store's parameters."""
    return f"{__name__}:{FACTORIES[variant].__name__}"


@contextmanager
def midas_environment(hub: Path | None, weights: Path | None, device: str | None) -> Iterator[None]:
    """Sets (and afterwards restores) the environment variables the factories read, so that
    worker processes load MiDaS from the same place onto the same device.

    Args:
        hub: ``--midas-hub`` (None: upstream).
        weights: ``--midas-weights`` (None: the hub's pretrained weights).
        device: ``--depth-device`` (None: a GPU if there is one).
    """
    settings = {
        HUB_ENV: str(hub.absolute()) if hub else None,
        WEIGHTS_ENV: str(weights.absolute()) if weights else None,
        DEVICE_ENV: device,
    }
    saved = {name: os.environ.get(name) for name in settings}

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(settings)
    try:
        yield
    finally:
        apply(saved)
