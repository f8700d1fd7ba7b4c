"""Linear probe: logistic regression on frozen features, the linear evaluation of CPU budgets.

solo-learn's linear evaluation (``infoaug-linear``) trains the linear layer by SGD over
augmented crops for ~100 epochs, recomputing the frozen backbone's features at every step. On a
CPU budget of a few epochs it is nowhere near convergence (measured here: a classifier that reaches
72% when converged scored 17-30% after 30 solo-learn steps), so it would rank optimisation noise.
The probe reads the same linear YAML, builds and loads the backbone exactly as ``infoaug-linear``
does, computes each image's features once with solo's evaluation transform (on the GPU when the
YAML's ``accelerator`` is ``gpu``), standardises them with the training split's statistics and fits
a multinomial logistic regression to convergence (L-BFGS), as in the linear-probe protocols of
SimCLR and CLIP. It writes ``PROBE_RESULT`` into the working directory.

The YAML's ``probe_features`` says what the probe reads: ``checkpoint`` (the pretrained backbone,
the default), ``untrained`` (the same backbone at its random initialisation, seeded by ``seed``)
or ``pixels`` (the normalised pixels of the same evaluation transform, flattened). The last two
are the calibration rows a pretrained backbone has to beat.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.linear_model import LogisticRegression
from solo.args.linear import parse_cfg
from solo.data.classification_dataloader import prepare_datasets, prepare_transforms
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from infoaug_plugin.cli.linear import build_backbone, load_backbone_weights

PROBE_RESULT = "probe.json"
PROBE_FEATURES: tuple[str, ...] = ("checkpoint", "untrained", "pixels")
_MAX_ITER = 1000


@torch.no_grad()
def extract_features(
    backbone: torch.nn.Module,
    dataset: Dataset,
    batch_size: int,
    desc: str,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features (eval mode) and labels of every image of ``dataset``.

    Args:
        backbone: the backbone (moved to ``device``).
        dataset: yields ``(image tensor, label)``.
        batch_size: images per forward pass.
        desc: progress-bar label.
        device: where the backbone runs.

    Returns:
        ``(features (N, D) float32, labels (N,) int64)``.
    """
    backbone.eval().to(device)
    features, labels = [], []
    for images, targets in tqdm(
        DataLoader(dataset, batch_size=batch_size), desc=desc, unit="batch"
    ):
        features.append(backbone(images.to(device)).flatten(1).cpu())
        labels.append(targets)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def fit_probe(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], seed: int
) -> float:
    """Fits logistic regression on standardised training features; returns test top-1 (percent).

    Args:
        train: ``(features, labels)`` of the training split.
        test: ``(features, labels)`` of the test split.
        seed: solver seed.

    Returns:
        Top-1 accuracy on ``test``, in percent.
    """
    mean, std = train[0].mean(axis=0), train[0].std(axis=0) + 1e-6
    classifier = LogisticRegression(max_iter=_MAX_ITER, random_state=seed)
    classifier.fit((train[0] - mean) / std, train[1])
    return float(100.0 * classifier.score((test[0] - mean) / std, test[1]))


def probe(cfg: DictConfig) -> dict[str, float | int]:
    """Runs the linear probe configured by a linear-evaluation YAML.

    Args:
        cfg: the composed Hydra config of ``infoaug-linear`` (struct mode is lifted).

    Returns:
        ``{"top1": percent, "train": N, "test": M, "features": probe_features}``, also written
        to ``PROBE_RESULT``.
    """
    OmegaConf.set_struct(cfg, False)
    features = cfg.get("probe_features", "checkpoint")
    if features not in PROBE_FEATURES:
        raise ValueError(f"probe_features must be one of {PROBE_FEATURES}, got {features!r}")
    cfg = parse_cfg(cfg)
    torch.manual_seed(cfg.seed)
    if features == "pixels":
        backbone = torch.nn.Flatten()
    else:
        backbone = build_backbone(cfg)
    if features == "checkpoint":
        load_backbone_weights(backbone, cfg.pretrained_feature_extractor)
    # Full-size test sets (70,000 images for Fashion-MNIST) take minutes on CPU cores.
    device = torch.device("cuda" if cfg.get("accelerator") == "gpu" else "cpu")
    _, evaluation = prepare_transforms(cfg.data.dataset)
    train_set, test_set = prepare_datasets(
        cfg.data.dataset,
        evaluation,
        evaluation,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=cfg.data.format,
    )
    batch_size = cfg.optimizer.batch_size
    train = extract_features(backbone, train_set, batch_size, "probe: train features", device)
    test = extract_features(backbone, test_set, batch_size, "probe: test features", device)
    result = {
        "top1": fit_probe(train, test, cfg.seed),
        "train": len(train[1]),
        "test": len(test[1]),
        "features": features,
    }
    Path(PROBE_RESULT).write_text(json.dumps(result, indent=2) + "\n")
    sizes = f"{result['train']} train / {result['test']} test images"
    print(f"linear probe top-1: {result['top1']:.2f}% ({sizes})")
    return result
