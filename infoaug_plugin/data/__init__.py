"""Twin data: the twin store reader and the torch / DALI twin loaders.

Public API: :func:`build_twin_loader`, :func:`open_twin_store` (the validator),
:class:`TwinStoreError`, :class:`TwinStore`, :func:`fill_loader_defaults` and
:class:`PacedTwinLoader` (twin passes paced to the main loader's epochs).
"""

from infoaug_plugin.data.config import fill_loader_defaults
from infoaug_plugin.data.loader import PacedTwinLoader, TwinLoader, build_twin_loader
from infoaug_plugin.data.store import TwinPair, TwinStore, TwinStoreError, open_twin_store

__all__ = [
    "PacedTwinLoader",
    "TwinLoader",
    "TwinPair",
    "TwinStore",
    "TwinStoreError",
    "build_twin_loader",
    "fill_loader_defaults",
    "open_twin_store",
]
