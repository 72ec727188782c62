"""Which hot shard owns a system: a stable hash, identical in every process and release."""

from __future__ import annotations

import hashlib


def shard_for(system_id: str, shards: int) -> int:
    # Python's hash() is salted per process, so it cannot route; blake2b is stable.
    digest = hashlib.blake2b(system_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def hot_actor_name(index: int) -> str:
    return f"hot-{index}"
