"""Durability of Milvus Lite's files: fsync what it wrote, since it does not itself.

What milvus-lite 3.2.2 (pure Python, in this process: pymilvus starts its gRPC server in a thread)
writes under `<data_dir>/warm/milvus.db/collections/<collection>/`, read from its source:
- each insert and delete is appended to `wal/wal_*.arrow` and flushed to the OS page cache before
  the call returns, never fsynced (its WAL's default sync mode fsyncs only just before deleting the
  file). So an acknowledged row survives a `kill -9` but not a power cut;
- a flush (ours, or its own once the memtable reaches 128 MiB or the WAL 256 MiB, inside an insert)
  writes Parquet data and delta files without fsync, commits `manifest.json` with fsync, then
  deletes the WAL. After it, the rows live only in Parquet files that may still be in the page
  cache: a flush makes rows that were durable in the WAL not durable until they are synced again;
- compaction, in a background thread after a flush, merges Parquet files into new ones (again
  without fsync), commits the manifest and deletes the old files. It can do so with rows already
  made durable, and this module cannot see when it runs: a power cut between a compaction and the
  next `sync` can lose merged rows;
- index files, built in that background thread, are synced too: Lite rebuilds a missing one, but
  one cut short by a power cut fails its load.

`LiteFiles.sync` fsyncs every file under the folder that is new or changed since its last sync
(the WAL files always), then the changed folders, deepest first, so new names and removals are
durable too. `wal_replaced` tells the store that a flush happened inside one of its calls.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_Stamp = tuple[int, int, int]  # inode, size, mtime in ns


class LiteFiles:
    def __init__(self, root: Path, collection: str) -> None:
        """`root`: the folder holding Lite's `milvus.db` folder (its parent is synced too)."""
        self.root = Path(root)
        self.wal_dir = self.root / "milvus.db" / "collections" / collection / "wal"
        self._synced: dict[str, _Stamp] = {}
        self._wal_names = self._wal_now()

    def wal_replaced(self) -> bool:
        """Whether a WAL file seen at the last call is gone: a flush wrote Parquet files and
        deleted the WAL. True also when the WAL folder is not where milvus-lite 3.2.2 keeps it
        (another layout: the caller then syncs after every write, which is safe)."""
        now = self._wal_now()
        replaced = now is None or self._wal_names is None or bool(self._wal_names - now)
        self._wal_names = now
        return replaced

    def sync(self) -> int:
        """fsync what changed under the folder since the last sync; the number of files synced."""
        files: list[tuple[str, _Stamp]] = []
        folders: list[tuple[str, _Stamp]] = [(str(self.root), _stamp(self.root))]
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    folders.append((path, _stamp(path)))
            for name in filenames:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):  # removed by a compaction meanwhile
                    files.append((path, _stamp(path)))
        wal = str(self.wal_dir)
        synced = 0
        for path, stamp in files:
            changed = self._synced.get(path) != stamp or path.startswith(wal)
            if changed and _fsync(path, os.O_RDONLY):
                synced += 1
        # Deepest first, then the parent of the root: a new folder's own entry is in its parent.
        for path, stamp in sorted(folders, key=lambda item: -item[0].count(os.sep)):
            if self._synced.get(path) != stamp:
                _fsync(path, os.O_RDONLY | os.O_DIRECTORY)
        _fsync(str(self.root.parent), os.O_RDONLY | os.O_DIRECTORY)
        self._synced = dict(files + folders)
        return synced

    def _wal_now(self) -> frozenset[str] | None:
        try:
            return frozenset(os.listdir(self.wal_dir))
        except FileNotFoundError:
            return None


def _stamp(path: str | Path) -> _Stamp:
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns


def _fsync(path: str, flags: int) -> bool:
    """fsync a file or folder by path (any descriptor of an inode flushes all its dirty pages);
    False when it is gone (removed by Lite meanwhile: nothing of it to keep)."""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
