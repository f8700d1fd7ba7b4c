"""Labelled image sets for evaluation, exported as class-balanced subsets that solo-learn reads.

Sources: Fashion-MNIST (the demo's default: Debian's ``dataset-fashion-mnist`` IDX files, a
``--data-dir`` holding the same files, or a torchvision download), CIFAR-10, CIFAR-100 and STL-10
(torchvision's on-disk formats, or a download) and ``custom`` (``train/<class>/`` and
``val/<class>/`` image folders).

The backbone stem. solo-learn's ``resnet18`` gets the CIFAR stem (3x3 conv, stride 1, no max-pool)
only when ``data.dataset`` is ``cifar10`` or ``cifar100``; otherwise it keeps the ImageNet stem
(7x7 conv, stride 2, then max-pool), which turns a 32 px image into 8 x 8 before the first residual
block, and solo's linear evaluation of ``custom`` data resizes every image to 224 px, which on a
CPU costs more than the whole pretraining budget. So Fashion-MNIST (28 px grey) is padded to
32 x 32 RGB and written in CIFAR-10's real pickle layout (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``): pretraining and linear evaluation then take solo's own CIFAR
path (CIFAR stem, 32 px crops, CIFAR normalisation) unchanged. CIFAR-10/100 and STL-10 subsets are
written in their own layouts; ``custom`` stays an image folder (solo's 224 px path). torchvision
checks CIFAR/STL files against the MD5 of the official archives, so every export carries the
marker file ``EXPORT_MARKER``, and :mod:`infoaug_plugin.evaluation.launch` skips the checksum for
directories that hold it (and only those).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

SOURCES: tuple[str, ...] = ("fashion-mnist", "cifar10", "cifar100", "stl10", "custom")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
EXPORT_MARKER = "infoaug-export.json"
# solo-learn's linear evaluation computes top-5 accuracy, so it needs at least five classes.
MIN_CLASSES = 5

_IDX_DTYPES = {0x08: np.uint8}
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A data directory or file that cannot be used; the message names it and the problem."""


