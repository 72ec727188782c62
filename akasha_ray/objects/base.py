"""The objects seam: a flat namespace of byte objects under '/'-separated keys.

Two implementations answer the same way (a local folder and any S3-compatible bucket):
- `put` replaces an object whole and atomically: a reader sees the old bytes or the new, never a
  mix;
- `get` of a missing key raises `NotFound`;
- `list_objects` returns every object whose key starts with the prefix, sorted by key;
- `delete` of a missing key is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from akasha_ray.errors import InvalidInput


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def list_objects(self, prefix: str = "") -> list[ObjectInfo]: ...

    def describe(self) -> str:
        """Where the objects live, for logs and health (never a credential)."""
        ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """Reject keys that could escape a folder or mean different objects on different backends.

    Parts may not be empty or start with '.', which also keeps keys apart from the local
    backend's temporary files.
    """
    if not key or not _parts_ok(key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A key's beginning: '' (everything), 'a/' (a folder) or 'a/b' (a partial last part)."""
    if prefix:
        parts = prefix.split("/")
        if parts[-1] == "":  # a trailing '/' ends a folder name
            parts = parts[:-1]
        if not parts or not _parts_ok(parts):
            raise InvalidInput(f"invalid object prefix {prefix!r}")
    return prefix


def _parts_ok(parts: list[str]) -> bool:
    return all(
        part and not part.startswith(".") and "\\" not in part and "\x00" not in part
        for part in parts
    )
