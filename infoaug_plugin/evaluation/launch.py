"""Runs the pretraining and linear-evaluation commands on data exported by :mod:`.datasets`.

Usage: ``python -m infoaug_plugin.evaluation.launch {pretrain|linear|probe}
--config-path DIR --config-name NAME [key=value ...]`` (the arguments are the command's own).

``pretrain`` is ``infoaug-pretrain``, which also runs the plain base methods of a comparison (their
runs differ from the InfoAug runs only by the twins). ``probe`` runs :mod:`.probe` (logistic regression on frozen features) on a linear-evaluation YAML.

torchvision's CIFAR-10, CIFAR-100 and STL-10 readers check every file against the MD5 of the
official archive, so an export in those layouts (a Fashion-MNIST subset, or a subset of the real
set) reads as "corrupted". Before running the command, this launcher swaps in subclasses that skip
the checksum for roots holding the export marker (``datasets.EXPORT_MARKER``) and verify every
other root exactly as torchvision does. Everything else is the command's unchanged code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torchvision import datasets as tv_datasets

from infoaug_plugin.cli import linear, pretrain
from infoaug_plugin.evaluation.datasets import EXPORT_MARKER
from infoaug_plugin.evaluation.probe import probe


def _accepting_exports(cls: type) -> type:
    """A subclass of a torchvision CIFAR/STL dataset that skips MD5 checks for marked exports.

    Args:
        cls: ``CIFAR10``, ``CIFAR100`` or ``STL10``.

    Returns:
        The subclass, with the same name.
    """

    def __init__(self, root, *args, **kwargs):  # noqa: ANN001 - torchvision's signature
        if (Path(root) / EXPORT_MARKER).is_file():
            # torchvision's check_integrity(path, md5=None) only checks that the file exists.
            self.train_list = [[name, None] for name, _ in cls.train_list]
            self.test_list = [[name, None] for name, _ in cls.test_list]
            if hasattr(cls, "meta"):
                self.meta = {**cls.meta, "md5": None}
        cls.__init__(self, root, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__doc__": cls.__doc__})


def accept_exports() -> None:
    """Makes ``torchvision.datasets.{CIFAR10,CIFAR100,STL10}`` accept marked exports.

    solo-learn looks these classes up in ``torchvision.datasets`` when it builds a dataset, so
    replacing the module attributes is enough.
    """
    for name in ("CIFAR10", "CIFAR100", "STL10"):
        current = getattr(tv_datasets, name)
        if current.__module__ != __name__:
            setattr(tv_datasets, name, _accepting_exports(current))


@hydra.main(version_base="1.2", config_path=None)
def probe_main(cfg: DictConfig) -> None:
    """Hydra entry point of ``probe``."""
    probe(cfg)


COMMANDS = {
    "pretrain": pretrain.main,
    "linear": linear.main,
    "probe": probe_main,
}


def main(argv: list[str] | None = None) -> None:
    """Runs one of ``COMMANDS`` with exports accepted.

    Args:
        argv: ``[command, *command arguments]``; defaults to ``sys.argv[1:]``.
    """
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(
            f"usage: python -m {__name__} {{{'|'.join(COMMANDS)}}} [command arguments]"
        )
    accept_exports()
    sys.argv = [f"infoaug-{argv[0]}", *argv[1:]]
    COMMANDS[argv[0]]()


if __name__ == "__main__":
    main()