_FASHION_WAYS = (
    "get it with 'apt-get install dataset-fashion-mnist' (Debian, into "
    f"{DEBIAN_FASHION_MNIST}), or pass --data-dir FOLDER holding its four IDX files, or leave "
    "--data-dir out on a machine with network access (torchvision downloads it)"
)


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (torchvision's span several)."""
    return " ".join(str(error).split())


@dataclass(frozen=True)
class LabelledImages:
    """One split of an in-memory image set.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB images.
        labels: ``(N,)`` int64 class indices into ``classes``.
        classes: class names.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def subset(self, indices: np.ndarray) -> LabelledImages:
        """Returns the images at ``indices`` (same classes)."""
        return LabelledImages(self.images[indices], self.labels[indices], self.classes)


@dataclass(frozen=True)
class ExportedData:
    """An exported subset, as the ``data:`` node of solo-learn's YAMLs sees it.

    Attributes:
        root: the export directory (``train_path`` and ``val_path`` for the torchvision formats).
        solo_dataset: ``data.dataset`` for solo-learn: cifar10, cifar100, stl10 or custom.
        num_classes: number of classes.
        crop_size: side of the pretraining crops, matching solo's linear-evaluation transforms.
        train_size: images in the training split (pretraining and linear training).
        test_size: images in the test split (linear evaluation's validation).
    """

    root: Path
    solo_dataset: str
    num_classes: int
    crop_size: int
    train_size: int
    test_size: int

    @property
    def train_path(self) -> Path:
        """``data.train_path``: the torchvision root, or the ``train`` image folder."""
        return self.root / "train" if self.solo_dataset == "custom" else self.root

    @property
    def val_path(self) -> Path:
        """``data.val_path``: the torchvision root, or the ``val`` image folder."""
        return self.root / "val" if self.solo_dataset == "custom" else self.root


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not.

    Args:
        path: ``*-idx{1,3}-ubyte`` or ``*.gz``.

    Returns:
        The array with the shape the header gives.

    Raises:
        DatasetError: the file is not a well-formed unsigned-byte IDX file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(
            f"{path}: not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) but the file holds "
            f"{len(raw) - header} bytes of data"
        )
    return np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=header).reshape(shape)


def _find_idx(data_dir: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` or ``stem.gz`` in ``data_dir`` (or its ``raw/``), if present."""
    for folder in (data_dir, data_dir / "raw", data_dir / "FashionMNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_fashion_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one Fashion-MNIST split from its IDX files; the other split's files are not opened.

    Args:
        data_dir: folder holding the split's two IDX files (``.gz`` or not; or a ``raw/`` below).
        split: ``train`` or ``test``.

    Returns:
        ``(images, labels)``: (N, 28, 28) uint8 grey images and (N,) int64 classes.

    Raises:
        DatasetError: the files are missing or malformed.
    """
    image_stem, label_stem = _FASHION_FILES[split]
    paths = [_find_idx(data_dir, stem) for stem in (image_stem, label_stem)]
    if None in paths:
        raise DatasetError(
            f"{data_dir}: no Fashion-MNIST {split} files (expected {image_stem}[.gz] and "
            f"{label_stem}[.gz]); {_FASHION_WAYS}"
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(
            f"{paths[0]}: images of shape {images.shape} do not match labels of shape "
            f"{labels.shape} in {paths[1]}"
        )
    if images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{paths[0]}: images of {images.shape[1]} x {images.shape[2]} pixels; Fashion-MNIST "
            "images are 28 x 28"
        )
    return images, labels.astype(np.int64)


def _fashion_split(data_dir: Path, split: str, classes: tuple[str, ...]) -> LabelledImages:
    """Reads one Fashion-MNIST split from IDX files and pads it to 32 x 32 RGB."""
    images, labels = read_fashion_split(data_dir, split)
    if labels.max(initial=0) >= len(classes):
        raise DatasetError(
            f"{data_dir}: Fashion-MNIST {split} label {labels.max()} out of range for "
            f"{len(classes)} classes"
        )
    # Zero padding is the images' own black background; grey becomes RGB by repetition.
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return LabelledImages(np.repeat(padded[..., None], 3, axis=-1), labels, classes)


def load_fashion_mnist(
    data_dir: Path | None, download_root: Path
) -> tuple[LabelledImages, LabelledImages]:
    """Fashion-MNIST train and test splits, 32 x 32 RGB.

    Args:
        data_dir: folder holding the four IDX files; ``None`` for Debian's copy, else a download.
        download_root: where torchvision downloads it when no local copy exists.

    Returns:
        ``(train, test)``.
    """
    from torchvision.datasets import FashionMNIST

    classes = tuple(FashionMNIST.classes)
    if data_dir is None:
        if _find_idx(DEBIAN_FASHION_MNIST, _FASHION_FILES["train"][0]) is not None:
            data_dir = DEBIAN_FASHION_MNIST
        else:
            try:
                FashionMNIST(str(download_root), train=True, download=True)
                FashionMNIST(str(download_root), train=False, download=True)
            except (OSError, RuntimeError) as error:
                raise DatasetError(
                    f"Fashion-MNIST is not in {DEBIAN_FASHION_MNIST} and its download into "
                    f"{download_root} failed ({_one_line(error)}); {_FASHION_WAYS}"
                ) from None
            data_dir = download_root / "FashionMNIST" / "raw"
    return _fashion_split(data_dir, "train", classes), _fashion_split(data_dir, "test", classes)


def _torchvision_split(make: Callable[[], object], where: Path, download: bool) -> LabelledImages:
    """Reads a torchvision CIFAR/STL dataset object into :class:`LabelledImages`."""
    try:
        dataset = make()
    except (OSError, RuntimeError) as error:
        problem = "download failed" if download else "missing or not the official files"
        raise DatasetError(
            f"{where}: {problem} ({_one_line(error)}); pass --data-dir FOLDER holding "
            f"{where.name}/ as torchvision unpacks it, or run once with network access"
        ) from None
    images = np.asarray(dataset.data)
    if images.shape[1] == 3:  # STL-10 keeps CHW
        images = images.transpose(0, 2, 3, 1)
    labels = np.asarray(
        getattr(dataset, "targets", getattr(dataset, "labels", None)), dtype=np.int64
    )
    return LabelledImages(np.ascontiguousarray(images), labels, tuple(dataset.classes))


def load_torchvision(
    source: str, data_dir: Path | None, download_root: Path
) -> tuple[LabelledImages, LabelledImages]:
    """CIFAR-10, CIFAR-100 or STL-10 (labelled train and test splits) from torchvision's layout.

    Args:
        source: ``cifar10``, ``cifar100`` or ``stl10``.
        data_dir: the folder holding ``cifar-10-batches-py/``, ``cifar-100-python/`` or
            ``stl10_binary/``; ``None`` to download into ``download_root``.
        download_root: download destination.

    Returns:
        ``(train, test)``.
    """
    from torchvision import datasets

    root, download = (download_root, True) if data_dir is None else (data_dir, False)
    if source == "stl10":
        cls = datasets.STL10
        make_train = lambda: cls(str(root), split="train", download=download)  # noqa: E731
        make_test = lambda: cls(str(root), split="test", download=download)  # noqa: E731
    else:
        cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[source]
        make_train = lambda: cls(str(root), train=True, download=download)  # noqa: E731
        make_test = lambda: cls(str(root), train=False, download=download)  # noqa: E731
    where = root / cls.base_folder
    return (
        _torchvision_split(make_train, where, download),
        _torchvision_split(make_test, where, download),
    )


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced random subset (round-robin over classes).

    Args:
        labels: ``(N,)`` class indices.
        size: subset size; 0 or at least ``N`` keeps everything.
        seed: random seed.

    Returns:
        Sorted indices.
    """
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    longest = max(len(indices) for indices in per_class)
    interleaved = [indices[i] for i in range(longest) for indices in per_class if i < len(indices)]
    return np.sort(np.asarray(interleaved[:size]))


def _pickle(path: Path, payload: dict) -> None:
    """Writes one pickled dict (CIFAR's batch files are pickles)."""
    with path.open("wb") as handle:
        pickle.dump(payload, handle, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` to CIFAR's ``(N, 3072)`` rows: the R, G and B planes, each row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10(root: Path, train: LabelledImages, test: LabelledImages) -> None:
    """Writes CIFAR-10's python layout: ``cifar-10-batches-py/`` with 5 train batches.

    Args:
        root: the torchvision root to write into.
        train: 32 x 32 training images.
        test: 32 x 32 test images.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = np.array_split(np.arange(len(train.labels)), 5)
    for number, indices in enumerate(batches, start=1):
        _pickle(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of 5",
                "labels": train.labels[indices].tolist(),
                "data": _cifar_rows(train.images[indices]),
                "filenames": [f"train_{i:06d}.png" for i in indices],
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test.labels.tolist(),
            "data": _cifar_rows(test.images),
            "filenames": [f"test_{i:06d}.png" for i in range(len(test.labels))],
        },
    )
    _pickle(
        folder / "batches.meta",
        {
            "label_names": list(train.classes),
            "num_cases_per_batch": len(batches[0]),
            "num_vis": 3072,
        },
    )


def write_cifar100(root: Path, train: LabelledImages, test: LabelledImages) -> None:
    """Writes CIFAR-100's python layout (``cifar-100-python/train``, ``test``, ``meta``).

    Only the fine labels are written: torchvision (and so solo-learn) reads no others.

    Args:
        root: the torchvision root to write into.
        train: 32 x 32 training images.
        test: 32 x 32 test images.
    """
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, split in (("train", train), ("test", test)):
        _pickle(
            folder / name,
            {
                "filenames": [f"{name}_{i:06d}.png" for i in range(len(split.labels))],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": split.labels.tolist(),
                "data": _cifar_rows(split.images),
            },
        )
    _pickle(folder / "meta", {"fine_label_names": list(train.classes)})


def _write_stl_images(path: Path, images: np.ndarray) -> None:
    """STL-10's ``*_X.bin``: uint8 ``(N, 3, 96, 96)`` with each plane stored column-major."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes())


def write_stl10(root: Path, train: LabelledImages, test: LabelledImages) -> None:
    """Writes STL-10's binary layout (``stl10_binary/``); the unlabelled split is left empty.

    Args:
        root: the torchvision root to write into.
        train: 96 x 96 labelled training images.
        test: 96 x 96 test images.
    """
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for name, split in (("train", train), ("test", test)):
        _write_stl_images(folder / f"{name}_X.bin", split.images)
        (folder / f"{name}_y.bin").write_bytes((split.labels + 1).astype(np.uint8).tobytes())
    (folder / "unlabeled_X.bin").write_bytes(b"")
    (folder / "class_names.txt").write_text("\n".join(train.classes) + "\n")


def _image_folder_samples(folder: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """Lists ``folder/<class>/<image>`` as ``(path, class index)``, classes sorted by name."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: missing; a custom data dir needs train/<class>/ and val/<class>/"
        )
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if len(classes) < MIN_CLASSES:
        raise DatasetError(
            f"{folder}: {len(classes)} class folders; linear evaluation needs at least {MIN_CLASSES}"
        )
    samples = [
        (path, index)
        for index, name in enumerate(classes)
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in _IMAGE_SUFFIXES
    ]
    present = {index for _, index in samples}
    empty = [name for index, name in enumerate(classes) if index not in present]
    if empty:
        raise DatasetError(f"{folder}: class folders without images: {', '.join(empty[:5])}")
    return samples, classes


def export_image_folders(
    data_dir: Path, dest: Path, sizes: tuple[int, int], seed: int
) -> dict[str, object]:
    """Copies a balanced subset of ``data_dir/{train,val}/<class>/`` to ``dest/{train,val}``.

    Args:
        data_dir: the custom data dir.
        dest: the export directory.
        sizes: images to copy from ``train`` and from ``val`` (0: all).
        seed: subset seed.

    Returns:
        What the export holds: ``solo_dataset``, ``num_classes``, ``crop_size``, ``counts``.
    """
    train, classes = _image_folder_samples(data_dir / "train")
    val, val_classes = _image_folder_samples(data_dir / "val")
    if val_classes != classes:
        raise DatasetError(f"{data_dir / 'val'}: class folders differ from {data_dir / 'train'}")
    counts = {}
    for split, samples, size in (("train", train, sizes[0]), ("val", val, sizes[1])):
        labels = np.asarray([label for _, label in samples])
        chosen = [samples[i] for i in balanced_subset(labels, size, seed)]
        for path, label in tqdm(chosen, desc=f"export {split}", unit="img", leave=False):
            target = dest / split / classes[label] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        counts[split] = len(chosen)
    # solo-learn's linear evaluation resizes custom images to 224 px; pretraining matches it.
    return {
        "solo_dataset": "custom",
        "num_classes": len(classes),
        "crop_size": 224,
        "counts": counts,
    }


_WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "stl10": write_stl10}


def _export_arrays(
    source: str,
    data_dir: Path | None,
    dest: Path,
    download_root: Path,
    sizes: tuple[int, int],
    seed: int,
) -> dict[str, object]:
    """Exports an in-memory source; returns what it holds (as :func:`export_image_folders`)."""
    if source == "fashion-mnist":
        train, test = load_fashion_mnist(data_dir, download_root)
        solo_dataset = "cifar10"
    else:
        train, test = load_torchvision(source, data_dir, download_root)
        solo_dataset = source
    train = train.subset(balanced_subset(train.labels, sizes[0], seed))
    test = test.subset(balanced_subset(test.labels, sizes[1], seed))
    _WRITERS[solo_dataset](dest, train, test)
    return {
        "solo_dataset": solo_dataset,
        "num_classes": len(train.classes),
        "crop_size": int(train.images.shape[1]),
        "counts": {"train": len(train.labels), "val": len(test.labels)},
    }


def export_dataset(
    source: str,
    data_dir: Path | None,
    out_dir: Path,
    train_size: int,
    test_size: int,
    seed: int = 0,
) -> ExportedData:
    """Exports (or reuses the cached export of) a balanced subset of ``source``.

    The export lives in ``out_dir/data/<source>-train<N>-test<M>-seed<S>``; it is written to a
    temporary folder and renamed when complete, with ``EXPORT_MARKER`` recording what it holds, so
    an interrupted export is never reused.

    Args:
        source: one of ``SOURCES``.
        data_dir: where the source data lives (``None``: Debian's Fashion-MNIST or a download).
        out_dir: output directory of the demo or harness.
        train_size: training images (0: all).
        test_size: test images (0: all).
        seed: subset seed.

    Returns:
        The export.
    """
    if source not in SOURCES:
        raise DatasetError(f"unknown dataset {source!r}; choose from {', '.join(SOURCES)}")
    if source == "custom" and data_dir is None:
        raise DatasetError(
            "dataset 'custom' needs --data-dir holding train/<class>/ and val/<class>/"
        )
    if data_dir is not None and not data_dir.is_dir():
        fallback = (
            "" if source == "custom" else ", or leave --data-dir out (a local copy or a download)"
        )
        raise DatasetError(
            f"--data-dir {data_dir} does not exist; pass the folder that holds {source}{fallback}"
        )
    dest = out_dir / "data" / f"{source}-train{train_size}-test{test_size}-seed{seed}"
    request = {
        "source": source,
        "data_dir": None if data_dir is None else str(data_dir.resolve()),
        "train_size": train_size,
        "test_size": test_size,
        "seed": seed,
    }
    marker = dest / EXPORT_MARKER
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded["request"] == request:
            return _exported(dest, recorded)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sizes = (train_size, test_size)
    try:
        if source == "custom":
            held = export_image_folders(data_dir, tmp, sizes, seed)
        else:
            held = _export_arrays(source, data_dir, tmp, out_dir / "downloads", sizes, seed)
        if held["num_classes"] < MIN_CLASSES:
            raise DatasetError(
                f"{source}: {held['num_classes']} classes; linear evaluation needs {MIN_CLASSES}"
            )
        recorded = {"request": request, **held}
        (tmp / EXPORT_MARKER).write_text(json.dumps(recorded, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return _exported(dest, recorded)


def _exported(dest: Path, recorded: dict) -> ExportedData:
    """Builds :class:`ExportedData` from a marker's content."""
    return ExportedData(
        root=dest,
        solo_dataset=recorded["solo_dataset"],
        num_classes=recorded["num_classes"],
        crop_size=recorded["crop_size"],
        train_size=recorded["counts"]["train"],
        test_size=recorded["counts"]["val"],
    )
