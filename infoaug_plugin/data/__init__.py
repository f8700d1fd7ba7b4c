"""Twin data: the torch / DALI twin loaders over a twin store (read with ``twin_store``).

Public API: :func:`build_twin_loader`, :func:`fill_loader_defaults` and :class:`PacedTwinLoader`
(twin passes paced to the main loader's epochs).
"""

from infoaug_plugin.data.config import fill_loader_defaults
from infoaug_plugin.data.loader import PacedTwinLoader, TwinLoader, build_twin_loader

__all__ = [
    "PacedTwinLoader",
    "TwinLoader",
    "build_twin_loader",
    "fill_loader_defaults",
]
