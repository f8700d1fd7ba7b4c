"""The stack InfoAug stands on runs here: solo-learn trains for real, DALI decodes on the CPU."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from omegaconf import OmegaConf
from PIL import Image
from solo.data.pretrain_dataloader import (
    FullTransformPipeline,
    NCropAugmentation,
    build_transform_pipeline,
    dataset_with_index,
    prepare_dataloader,
)
from solo.methods import SimCLR
from torchvision.datasets import ImageFolder

AUGMENTATION = {
    "rrc": {"enabled": True, "crop_min_scale": 0.5, "crop_max_scale": 1.0},
    "color_jitter": {
        "prob": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
    },
    "grayscale": {"prob": 0.2},
    "gaussian_blur": {"prob": 0.0},
    "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.5},
    "crop_size": 32,
    "num_crops": 2,
}


def write_image_folder(root: Path, classes: int, per_class: int, size: int = 32) -> Path:
    """Writes ``classes`` folders of random RGB PNGs (an ImageFolder), returns ``root``."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def simclr_cfg(batch_size: int):
    cfg = OmegaConf.create(
        {
            "name": "stack",
            "method": "simclr",
            "backbone": {"name": "resnet18"},
            "method_kwargs": {"proj_hidden_dim": 32, "proj_output_dim": 16, "temperature": 0.2},
            "data": {
                "dataset": "cifar10",  # selects solo's 3x3 CIFAR stem for 32 px images
                "num_classes": 5,
                "num_large_crops": 2,
                "num_small_crops": 0,
            },
            "optimizer": {
                "name": "lars",
                "batch_size": batch_size,
                "lr": 0.3,
                "classifier_lr": 0.1,
                "weight_decay": 1e-5,
                "kwargs": {"momentum": 0.9},
            },
            "scheduler": {"name": "warmup_cosine"},
            "max_epochs": 1,
        }
    )
    OmegaConf.set_struct(cfg, False)
    return cfg


def test_solo_learn_simclr_trains_one_real_step_on_cpu(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=5, per_class=4)
    transform = FullTransformPipeline(
        [NCropAugmentation(build_transform_pipeline("custom", OmegaConf.create(AUGMENTATION)), 2)]
    )
    dataset = dataset_with_index(ImageFolder)(root, transform=transform)
    loader = prepare_dataloader(dataset, batch_size=8, num_workers=0)
    torch.manual_seed(0)
    model = SimCLR(simclr_cfg(batch_size=8))
    before = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}

    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)

    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train_nce_loss"])
    changed = [
        name for name, p in model.backbone.named_parameters() if not torch.equal(p, before[name])
    ]
    assert changed, "one optimiser step left every backbone weight unchanged"


def test_dali_decodes_and_crops_image_files_on_a_cpu_pipeline(tmp_path):
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def, types

    root = write_image_folder(tmp_path / "images", classes=2, per_class=3, size=40)
    files = sorted(str(p) for p in root.rglob("*.png"))

    @pipeline_def(batch_size=3, num_threads=1, device_id=None, seed=0)
    def decode_and_crop():
        encoded, labels = fn.readers.file(
            files=files, labels=list(range(len(files))), name="Reader"
        )
        images = fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
        crops = fn.crop_mirror_normalize(
            images, crop=(32, 32), dtype=types.FLOAT, output_layout="CHW"
        )
        return crops, labels

    pipe = decode_and_crop()
    pipe.build()
    crops, labels = pipe.run()

    batch = np.stack([np.asarray(crops[i]) for i in range(len(crops))])
    assert batch.shape == (3, 3, 32, 32)
    first = np.asarray(Image.open(files[int(np.asarray(labels[0]).item())]).convert("RGB"))
    centre = first[4:36, 4:36].transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(batch[0], centre)
