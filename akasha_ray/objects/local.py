"""Objects as files in one folder: key 'a/b/c' is the file <root>/a/b/c.

A write goes to a temporary file beside its target, is flushed to disk, then renamed over the
target (`os.replace` is atomic on POSIX), so a reader or a crash never leaves half an object.

Durable when it returns: a `put` fsyncs the file, its folder (the rename) and the parent of each
folder it created (their names); a `delete` fsyncs the folder. So an object written survives a
`kill -9` and a power cut, and a deleted one stays deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

from akasha_ray.errors import NotFound
from akasha_ray.objects.base import ObjectInfo, check_key, check_prefix


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        """The file holding `key` (which may not exist); readers such as DuckDB open it directly."""
        return self.root.joinpath(*check_key(key).split("/"))

    def describe(self) -> str:
        return self.root.as_uri() if self.root.is_absolute() else str(self.root)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self.path_of(key), data)

    async def get(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"no object {key!r}") from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, self.path_of(key))

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, check_prefix(prefix))

    async def close(self) -> None:
        return None

    def _put(self, path: Path, data: bytes) -> None:
        self._make_folders(path.parent)
        write_durably(path, data)

    def _make_folders(self, folder: Path) -> None:
        """Create `folder` and its missing parents, each name synced into its parent."""
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            if folder == self.root or folder.parent == folder:
                break
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(parents=True, exist_ok=True)
            _fsync_dir(created.parent)

    @staticmethod
    def _delete(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        folder, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):  # temporary files of writes in flight
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # deleted while listing
                        found.append(ObjectInfo(key, os.stat(os.path.join(dirpath, name)).st_size))
        found.sort(key=lambda info: info.key)
        return found


def write_durably(path: Path, data: bytes) -> None:
    """Write beside the target (a dot name, which listings skip), fsync, rename over it, fsync
    the folder: readers see the old bytes or the new ones, and the new ones survive a crash."""
    temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with temp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _fsync_dir(path.parent)  # make the rename itself durable


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
