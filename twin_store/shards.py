"""Tar shards: appending members at known offsets, and each shard's commit journal.

Members are written by hand (a ``tarfile`` header, the data, zero padding to 512 bytes) so the
writer knows where every member's data starts; readers then slice patches straight out of the
memory-mapped shard. The result is an ordinary tar file (``tar -tf`` lists it).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

BLOCK = 512
# Two zero blocks end a tar archive.
END_OF_ARCHIVE = bytes(2 * BLOCK)


def member_bytes(name: str, data: bytes) -> tuple[bytes, int]:
    """One tar member (header blocks, data, padding) and the offset of its data within it.

    Args:
        name: member name.
        data: its content.

    Returns:
        ``(member, data_offset)``.
    """
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    padding = -len(data) % BLOCK
    return header + data + bytes(padding), len(header)


class ShardAppender:
    """A shard open for appending, with its journal (``<shard>.log``, one JSON line per commit)."""

    def __init__(self, path: Path, header: dict[str, Any], committed_end: int | None):
        """Opens (or creates) the shard and cuts off anything after its last commit.

        Args:
            path: the shard's ``.tar`` file.
            header: content of the first member, ``shard.json`` (written when creating).
            committed_end: byte length of the shard at its last commit; None for a new shard.
        """
        self.path = path
        self.journal_path = path.with_suffix(".log")
        if committed_end is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            member, _ = member_bytes("shard.json", json.dumps(header, sort_keys=True).encode())
            path.write_bytes(member)
            self.journal_path.write_bytes(b"")
            committed_end = len(member)
        else:
            # Drop a torn last line (a crash while journaling) so the next line starts clean.
            lines = [
                json.dumps(entry, sort_keys=True).encode() + b"\n"
                for entry in read_journal(self.journal_path)
            ]
            tmp = self.journal_path.with_name(f".{self.journal_path.name}.tmp")
            tmp.write_bytes(b"".join(lines))
            os.replace(tmp, self.journal_path)
        self._file = path.open("r+b")
        self._file.truncate(committed_end)
        self._file.seek(committed_end)
        self.size = committed_end

    def add(self, name: str, data: bytes) -> tuple[int, int]:
        """Appends a member.

        Returns:
            ``(offset, size)`` of ``data`` in the shard.
        """
        member, data_offset = member_bytes(name, data)
        self._file.write(member)
        offset = self.size + data_offset
        self.size += len(member)
        return offset, len(data)

    def commit(self, entry: dict[str, Any]) -> None:
        """Makes every member added so far durable, then journals ``entry`` (the commit point)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        with self.journal_path.open("ab") as journal:
            journal.write(json.dumps({**entry, "end": self.size}, sort_keys=True).encode() + b"\n")
            journal.flush()
            os.fsync(journal.fileno())

    def seal(self) -> int:
        """Ends the archive (two zero blocks, cut off again if the shard is appended to later).

        Returns:
            The shard's size in bytes.
        """
        self._file.write(END_OF_ARCHIVE)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self.size + len(END_OF_ARCHIVE)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a shard's journal (a torn last line, from a crash, is ignored)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_bytes().split(b"\n"):
        try:
            entries.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
    return entries


def read_header(path: Path) -> dict[str, Any] | None:
    """The ``shard.json`` member at the start of a shard, or None if it is not there or unreadable."""
    try:
        with tarfile.open(path, "r:") as archive:
            first = archive.next()
            if first is None or first.name != "shard.json":
                return None
            handle = archive.extractfile(first)
            return json.load(io.BytesIO(handle.read())) if handle else None
    except (OSError, tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError):
        return None
