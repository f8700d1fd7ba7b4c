"""The twin store: the one package that knows how twins are stored on disk.

``twin_builder`` writes stores through :class:`StoreWriter` / :func:`merge_stores`; the plugin,
``twin-builder inspect`` / ``show`` / ``export`` and the evaluation read them through
:func:`open_store`, which refuses a bad store with a :class:`TwinStoreError` before anything trains.
The format is described in :mod:`twin_store.format`.
"""

from twin_store.format import ALL_COLUMNS, FORMAT_VERSION, MANIFEST_NAME, TwinStoreError
from twin_store.reader import TwinStore, export_pairs_csv, open_store
from twin_store.writer import (
    StoreWriter,
    VideoEntry,
    entry_from_rows,
    merge_stores,
    skipped_entry,
    write_format_1,
)

__all__ = [
    "ALL_COLUMNS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "StoreWriter",
    "TwinStore",
    "TwinStoreError",
    "VideoEntry",
    "entry_from_rows",
    "export_pairs_csv",
    "merge_stores",
    "open_store",
    "skipped_entry",
    "write_format_1",
]
