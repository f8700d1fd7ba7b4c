"""``infoaug-demo``, ``infoaug-eval``, ``infoaug-pretrain`` and ``infoaug-linear`` without their data
set stop with one line that names what is missing and the ways to get it, and no traceback.

"Offline" is real: torchvision's download code runs against a closed local port (its mirror URLs
are pointed at it), so the failure is the one a machine without network sees. "No Debian
package" points the demo's Debian path at an empty folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from torchvision.datasets import CIFAR10, FashionMNIST

from infoaug_plugin.cli.pretrain import pretrain
from infoaug_plugin.config import ConfigError
from infoaug_plugin.evaluation import datasets, demo, harness

CONFIGS = Path(__file__).resolve().parents[2] / "solo_configs"
BIN = Path(sys.executable).parent
CLOSED_PORT = "http://127.0.0.1:9/"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network for torchvision, and no Debian Fashion-MNIST."""
    monkeypatch.setattr(FashionMNIST, "mirrors", [CLOSED_PORT])
    monkeypatch.setattr(CIFAR10, "url", f"{CLOSED_PORT}cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")


def _one_line(text: str, prefix: str) -> str:
    """The only line of ``text`` that starts with ``prefix``; no traceback around it."""
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return line


def test_demo_offline_without_the_debian_package_says_how_to_get_fashion_mnist(
    offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--quick", "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err, "infoaug-demo: ")
    assert "Fashion-MNIST is not in" in line and "download into" in line and "failed" in line
    assert "apt-get install dataset-fashion-mnist" in line and "--data-dir" in line
    assert list((tmp_path / "out" / "data").iterdir()) == []  # no half-written export left


@pytest.mark.parametrize(
    ("data_dir", "message"),
    [
        ("empty", "no Fashion-MNIST train files (expected train-images-idx3-ubyte[.gz]"),
        ("missing", "does not exist; pass the folder that holds fashion-mnist"),
    ],
)
def test_demo_with_an_empty_or_wrong_data_dir_names_it(
    offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dir: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["--quick", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / data_dir)]
    assert demo.main(argv) == 1
    line = _one_line(capsys.readouterr().err, "infoaug-demo: ")
    assert str(tmp_path / data_dir) in line and message in line


def test_eval_offline_without_cifar_says_how_to_get_it(
    offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harness.main(["--out", str(tmp_path / "out"), "--dataset", "cifar10"]) == 1
    line = _one_line(capsys.readouterr().err, "infoaug-eval: ")
    assert "cifar-10-batches-py: download failed" in line
    assert "--data-dir FOLDER holding cifar-10-batches-py/" in line


def test_pretrain_offline_without_cifar_names_the_path_and_the_ways(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_twin_store
) -> None:
    store = make_twin_store(tmp_path / "store", n_pairs=16, size=32)
    empty = tmp_path / "datasets"
    empty.mkdir()
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONFIGS / "pretrain" / "cifar"), version_base="1.2"):
        cfg = compose(
            "infoaug_simclr.yaml",
            overrides=[
                f"data.train_path={empty}",
                f"data.val_path={empty}",
                f"infoaug.twins={store}",
                "optimizer.batch_size=4",
                "infoaug.batch_size=4",
                "accelerator=cpu",
                'devices="1"',
                "strategy=auto",
            ],
        )
    with pytest.raises(ConfigError) as refusal:
        pretrain(cfg)
    message = str(refusal.value)
    assert message.startswith(f"data.train_path: cifar10 is not in {empty} (cifar-10-batches-py/)")
    assert "unpack the official archive" in message and "network access" in message


@pytest.mark.parametrize(
    ("command", "config", "problem"),
    [
        ("infoaug-pretrain", "pretrain", "missing"),
        ("infoaug-pretrain", "pretrain", "empty"),
        ("infoaug-linear", "linear", "missing"),
    ],
)
def test_commands_stop_on_a_missing_image_folder_with_one_line(
    tmp_path: Path, make_twin_store, command: str, config: str, problem: str
) -> None:
    (tmp_path / "empty").mkdir()
    folder = tmp_path / problem
    extra = (
        [f"infoaug.twins={make_twin_store(tmp_path / 'store', n_pairs=16, size=32)}"]
        if config == "pretrain"
        else ["pretrained_feature_extractor=x.ckpt"]
    )
    done = subprocess.run(
        [
            str(BIN / command),
            "--config-path",
            str(CONFIGS / config / "custom"),
            "--config-name",
            "infoaug_simclr.yaml",
            f"data.train_path={folder}",
            f"data.val_path={folder}",
            *extra,
        ],
        check=False,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    line = _one_line(done.stderr, f"{command}: error: ")
    expected = "is not a folder" if problem == "missing" else "is empty"
    assert line == (
        f"{command}: error: data.train_path: {folder} {expected}; it must hold one sub-folder "
        "of images per class"
    )
