"""``--depth midas``: the real torch.hub loading code against a local stand-in of MiDaS's hub.

No MiDaS weights can be downloaded here, so the stand-in is a repository with MiDaS's hubconf entry
points (``MiDaS_small``, ``DPT_Hybrid``, ``DPT_Large``, ``transforms``) around a tiny real network;
``torch.hub`` loads it exactly as it loads MiDaS, from a clone or from a copied hub cache.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from twin_builder import cli, midas
from twin_builder.cli import main
from twin_builder.depth import DepthProviderError, depth_displacements, load_depth_provider
from twin_builder.pipeline import process_video
from twin_builder.synthetic import make_twin_video
from twin_builder.video import describe_source
from twin_store import open_store

gpu = torch.cuda.is_available()
FAST = ["--grid", "4", "--window", "24", "--max-side", "0", "--crop-size", "16", "--quiet"]
REPOSITORY = Path(__file__).resolve().parents[2]

HUBCONF = textwrap.dedent('''
    """Stand-in for MiDaS's hubconf.py: the same entry points around a tiny network."""

    dependencies = ["torch"]

    import types

    import cv2
    import numpy as np
    import torch

    CHECKPOINT = "https://127.0.0.1:9/tiny-midas-0000.pt"  # read from the hub cache, never fetched


    class TinyDepth(torch.nn.Module):
        """(B, 3, h, w) -> (B, h, w) "inverse depth", as MiDaS returns it; records its inputs."""

        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(3, 1, 5, padding=2)
            self.input_shapes = []

        def forward(self, x):
            self.input_shapes.append(tuple(x.shape))
            return self.head(x).squeeze(1)


    def _model(pretrained):
        model = TinyDepth()
        if pretrained:
            model.load_state_dict(
                torch.hub.load_state_dict_from_url(CHECKPOINT, map_location="cpu", progress=False)
            )
        return model


    def MiDaS_small(pretrained=True, **kwargs):
        return _model(pretrained)


    def DPT_Hybrid(pretrained=True, **kwargs):
        return _model(pretrained)


    def DPT_Large(pretrained=True, **kwargs):
        return _model(pretrained)


    def _transform(side, mean, std):
        def transform(img):
            image = cv2.resize(img / 255.0, (side, side), interpolation=cv2.INTER_CUBIC)
            image = ((image - mean) / std).transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).unsqueeze(0)

        return transform


    def transforms():
        return types.SimpleNamespace(
            small_transform=_transform(32, 0.45, 0.225), dpt_transform=_transform(48, 0.5, 0.5)
        )
    ''')


def tiny_weights(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "head.weight": torch.randn(1, 3, 5, 5, generator=generator),
        "head.bias": torch.randn(1, generator=generator),
    }


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> dict[str, Path]:
    """A MiDaS clone (``clone``), a torch hub cache holding it and its checkpoint (``hub``, as
    ``~/.cache/torch/hub`` is after ``torch.hub.load('intel-isl/MiDaS', ...)``), and a weights
    file with the checkpoint's weights negated (``weights``)."""
    root = tmp_path_factory.mktemp("midas")
    clone = root / "MiDaS"
    clone.mkdir()
    (clone / "hubconf.py").write_text(HUBCONF)
    hub = root / "torch" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "intel-isl_MiDaS_master").mkdir()
    (hub / "intel-isl_MiDaS_master" / "hubconf.py").write_text(HUBCONF)
    torch.save(tiny_weights(0), hub / "checkpoints" / "tiny-midas-0000.pt")
    weights = root / "negated.pt"
    torch.save({name: -value for name, value in tiny_weights(0).items()}, weights)
    return {"clone": clone, "hub": hub, "weights": weights, "torch_home": root / "torch"}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Ten RGB frames of a synthetic clip, 63 x 63 px (an odd pixel count: a unique median)."""
    video = make_twin_video(grid=3, frames=10, cell=21, seed=7)
    return [np.ascontiguousarray(frame[..., ::-1]) for frame in video.frames]


def offline_environment(torch_home: Path) -> dict[str, str]:
    """The environment of a twin-builder run with ``torch_home`` as torch's home and no network:
    every HTTP(S) request goes to a proxy port on which nothing listens."""
    unreachable = "http://127.0.0.1:9"
    return {
        **os.environ,
        "TORCH_HOME": str(torch_home),
        **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), unreachable),
        **dict.fromkeys(("no_proxy", "NO_PROXY"), ""),
        "OMP_NUM_THREADS": "1",
    }


def run_cli(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twin_builder.cli", *arguments],
        check=False,
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_knows_every_variant():
    assert cli.MIDAS_MODELS == tuple(midas.VARIANT_TRANSFORMS)


def test_a_torch_hub_cache_loads_the_pretrained_model_and_its_transform(stand_in, frames):
    provider = midas.load_midas("DPT_Large", stand_in["hub"], device="cpu")
    depth = provider(frames[0])
    assert depth.shape == frames[0].shape[:2] and depth.dtype == np.float32
    assert provider.model.input_shapes[-1] == (1, 3, 48, 48)  # dpt_transform
    assert torch.equal(provider.model.head.weight, tiny_weights(0)["head.weight"])
    # Aligned as MiDaS's scale- and shift-invariant loss aligns: median 0, mean |deviation| 1.
    assert np.median(depth) == pytest.approx(0, abs=1e-6)
    assert np.abs(depth).mean() == pytest.approx(1, rel=1e-5)
    small = midas.load_midas("MiDaS_small", stand_in["hub"], device="cpu")
    small(frames[0])
    assert small.model.input_shapes[-1] == (1, 3, 32, 32)  # small_transform


def test_a_weights_file_replaces_the_pretrained_weights(stand_in, frames, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DepthProviderError, match="MiDaS MiDaS_small: cannot load it from .*MiDaS"):
        # A bare clone has no checkpoint in an empty hub cache, and the checkpoint's server is
        # unreachable.
        midas.load_midas("MiDaS_small", stand_in["clone"], device="cpu")
    negated = midas.load_midas("MiDaS_small", stand_in["clone"], stand_in["weights"], "cpu")
    cached = midas.load_midas("MiDaS_small", stand_in["hub"], device="cpu")
    # Negated weights negate the inverse depth; the alignment keeps the sign.
    np.testing.assert_allclose(negated(frames[3]), -cached(frames[3]), atol=1e-5)


def test_frames_run_in_batches_and_match_one_at_a_time(stand_in, frames):
    provider = midas.load_midas("DPT_Hybrid", stand_in["hub"], device="cpu", batch_size=4)
    provider.model.input_shapes.clear()
    batched = provider.predict_batch(frames)
    assert [shape[0] for shape in provider.model.input_shapes] == [4, 4, 2]
    one_by_one = np.stack([provider(frame) for frame in frames])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[-1])  # the frames differ, so do their depths


def test_the_model_is_loaded_once_per_process(stand_in, monkeypatch):
    monkeypatch.setenv(midas.HUB_ENV, str(stand_in["hub"]))
    monkeypatch.setenv(midas.DEVICE_ENV, "cpu")
    provider = load_depth_provider(midas.depth_provider_spec("DPT_Large"))
    assert provider is midas.dpt_large()
    assert provider is midas.load_midas("DPT_Large", stand_in["hub"], None, "cpu")


def test_depth_gives_the_tracks_a_third_coordinate(stand_in, fast_clip, fast_params):
    provider = midas.load_midas("MiDaS_small", stand_in["hub"], device="cpu")
    video = make_twin_video(grid=4, frames=8, cell=24, seed=1)
    positions = np.random.default_rng(0).uniform(5, 90, (8, 16, 1, 2))
    dz = depth_displacements(provider, list(video.frames), positions)
    assert dz.shape == (7, 16, 1) and np.isfinite(dz).all() and np.abs(dz).max() > 0
    spec = midas.depth_provider_spec("MiDaS_small")
    flat = process_video(describe_source(fast_clip), fast_params)
    deep_params = dataclasses.replace(fast_params, depth_provider=spec)
    deep = process_video(describe_source(fast_clip), deep_params, provider)
    flat_mi = np.stack([window.mi for window in flat.windows])
    deep_mi = np.stack([window.mi for window in deep.windows])
    assert not np.allclose(np.nan_to_num(flat_mi), np.nan_to_num(deep_mi))


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not gpu, reason="no GPU"))],
)
def test_build_depth_midas_from_a_local_hub(
    stand_in, fast_clip, second_fast_clip, tmp_path, device
):
    store = tmp_path / "s"
    arguments = ["build", str(fast_clip), str(second_fast_clip), "--out", str(store), *FAST]
    midas_options = ["--depth", "midas", "--midas-model", "DPT_Hybrid", "--midas-hub"]
    assert main([*arguments, *midas_options, str(stand_in["hub"]), "--depth-device", device]) == 0
    # The build ran the very model this process cached, on batches of the windows' frames.
    provider = midas.load_midas("DPT_Hybrid", stand_in["hub"].absolute(), None, device)
    assert provider.device.type == device
    assert [shape[0] for shape in provider.model.input_shapes[-4:]] == [16, 8, 16, 8]
    assert os.environ.get(midas.HUB_ENV) is None  # the CLI's settings do not outlive the build
    manifest = open_store(store).manifest
    assert manifest["params"]["depth_provider"] == "twin_builder.midas:dpt_hybrid"
    assert manifest["counts"]["videos_built"] == 2


def test_a_copied_hub_cache_in_torch_home_loads_without_network(stand_in, fast_clip, tmp_path):
    store = tmp_path / "s"
    arguments = ["build", str(fast_clip), "--out", str(store), *FAST, "--depth", "midas"]
    result = run_cli(
        [*arguments, "--depth-device", "cpu"], offline_environment(stand_in["torch_home"])
    )
    assert result.returncode == 0, result.stderr
    assert (
        open_store(store).manifest["params"]["depth_provider"] == "twin_builder.midas:midas_small"
    )


def test_without_network_or_local_copy_the_build_stops_with_one_line(fast_clip, tmp_path):
    store = tmp_path / "s"
    arguments = ["build", str(fast_clip), "--out", str(store), *FAST, "--depth", "midas"]
    result = run_cli(arguments, offline_environment(tmp_path / "empty-torch-home"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "error: MiDaS MiDaS_small: cannot load it from github intel-isl/MiDaS"
    )
    assert "--midas-hub" in lines[0] and "README" in lines[0]
    assert not store.exists()


def test_a_folder_without_midas_is_refused_in_one_line(fast_clip, tmp_path, capsys):
    arguments = ["build", str(fast_clip), "--out", str(tmp_path / "s"), *FAST, "--depth", "midas"]
    assert main([*arguments, "--midas-hub", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --midas-hub {tmp_path}: neither a MiDaS clone")
    assert len(error.splitlines()) == 1


def test_a_weights_file_that_is_not_weights_is_refused_in_one_line(
    stand_in, fast_clip, tmp_path, capsys
):
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    arguments = ["build", str(fast_clip), "--out", str(tmp_path / "s"), *FAST, "--depth", "midas"]
    hub = ["--midas-hub", str(stand_in["clone"]), "--midas-weights", str(garbage)]
    assert main([*arguments, *hub, "--depth-device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert (
        error
        == f"error: --midas-weights {garbage}: not a PyTorch file of weights (UnpicklingError)"
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--midas-model", "DPT_Large"], "--midas-model only apply with --depth midas"),
        (["--depth-device", "cpu"], "--depth-device only apply with --depth midas"),
        (["--depth", "midas", "--depth-provider", "m:f"], "give --depth or --depth-provider"),
        (["--depth", "midas", "--midas-hub", "no/such/dir"], "--midas-hub no/such/dir: no such"),
        (["--depth", "midas", "--midas-model", "DPT_Tiny"], "invalid choice: 'DPT_Tiny'"),
    ],
)
def test_midas_options_are_checked_on_the_command_line(arguments, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["build", "x.mp4", "--out", "s", *arguments])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_an_absent_gpu_is_named(stand_in, fast_clip, tmp_path, capsys):
    if gpu:
        pytest.skip("this machine has a GPU")
    arguments = ["build", str(fast_clip), "--out", str(tmp_path / "s"), *FAST, "--depth", "midas"]
    assert main([*arguments, "--midas-hub", str(stand_in["hub"]), "--depth-device", "cuda"]) == 1
    assert "--depth-device cuda: torch sees no CUDA device" in capsys.readouterr().err
